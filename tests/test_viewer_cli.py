"""``avatar3d view --screenshot`` on the real models (built-in head; ICT when ../shared/data has it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from avatar3d.cli import main
from avatar3d.errors import Avatar3DError
from avatar3d.viewer.headless import check_offscreen_support
from avatar3d.viewer.mesh import HeadMesh
from avatar3d.viewer.params import HeadParams
from avatar3d.viewer.scene import project
from avatar3d.viewer.shot import rest_camera

SIZE = 256
# MediaPipe face-mesh indices: lower lip / chin, and the forehead.
MOUTH_LMK = (14, 17, 18, 200, 199, 175, 152)
FOREHEAD_LMK = (10, 151, 9, 108, 337, 69, 299)


@pytest.fixture(autouse=True)
def _need_renderer():
    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))



def _shot(tmp_path, name: str, *args: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    assert main(["view", *args, "--screenshot", str(out), "--size", str(SIZE)]) == 0
    return np.asarray(Image.open(out).convert("RGB")).astype(float)


def _disc_mask(points: np.ndarray, K, w2c, radius: int = 6) -> np.ndarray:
    uv = project(points, K, w2c)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    m = np.zeros((SIZE, SIZE), bool)
    for x, y in uv:
        m |= (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    return m


def _silhouette(img: np.ndarray) -> np.ndarray:
    return np.abs(img - img[2, 2]).sum(2) > 12  # the background is one flat colour


def test_builtin_jaw_open_moves_mouth_not_forehead(builtin, tmp_path, out_dir):
    neutral = _shot(tmp_path, "neutral", "builtin")
    jaw = _shot(tmp_path, "jaw", "builtin", "--set", "jawOpen=1.0")
    mesh = HeadMesh(builtin)
    K, w2c = rest_camera(mesh, HeadParams.neutral(builtin), SIZE, SIZE)
    with torch.no_grad():
        lmk = builtin().landmarks[0].numpy()
    mouth = _disc_mask(lmk[list(MOUTH_LMK)], K, w2c)
    forehead = _disc_mask(lmk[list(FOREHEAD_LMK)], K, w2c)
    diff = np.abs(neutral - jaw).mean(2)
    Image.fromarray(np.concatenate([neutral, jaw], 1).astype(np.uint8)).save(out_dir / "viewer_builtin_jaw.png")
    assert diff[mouth].mean() > 10, f"mouth region barely changed ({diff[mouth].mean():.2f})"
    assert diff[forehead].mean() < 1.0, f"forehead changed ({diff[forehead].mean():.2f})"


def test_builtin_light_changes_shading_not_silhouette(builtin, tmp_path, out_dir):
    a = _shot(tmp_path, "left", "builtin", "--light-azimuth", "-70", "--light-elevation", "0", "--env-intensity", "0.3")
    b = _shot(tmp_path, "right", "builtin", "--light-azimuth", "70", "--light-elevation", "0", "--env-intensity", "0.3")
    Image.fromarray(np.concatenate([a, b], 1).astype(np.uint8)).save(out_dir / "viewer_builtin_light.png")
    sa, sb = _silhouette(a), _silhouette(b)
    iou = (sa & sb).sum() / (sa | sb).sum()
    assert iou > 0.98, f"silhouette changed with the light (IoU {iou:.3f})"
    cx = int(np.nonzero(sa)[1].mean())
    cols = np.arange(SIZE)[None]
    left, right = sa & (cols < cx - 8), sa & (cols > cx + 8)
    ga, gb = a.mean(2), b.mean(2)
    assert ga[left].mean() > ga[right].mean() + 10  # light from the viewer's left
    assert gb[right].mean() > gb[left].mean() + 10


def test_unknown_slider_and_bad_frame_are_one_sentence(builtin, tmp_path, capsys):
    assert main(["view", "builtin", "--screenshot", str(tmp_path / "x.png"), "--set", "jawOpn=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'jawOpn'" in err and "jawOpen" in err and "browInnerUp" in err and "jaw_pitch" in err
    assert main(["view", "builtin", "--screenshot", str(tmp_path / "x.png"), "--frame", "3"]) == 2
    assert "tracked sequence" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_ict_screenshot_jaw_open(ict_archive, tmp_path, out_dir):
    spec = f"ict={ict_archive}"
    neutral = _shot(tmp_path, "ict0", spec, "--landmarks")
    jaw = _shot(tmp_path, "ict1", spec, "--set", "jawOpen=1", "--landmarks")
    Image.fromarray(np.concatenate([neutral, jaw], 1).astype(np.uint8)).save(out_dir / "viewer_ict_jaw.png")
    sil = _silhouette(neutral)
    ys = np.nonzero(sil)[0]
    top, bottom = ys.min(), ys.max()
    h = bottom - top
    diff = np.abs(neutral - jaw).mean(2)
    upper = diff[top : top + int(0.35 * h)]
    lower = diff[top + int(0.55 * h) : top + int(0.8 * h)]
    assert sil.mean() > 0.1, "ICT head not visible"
    assert lower.mean() > 5 * max(upper.mean(), 0.05), f"jawOpen should change the lower face ({lower.mean():.2f}) not the top ({upper.mean():.2f})"
