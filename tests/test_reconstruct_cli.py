"""``avatar3d reconstruct`` on the command line: its flags, and one sentence (no traceback) for each bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "assets" / "demo" / "d3_4s.mp4"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar3d", "reconstruct", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def one_sentence(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("avatar3d reconstruct: error: "), lines
    return lines[0]


def test_help_names_the_outputs_and_flags():
    r = cli("--help")
    assert r.returncode == 0
    for word in ("--preset", "quick", "--relightable", "--no-relightable", "--resume", "--restart", "--model", "head.glb", "report.html"):
        assert word in r.stdout, word


def test_the_demo_clip_is_shipped_small_with_its_licence():
    assert CLIP.is_file() and CLIP.stat().st_size < 1_000_000
    licence = (CLIP.parent / "LICENSE").read_text()
    assert "MIT License" in licence and "LivePortrait" in licence and "first 4 seconds" in licence


@pytest.mark.parametrize("make, words", [
    (lambda d: (d / "missing.mp4", d / "out"), "does not exist"),
    (lambda d: ((d / "x.mp4").write_text("no video") and d / "x.mp4", d / "out"), "not a readable video"),
    (lambda d: (CLIP, (d / "f.txt").write_text("mine") and d / "f.txt"), "is a file"),
    (lambda d: (CLIP, (d / "o").mkdir() or (d / "o" / "a.txt").write_text("mine") and d / "o"), "not a reconstruct run"),
])
def test_bad_input_is_one_sentence(tmp_path, make, words):
    video, out = make(tmp_path)
    line = one_sentence(cli(str(video), "--out", str(out)))
    assert words in line, line


def test_resume_needs_a_run_and_model_is_checked(tmp_path):
    assert "no reconstruct run to resume" in one_sentence(cli(str(CLIP), "--out", str(tmp_path / "new"), "--resume"))
    assert not (tmp_path / "new").exists()
    assert "--model takes builtin" in one_sentence(cli(str(CLIP), "--out", str(tmp_path / "m"), "--model", "smpl"))
    assert not (tmp_path / "m").exists()
