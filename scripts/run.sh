#!/usr/bin/env bash
# One entry point for set-up + the two things people run:
#   bash scripts/run.sh demo [reconstruct args]     # set up (if needed), then reconstruct the demo clip -> out/reconstruct-demo/
#   bash scripts/run.sh test [pytest args]          # set up (if needed), lint (ruff), then run the test suite
#   bash scripts/run.sh setup                       # set up only
# Set-up is idempotent and fast the second time: a stamp of the dependency files skips reinstalling.
# Environment: AVATAR3D_VENV (default .venv), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AVATAR3D_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"
MEDIAPIPE_VERSION="0.10.14"
APT_PACKAGES=(libusb-1.0-0 libvulkan1 mesa-vulkan-drivers xvfb libegl1 libgl1 libgomp1 libxtst6 chromium)

log() { printf '\033[1m[avatar3d setup]\033[0m %s\n' "$*" >&2; }

system_packages() {
  # Open3D needs libusb to import, Mesa's Vulkan driver to render offscreen, Xvfb for the GUI test;
  # headless Chromium opens the HTML report and plays exported GLBs with three.js in the tests.
  command -v dpkg >/dev/null 2>&1 || return 0
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "warning: missing Debian packages (${missing[*]}); the viewer/offscreen rendering needs them:"
    log "  sudo apt-get install ${missing[*]}"
  fi
}

make_venv() {
  if [ -x "$VENV/bin/python" ]; then return 0; fi
  # Keep an existing CUDA torch (GPU machines): let the venv see the system site-packages.
  if "$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)' >/dev/null 2>&1; then
    log "creating $VENV (reusing the system CUDA torch)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
}

python_packages() {
  local vpy="$VENV/bin/python" pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  local stamp_file="$VENV/.avatar3d-stamp" stamp
  local f files=()
  for f in "$ROOT/pyproject.toml" "$ROOT/scripts/run.sh" "$ROOT/package.json" "$ROOT/package-lock.json"; do
    [ -f "$f" ] && files+=("$f")
  done
  stamp="$(cat "${files[@]}" | sha1sum | cut -c1-16)"
  if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] && "$vpy" -c 'import avatar3d, torch, mediapipe' >/dev/null 2>&1; then
    return 0
  fi
  if ! "$vpy" -c 'import torch' >/dev/null 2>&1; then
    log "installing torch==$TORCH_VERSION (CPU)"
    "${pip[@]}" "torch==$TORCH_VERSION"
  fi
  # Pin whatever torch is present so no dependency can swap it for a multi-GB CUDA build.
  "$vpy" -c 'import torch; print("torch==" + torch.__version__)' > "$VENV/constraints.txt"
  log "installing avatar3d and its dependencies ($(cat "$VENV/constraints.txt"))"
  "${pip[@]}" -c "$VENV/constraints.txt" -e "$ROOT[viewer,test]"
  # mediapipe's metadata pulls jax and opencv-contrib (which clobbers opencv); its real runtime deps
  # are in pyproject.toml, so install the wheel itself without dependencies.
  "${pip[@]}" --no-deps "mediapipe==$MEDIAPIPE_VERSION"
  if [ -f "$ROOT/package.json" ] && command -v npm >/dev/null 2>&1; then
    log "installing Node tools (glTF validator)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  echo "$stamp" > "$stamp_file"
}

build_extensions() {
  # Compile (or load from cache) the CPU rasterizer extensions once, so tests and the demo start warm.
  "$VENV/bin/python" -c 'import avatar3d.render as r; f = getattr(r, "build_extensions", None); f and f(verbose=False)' \
    || log "warning: building the C++ extensions failed; avatar3d falls back to the slow PyTorch reference"
}

setup() {
  system_packages
  make_venv
  python_packages
  build_extensions
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  demo)
    # The main command on the shipped 4 s clip (assets/demo/LICENSE), quick preset: under 10 minutes on two cores.
    # Extra arguments go to reconstruct (e.g. --out DIR, --restart); run it again to continue an interrupted run.
    setup
    DEMO_OUT="$ROOT/out/reconstruct-demo"
    for a in "$@"; do case "$a" in --out|--out=*) DEMO_OUT="" ;; esac; done
    # Its last line says where the report is.
    exec "$VENV/bin/avatar3d" reconstruct "$ROOT/assets/demo/d3_4s.mp4" --preset quick ${DEMO_OUT:+--out "$DEMO_OUT"} "$@" ;;
  test)
    setup
    cd "$ROOT"
    # The lint is part of the test: its rules are [tool.ruff] in pyproject.toml (ruff is pinned in the test extra).
    if ! "$VENV/bin/python" -m ruff check "$ROOT"; then
      log "ruff check failed (see above; 'ruff check --fix' fixes most): not running pytest"
      exit 1
    fi
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    # pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
    [ $rc -eq 5 ] && log "pytest collected no tests: failing"
    exit $rc ;;
  *)
    echo "usage: bash scripts/run.sh {demo|test|setup} [args...]" >&2
    exit 2 ;;
esac
