"""``avatar3d view ... --screenshot`` from tests: the picture a headless view command draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from avatar3d.cli import main


def view_screenshot(tmp_path: Path, source: Path, name: str, *args: str) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 255] of ``avatar3d view SOURCE --screenshot tmp_path/NAME.png ARGS`` (asserts exit 0)."""
    out = tmp_path / f"{name}.png"
    assert main(["view", str(source), "--screenshot", str(out), *args]) == 0
    return np.asarray(Image.open(out).convert("RGB")).astype(float)
