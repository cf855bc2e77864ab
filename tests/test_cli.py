"""The command line: thin, informative, and one readable sentence on bad input (no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar3d", *args], capture_output=True, text=True, timeout=timeout)


def test_info_lists_versions_backends_and_models():
    r = cli("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["versions"]["torch"].startswith("2.")
    models = {row[0]: row for row in info["head_models"]}
    assert set(models) == {"builtin", "ict", "flame"}
    assert models["builtin"][1] is True, models["builtin"]
    # Each unavailable thing says why.
    for name, ok, detail in info["head_models"] + info["rasterizer_backends"]:
        assert ok or detail, f"{name} is unavailable without a reason"
    text = cli("info")
    assert text.returncode == 0 and "rasterizer backends" in text.stdout and "head models" in text.stdout


def test_missing_flame_file_is_one_sentence_with_the_registration_url(tmp_path):
    r = cli("demo", "--model", f"flame={tmp_path / 'generic_model.pkl'}", "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "generic_model.pkl" in r.stderr and "flame.is.tue.mpg.de" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unknown_model_spec_names_the_valid_ones(tmp_path):
    r = cli("demo", "--model", "smpl", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "builtin" in r.stderr and "flame=PATH" in r.stderr


@pytest.mark.slow
def test_demo_writes_images_and_report(tmp_path):
    import numpy as np
    from PIL import Image

    out = tmp_path / "demo"
    r = cli("demo", "--out", str(out), "--size", "160")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "builtin" and report["model"]["vertices"] < 15000
    assert len(report["images"]) >= 12
    for name in report["images"]:
        img = np.asarray(Image.open(out / name).convert("L"), np.float32)
        assert img.std() > 5, f"{name} is blank"
    front = np.asarray(Image.open(out / "neutral_front.png").convert("L"), np.float32)
    bg = front[0, 0]
    covered = np.abs(front - bg) > 3
    # The head fills a sensible part of the frame and is centred horizontally.
    assert 0.1 < covered.mean() < 0.8
    cols = np.nonzero(covered.any(0))[0]
    assert abs((cols.min() + cols.max()) / 2 - front.shape[1] / 2) < 0.1 * front.shape[1]
    assert (out / "report.md").read_text().startswith("# avatar3d demo")
