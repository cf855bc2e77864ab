"""A plain (non-editable) install works away from the checkout: the wheel carries the C++/CUDA sources and
the runtime assets, the ``avatar3d`` command runs, and the CPU mesh extension compiles from the installed
sources.

The wheel is built from a copy of the checkout (nothing is written into it) and installed without
dependencies into a fresh virtual environment that sees this environment's site-packages through a
``.pth`` file (torch, NumPy, ... are not reinstalled). Slow (about 1 min to install, 1-2 min to compile on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SKIP_COPY = shutil.ignore_patterns(".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")

CHECK = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import avatar3d
    from avatar3d import _ext
    from avatar3d.paths import ASSETS
    from avatar3d.render.backends import mesh_cpu_extension
    t0 = time.perf_counter()
    ext = mesh_cpu_extension()
    print(json.dumps({"package": avatar3d.__file__, "csrc": str(_ext.CSRC_DIR), "assets": str(ASSETS),
                      "sources": sorted(p.name for p in _ext.CSRC_DIR.iterdir()),
                      "asset_files": sorted(str(p.relative_to(ASSETS)) for p in ASSETS.rglob("*") if p.is_file()),
                      "ext": ext is not None and Path(ext.__file__).is_file(), "ext_error": _ext.extension_error("a3d_mesh_cpu"),
                      "build_s": time.perf_counter() - t0}))
    """
)


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh venv with the avatar3d wheel installed: {"python", "bin", "home"} (home: a folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP_COPY, symlinks=True)
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "wheels")], tmp, env)
    wheel = next((tmp / "wheels").glob("avatar3d-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)  # this pip installs into it
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout.strip())
    # This environment's packages (torch, numpy, ...) without reinstalling them; our own checkout is not among them
    # (an editable install's finder is a .pth in that folder, and .pth files in .pth-listed folders are not run).
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "_avatar3d_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", "--disable-pip-version-check", str(wheel)], tmp, env)
    home = tmp / "elsewhere"
    home.mkdir()
    return {"python": py, "bin": venv / "bin", "home": home, "env": dict(env, AVATAR3D_CACHE=str(tmp / "cache"))}


def test_installed_command_runs_outside_the_checkout(installed):
    r = _run([str(installed["bin"] / "avatar3d"), "--help"], installed["home"], installed["env"])
    assert "track" in r.stdout and "export" in r.stdout and "view" in r.stdout


def test_installed_package_carries_and_compiles_its_extension_sources(installed):
    import json

    r = _run([str(installed["python"]), "-c", CHECK], installed["home"], installed["env"], timeout=900)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    venv = installed["python"].parent.parent
    for key in ("package", "csrc", "assets"):
        assert Path(got[key]).resolve().is_relative_to(venv.resolve()), f"{key} not from the installed package: {got[key]}"
    shipped = sorted(p.name for p in (REPO / "avatar3d" / "csrc").iterdir() if p.suffix in (".h", ".cpp", ".cu"))
    assert got["sources"] == shipped
    expected_assets = sorted(str(p.relative_to(REPO / "avatar3d" / "assets")) for p in (REPO / "avatar3d" / "assets").rglob("*") if p.is_file())
    assert got["asset_files"] == expected_assets
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the installed sources are present but cannot be compiled here")
    assert got["ext"], f"the CPU mesh extension did not build from the installed sources: {got['ext_error']}"
