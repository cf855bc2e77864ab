#!/usr/bin/env bash
# Run the README's benchmarks for an earlier commit and for this working tree in one sitting, one after the other
# per benchmark, so both see the same machine (a refactor should reproduce the figures: same NME to the digit,
# speed within noise).
#
#   bash benchmarks/compare_revisions.sh REV [OUT_DIR]
#
# REV is checked out into a temporary git worktree (removed afterwards); each benchmark's output goes to
# OUT_DIR/<bench>.<old|new>.txt (default: a fresh temporary folder) and is printed as it runs. Uses the
# project's venv (.venv, or $AVATAR3D_VENV). The benchmarks: bench_tracking.py on d3 and d13 (NME, jitter,
# fitting speed; both head models), the rendered ground truth (bench_tracking.py --synthetic-only),
# bench_mesh_raster.py and bench_gaussians.py.
set -euo pipefail
REV="${1:?usage: compare_revisions.sh REV [OUT_DIR]}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${AVATAR3D_VENV:-$ROOT/.venv}/bin/python"
OUT="${2:-$(mktemp -d -t avatar3d-compare.XXXXXX)}"
mkdir -p "$OUT"
OLD="$(mktemp -d -t avatar3d-rev.XXXXXX)"
git -C "$ROOT" worktree add --detach -q "$OLD" "$REV"
trap 'git -C "$ROOT" worktree remove --force "$OLD"' EXIT

run() {  # run NAME TREE ARGS...: one benchmark of one tree, its own source tree first on the path
  local name="$1" tree="$2"; shift 2
  echo "=== $name ($( [ "$tree" = "$ROOT" ] && echo "working tree" || echo "$REV" ))" >&2
  (cd "$tree" && PYTHONPATH="$tree" OMP_NUM_THREADS=2 "$PY" "$@")
}

bench() {  # bench NAME ARGS...: old then new
  local name="$1"; shift
  run "$name" "$OLD" "$@" 2>&1 | tee "$OUT/$name.old.txt"
  run "$name" "$ROOT" "$@" 2>&1 | tee "$OUT/$name.new.txt"
}

bench tracking benchmarks/bench_tracking.py --videos d3,d13 --models ict,builtin --end-to-end '' --skip-synthetic
bench synthetic benchmarks/bench_tracking.py --synthetic-only
bench mesh_raster benchmarks/bench_mesh_raster.py
bench gaussians benchmarks/bench_gaussians.py
echo "outputs in $OUT" >&2
