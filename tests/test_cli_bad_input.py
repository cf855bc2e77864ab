"""Bad input to ``avatar3d view``, ``export`` and ``track``, as a new user would type it: one clear sentence
naming what is wrong, exit code 2, no traceback, and nothing written (no image, no empty folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "avatar3d", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def error_line(r: subprocess.CompletedProcess) -> str:
    """The one error sentence (Open3D's engine start-up lines aside); fails on a traceback or several errors."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Errno" not in r.stderr, r.stderr
    lines = [s for s in r.stderr.strip().splitlines() if s.startswith("avatar3d ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def needs_offscreen() -> None:
    from avatar3d.errors import Avatar3DError
    from avatar3d.viewer.headless import check_offscreen_support

    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_view_refuses_a_value_that_is_not_a_number(tmp_path, value):
    shot = tmp_path / "new" / "x.png"
    msg = error_line(cli("view", "--screenshot", str(shot), "--size", "64", "--set", f"jawOpen={value}"))
    assert f"jawOpen={value}" in msg and "finite number" in msg
    assert list(tmp_path.iterdir()) == []  # no image, no folder


def test_view_refuses_a_value_far_outside_the_slider(tmp_path):
    needs_offscreen()
    shot = tmp_path / "new" / "x.png"
    msg = error_line(cli("view", "--screenshot", str(shot), "--size", "64", "--set", "jawOpen=1e308"))
    assert "jawOpen=1e+308 is out of reach" in msg and "spans 0 to 1" in msg
    assert list(tmp_path.iterdir()) == []


def test_view_parameter_files_name_themselves(tmp_path):
    needs_offscreen()
    shot = tmp_path / "x.png"
    obj = tmp_path / "obj.npz"
    np.savez(obj, expression=np.array([0.5, None], dtype=object))
    msg = error_line(cli("view", "--screenshot", str(shot), "--size", "64", "--params", str(obj)))
    assert str(obj) in msg and "'expression' is an object array" in msg
    bad = tmp_path / "nan.json"
    bad.write_text(json.dumps({"jawOpen": float("nan")}))  # Python's json writes NaN; the reader accepts it
    msg = error_line(cli("view", "--screenshot", str(shot), "--size", "64", "--params", str(bad)))
    assert str(bad) in msg and "finite number" in msg
    assert not shot.exists()


def test_view_screenshot_under_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    msg = error_line(cli("view", "--screenshot", str(tmp_path / "f" / "sub" / "x.png")))
    assert f"{tmp_path / 'f'} is a file, not a folder" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_export_fbx_is_not_a_format_we_write(tmp_path):
    msg = error_line(cli("export", "builtin", "--out", str(tmp_path / "head.fbx")))
    assert "FBX is not a format avatar3d writes" in msg and ".glb, .gltf, .obj" in msg
    assert list(tmp_path.iterdir()) == []


def test_export_out_under_a_file_names_the_file(tmp_path):
    (tmp_path / "f").write_text("a file")
    msg = error_line(cli("export", "builtin", "--out", str(tmp_path / "f" / "new" / "head.glb")))
    assert f"{tmp_path / 'f'} is a file, not a folder" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_export_to_a_read_only_folder_is_one_sentence(tmp_path, monkeypatch, capsys):
    """Read-only is simulated (tests may run as root, who can write anywhere): the folder reports no write access."""
    from avatar3d import paths
    from avatar3d.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(paths.os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    assert main(["export", "builtin", "--out", str(ro / "new" / "head.glb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"avatar3d export: error: cannot write the export {ro / 'new' / 'head.glb'}: {ro} is not writable (read-only or no permission)"
    assert list(ro.iterdir()) == []


def test_os_errors_are_sentences_naming_the_path(tmp_path):
    """What the CLI prints for an OSError it did not foresee: the path and the reason, no errno."""
    import errno

    from avatar3d.errors import os_error_sentence

    (tmp_path / "f").write_text("a file")
    with pytest.raises(OSError) as e:
        (tmp_path / "f" / "a" / "b").mkdir(parents=True)
    assert os_error_sentence(e.value) == f"{tmp_path / 'f' / 'a' / 'b'}: {tmp_path / 'f'} is a file, not a folder"
    ro = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x.glb"))
    assert os_error_sentence(ro) == f"{tmp_path / 'x.glb'}: read-only file system"
    assert os_error_sentence(ro, "the export") == f"cannot write the export {tmp_path / 'x.glb'}: read-only file system"


def test_track_resolution_has_a_limit_checked_before_any_folder(tmp_path):
    r = cli("track", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "out"), "--resolution", "30000")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "the crop size is at most 4096 pixels, got 30000" in r.stderr
    assert list(tmp_path.iterdir()) == []
