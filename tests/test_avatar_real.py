"""The Gaussian avatar end to end on a real shared video, through the commands a user runs.

``avatar3d track`` (d3 at 5 fps: 59 frames, 256^2 crops, with the photometric albedo that the baseline needs), then
``avatar3d avatar train --preset quick`` at 128^2 for 400 steps, ``eval --images``, ``render --yaw -45:45`` and
``export --format ply``, all through :func:`avatar3d.cli.main` in this process with one torch thread. The split holds
out the last 29 frames (of 59): the avatar trains on the first 30 and is scored on the rest, driven by their tracked
parameters, against the textured-mesh baseline.

The quality bar is the issue's "lower, honest bar on a short clip that fits CI's time" (the issue's targets, 30 dB
and 3 dB above the baseline on whole videos at 512^2, are for the benchmarks): each threshold below is a measured
value minus a margin, the measurements in the comments. Time (this machine, 2 cores shared with other jobs, one
torch thread): tracking ~30 CPU s, training ~60 CPU s, eval/render/export ~12 CPU s; the whole file took 96 s of
wall time at load average 2 and 3.4 minutes at 6-7 (plus a one-off ~2 minutes where the suite has not yet built the
CPU Gaussian rasterizer: the first training builds it).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # protobuf's deprecation noise from the face detector

RESOLUTION = 128  # training and evaluation width (pixels); the quick preset's 256 costs ~3x the time per step
ITERATIONS = 400
YAWS = (-45.0, -30.0, -15.0, 0.0, 15.0, 30.0, 45.0)  # --yaw -45:45:7
WHITE = 0.94  # a pixel with every channel at or above this is background (the renders are over white)


def _cli(*argv: str) -> tuple[int, str]:
    """Run ``avatar3d ARGV`` as the command line does, in this process with one torch thread: (exit code, stdout)."""
    from avatar3d._tensor import torch_threads
    from avatar3d.cli import main

    out = io.StringIO()
    with torch_threads(1), contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture(scope="module")
def real_avatar(videos_dir: Path, tmp_path_factory) -> dict:
    """Track d3, train, evaluate, render a yaw sweep and export: the folders and what each command printed."""
    root = tmp_path_factory.mktemp("avatar_real")
    track, avatar, yaw = root / "track", root / "avatar", root / "yaw"
    steps = [
        ("track", str(videos_dir / "d3.mp4"), "--out", str(track), "--fps", "5", "--resolution", "256",
         "--photometric", "--no-overlay", "--quiet"),
        ("avatar", "train", str(track), "--out", str(avatar), "--preset", "quick", "--resolution", str(RESOLUTION),
         "--iterations", str(ITERATIONS), "--quiet"),
        ("avatar", "eval", str(avatar), "--images"),
        ("avatar", "render", str(avatar), "--out", str(yaw), "--yaw", f"{YAWS[0]:g}:{YAWS[-1]:g}:{len(YAWS)}", "--quiet"),
        ("avatar", "export", str(avatar), "--format", "ply"),
    ]
    printed = {}
    for argv in steps:
        code, text = _cli(*argv)
        name = " ".join(argv[:2]) if argv[0] == "avatar" else argv[0]
        assert code == 0, f"avatar3d {name} exited with {code}: {text}"
        printed[name] = text
    return dict(track=track, avatar=avatar, yaw=yaw, printed=printed)


def _metrics(real_avatar: dict) -> dict:
    return json.loads((real_avatar["avatar"] / "metrics.json").read_text())


def test_commands_write_their_outputs(real_avatar):
    track, avatar = real_avatar["track"], real_avatar["avatar"]
    assert len(list((track / "images").glob("*.png"))) == 59 and (track / "albedo.png").is_file()
    for name in ("avatar.pt", "checkpoint.pt", "train_log.csv", "train_curve.png", "metrics.json", "avatar.ply"):
        assert (avatar / name).is_file(), name
    log = (avatar / "train_log.csv").read_text().strip().splitlines()
    assert log[0].startswith("step,") and len(log) == ITERATIONS + 1
    m = _metrics(real_avatar)
    held = m["frames"]
    assert held == list(range(30, 59)), held  # the last 15% of 59 frames, at least 30 ... at most half: 29
    assert m["resolution"] == RESOLUTION and m["baseline"]["available"], m["baseline"]
    images = sorted((avatar / "heldout").glob("*.png"))
    assert [p.stem for p in images] == m["frame_names"]
    assert np.asarray(Image.open(images[0])).shape[:2] == (RESOLUTION, 4 * RESOLUTION)  # video | avatar | baseline | error
    assert "avatar" in real_avatar["printed"]["avatar eval"] and "baseline" in real_avatar["printed"]["avatar eval"]


def test_heldout_quality_beats_the_textured_mesh(real_avatar):
    """Held-out frames (never trained on) at 128^2, the head over white.

    Measured (d3, 5 fps, 256^2 tracking, 128^2 x 400 steps; PSNR in dB): avatar PSNR 21.84 / SSIM 0.854 / face PSNR
    26.64 at main fdca49d, 21.77 / 0.855 / 26.61 at fcce976 (21.43 / 0.849 / 26.54 with 300 steps, 21.95 / 0.854 /
    26.64 with 500: the margins below hold if the step time or the model drifts a little); the same numbers on every
    rerun (fixed seeds, one thread). Baseline (the photometric albedo on the tracked mesh: a bald head, so it loses
    the hair on the full frame) 11.63 / 0.696 / 25.15.
    """
    rows = _metrics(real_avatar)["rows"]
    a, b = rows["avatar"], rows["baseline"]
    print(f"held-out: avatar PSNR {a['psnr']:.2f} SSIM {a['ssim']:.4f} face PSNR {a['face_psnr']:.2f}; "
          f"baseline {b['psnr']:.2f} / {b['ssim']:.4f} / {b['face_psnr']:.2f}")
    assert a["psnr"] >= 20.5 and a["ssim"] >= 0.80, a
    assert a["face_psnr"] >= 25.0, a
    assert a["psnr"] >= b["psnr"] + 6.0, (a, b)  # the full frame holds the hair the mesh lacks
    assert a["face_psnr"] >= b["face_psnr"], (a, b)  # and in the face, where the mesh is at its best, it is not worse


def _non_white(path: Path) -> np.ndarray:
    """(H, W) bool: pixels of a render over white that are not background."""
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0
    return (rgb < WHITE).any(-1)


def _width(mask: np.ndarray) -> int:
    """Width in pixels of the non-white pixels' bounding box."""
    xs = np.nonzero(mask.any(0))[0]
    return int(xs.max() - xs.min() + 1)


def _outside_head(mask: np.ndarray, margin: float = 0.08) -> float:
    """Fraction of the non-white pixels outside the largest blob's bounding box grown by ``margin`` of the width."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    assert n > 0, "an empty render"
    head = labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    ys, xs = np.nonzero(head)
    g = int(round(margin * mask.shape[1]))
    box = np.zeros_like(mask)
    box[max(0, ys.min() - g):ys.max() + g + 1, max(0, xs.min() - g):xs.max() + g + 1] = True
    return float((mask & ~box).sum() / mask.sum())


def test_yaw_sweep_keeps_the_head_together(real_avatar):
    """The +-45 deg sweep: the head's silhouette keeps its size, nothing flies off it, and it really turns."""
    files = sorted(real_avatar["yaw"].glob("*.png"))
    assert len(files) == len(YAWS)
    masks = [_non_white(f) for f in files]
    assert masks[0].shape == (RESOLUTION, RESOLUTION)
    frontal = masks[YAWS.index(0.0)]
    cover = [m.sum() / frontal.sum() for m in masks]
    width = [_width(m) / _width(frontal) for m in masks]
    outside = [_outside_head(m) for m in masks]
    print("yaw: coverage / frontal", np.round(cover, 3), "width / frontal", np.round(width, 3),
          "outside the head's box", np.round(outside, 4))
    # Measured (128^2, 400 steps): coverage 0.94-1.01 of the frontal, width 0.99-1.01 at fcce976 (0.88-1.02 at fdca49d,
    # 0.79-1.03 at 300/500 steps: the frontal's width includes a thin smear at the crop's bottom edge), nothing
    # outside the box.
    assert frontal.sum() > 0.15 * RESOLUTION ** 2
    assert all(0.7 < c < 1.4 for c in cover), cover
    assert all(0.65 < w < 1.5 for w in width), width  # a side view that smears sideways widens
    assert max(outside) < 0.02, outside
    rgb = [np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0 for f in (files[0], files[-1])]
    assert np.abs(rgb[0] - rgb[1]).mean() > 0.03  # -45 and +45 differ: the sweep turned the head


def test_ply_export_is_standard_3dgs(real_avatar):
    from plyfile import PlyData

    ply = PlyData.read(str(real_avatar["avatar"] / "avatar.ply"))
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    rest = [n for n in names if n.startswith("f_rest_")]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert rest == [f"f_rest_{i}" for i in range(len(rest))] and len(rest) % 3 == 0
    assert names[9 + len(rest):] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert v.count > 10_000
    data = np.stack([np.asarray(v[n], np.float64) for n in names], 1)
    assert np.isfinite(data).all()
    xyz = data[:, :3]
    extent = np.ptp(xyz, 0)
    assert (extent > 0.05).all() and (extent < 1.0).all(), extent  # metres: a head, not a point or a room
