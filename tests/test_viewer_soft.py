"""Software interactive frames (avatar3d/viewer/softview.py): our CPU rasterizer draws the same
picture as Filament's interactive frame, through the scene's own camera."""

from __future__ import annotations

import numpy as np
from PIL import Image

from avatar3d.viewer.params import HeadParams, apply_settings
from avatar3d.viewer.scene import Lighting
from helpers.viewer_toy import mouth_and_forehead


def _filament_and_software(r, params=None, lighting=None):
    """(Filament interactive frame, software frame) of the same state and camera."""
    r.render(params, lighting)
    r.head.set_interactive(True)
    try:
        fil = r.render()
    finally:
        r.head.set_interactive(False)
    return fil, r.head.software_frame(r.width, r.height).copy()


def test_software_frame_matches_filaments_interactive_frame(toy, renderer, out_dir):
    p0 = HeadParams.neutral(toy)
    rows = []
    # (The studio environment only: other environments cost seconds to bake, and the lighting
    # itself is test_viewer_fast's subject; this test is about rasterizing the same picture.)
    for L in (Lighting(), Lighting(azimuth=-60, elevation=40, env_intensity=0.5)):
        fil, soft = _filament_and_software(renderer, p0, L)
        sil = renderer.silhouette()
        d = np.abs(fil.astype(float) - soft.astype(float))
        assert d[~sil].mean() < 1.0, f"background differs by {d[~sil].mean():.2f} levels ({L.environment})"
        assert d[sil].mean() < 3.0, f"head differs by {d[sil].mean():.2f} levels on average ({L.environment})"
        bg = soft[~sil].reshape(-1, 3).astype(float).mean(0)
        covered = np.abs(soft.astype(float) - bg).sum(2) > 12
        iou = (covered & sil).sum() / (covered | sil).sum()
        assert iou > 0.97, f"silhouette IoU against Filament's {iou:.3f}"
        rows.append(np.concatenate([fil, soft], 0))
    Image.fromarray(np.concatenate(rows, 1)).save(out_dir / "viewer_soft_vs_filament.png")
    renderer.render(p0, Lighting())


def test_software_frames_follow_the_jaw_and_keep_the_forehead(toy, renderer):
    p0 = HeadParams.neutral(toy)
    renderer.render(p0, Lighting())
    neutral = renderer.head.software_frame(renderer.width, renderer.height).copy()
    verts, lmk, _ = renderer.head.mesh.pose(apply_settings(toy, p0, {"jawOpen": 1.0}))
    renderer.head.set_vertices(verts, lmk, update_scene=False)  # what a slider step in the window does
    opened = renderer.head.software_frame(renderer.width, renderer.height).copy()
    mouth, forehead = mouth_and_forehead(toy, renderer)
    diff = np.abs(neutral.astype(float) - opened.astype(float)).mean(2)
    assert diff[mouth].mean() > 8.0 and diff[forehead].mean() < 0.5, (diff[mouth].mean(), diff[forehead].mean())
    renderer.render(p0)


def test_software_frame_handles_cropped_and_empty_views(toy, renderer):
    """The head partly outside the picture (the rasterizer draws only the on-screen bounding box),
    non-square pictures and a camera looking away all give what Filament shows."""
    p0 = HeadParams.neutral(toy)
    renderer.render(p0, Lighting())
    K0, w2c0 = renderer.K.copy(), renderer.world_to_cam.copy()
    try:
        K = K0.copy()
        K[0, 2] -= 0.35 * renderer.width  # head centre near the left edge: cut in half
        renderer.set_camera(K, w2c0)
        fil, soft = _filament_and_software(renderer)
        sil = renderer.silhouette()
        assert 0.05 < sil.mean() and sil[:, 0].any(), "the head should be cut by the left edge"
        assert np.abs(fil.astype(float) - soft.astype(float))[sil].mean() < 3.0
        wide = renderer.head.software_frame(renderer.width + 37, renderer.height - 50)
        assert wide.shape == (renderer.height - 50, renderer.width + 37, 3)
        away = w2c0.copy()
        away[:3] = np.diag([-1.0, 1.0, -1.0]) @ w2c0[:3]  # turned around in place: the head is behind the camera
        renderer.set_camera(K0, away)
        empty = renderer.head.software_frame(renderer.width, renderer.height)
        assert np.ptp(empty.reshape(-1, 3), 0).max() == 0, "nothing in front of the camera: a flat background"
    finally:
        renderer.set_camera(K0, w2c0)
        renderer.render(p0)
