"""Interactive frames (per-vertex lighting drawn unlit, see avatar3d/viewer/fastshade.py): they look
like the full-quality frame, follow sliders and lights, and rest on measured Filament behaviour."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from avatar3d.render.color import display_curve
from avatar3d.viewer import fastshade
from avatar3d.viewer.fastshade import front_facing
from avatar3d.viewer.params import HeadParams, apply_settings
from avatar3d.viewer.scene import Lighting
from helpers.viewer_toy import mouth_and_forehead


def _frames(r, params, lighting):
    """(full-quality frame, interactive frame, silhouette) of the same state."""
    full = r.render(params, lighting)
    sil = r.silhouette()
    r.head.set_interactive(True)
    try:
        fast = r.render()
    finally:
        r.head.set_interactive(False)
    return full, fast, sil


def test_interactive_frame_looks_like_the_full_frame(toy, renderer, out_dir):
    p0 = HeadParams.neutral(toy)
    diffs = []
    pairs = []
    for L in (Lighting(), Lighting(environment="sunset", azimuth=-60), Lighting(intensity=0.0, environment="overcast")):
        full, fast, sil = _frames(renderer, p0, L)
        d = np.abs(fast.astype(float) - full.astype(float))
        diffs.append(d[sil].mean())
        assert d[~sil].mean() < 1.5, f"background differs by {d[~sil].mean():.2f} levels ({L.environment})"
        # Same silhouette: the interactive head covers what the full one does (culled back faces leave no holes).
        bg = full[~sil].reshape(-1, 3).mean(0)
        covered = np.abs(fast.astype(float) - bg).sum(2) > 12
        assert (covered & sil).sum() / sil.sum() > 0.97
        near = cv2.dilate(sil.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # anti-aliased edges of the full frame
        assert (covered & ~near).sum() < 0.002 * sil.sum()
        pairs.append(np.concatenate([full, fast], 0))
    Image.fromarray(np.concatenate(pairs, 1)).save(out_dir / "viewer_fast_vs_full.png")
    assert max(diffs) < 12.0, f"interactive frames differ from full ones by {[round(x, 1) for x in diffs]} levels on the head"
    # Texture orientation survives the re-encoded albedo: red top half, blue bottom half (toy texture).
    full, fast, sil = _frames(renderer, p0, Lighting(env_intensity=0.6))
    ys, xs = np.nonzero(sil)
    cx, top, bottom = int(xs.mean()), ys.min(), ys.max()
    up, low = fast[top + 12, cx].astype(int), fast[bottom - 12, cx].astype(int)
    assert up[0] > up[2] + 30 and low[2] > low[0] + 30, f"texture upside down in the interactive frame: top {up}, bottom {low}"


def test_interactive_frames_follow_sliders_and_lights(toy, renderer):
    p0 = HeadParams.neutral(toy)
    renderer.render(p0, Lighting())
    renderer.head.set_interactive(True)
    try:
        neutral = renderer.render(p0)
        opened = renderer.render(apply_settings(toy, p0, {"jawOpen": 1.0}))
        mouth, forehead = mouth_and_forehead(toy, renderer)
        diff = np.abs(neutral.astype(float) - opened.astype(float)).mean(2)
        assert diff[mouth].mean() > 8.0 and diff[forehead].mean() < 0.5
        renderer.render(p0)
        sil = neutral.astype(int).sum(2) > neutral[2, 2].astype(int).sum() + 20
        ys, xs = np.nonzero(sil)
        cx = int(xs.mean())
        right_lit = renderer.render(lighting=Lighting(azimuth=70, elevation=0, env_intensity=0.3)).mean(2)
        left_lit = renderer.render(lighting=Lighting(azimuth=-70, elevation=0, env_intensity=0.3)).mean(2)
        cols = np.arange(renderer.width)[None]
        left_half, right_half = sil & (cols < cx - 10), sil & (cols > cx + 10)
        assert right_lit[right_half].mean() > right_lit[left_half].mean() + 15
        assert left_lit[left_half].mean() > left_lit[right_half].mean() + 15
    finally:
        renderer.head.set_interactive(False)
        renderer.render(p0, Lighting())


def test_display_curve_and_unlit_output_match_filament(renderer):
    """The two Filament facts the interactive path relies on, re-measured: unlit colours pass
    post-processing through the tabulated tone curve, and without post-processing come out as is."""
    import open3d as o3d

    R = o3d.visualization.rendering
    r = renderer
    K, w2c = r.K, r.world_to_cam
    xs = np.array([0.0, 0.004, 0.01, 0.03, 0.06, 0.1, 0.18, 0.3, 0.5, 0.8, 1.3, 2.5, 6.0], np.float32)
    n = len(xs)
    # A row of patches in front of the head (OpenCV camera frame), covering the middle rows.
    head_cam = r.head.vertices @ w2c[:3, :3].T + w2c[:3, 3]
    z = 0.8 * float(head_cam[:, 2].min())
    u = np.linspace(0, r.width, n + 1)
    verts, cols, faces = [], [], []
    for i, x in enumerate(xs):
        b = len(verts)
        for px, py in ((u[i], 0.3 * r.height), (u[i + 1], 0.3 * r.height), (u[i + 1], 0.7 * r.height), (u[i], 0.7 * r.height)):
            verts.append([(px - K[0, 2]) / K[0, 0] * z, (py - K[1, 2]) / K[1, 1] * z, z])
            cols.append([x, x, x])
        faces += [[b, b + 2, b + 1], [b, b + 3, b + 2]]
    cam_to_world = np.linalg.inv(w2c)
    world = np.asarray(verts) @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(world.astype(np.float32))
    tm.vertex.colors = o3d.core.Tensor(np.asarray(cols, np.float32))
    tm.triangle.indices = o3d.core.Tensor(np.asarray(faces, np.int64))
    m = R.MaterialRecord()
    m.shader, m.base_color = "defaultUnlit", [1.0, 1.0, 1.0, 1.0]
    scene = r.renderer.scene
    scene.add_geometry("tone_probe", tm, m)
    try:
        centres = ((u[:-1] + u[1:]) / 2).astype(int)
        shown = np.asarray(r.renderer.render_to_image())[r.height // 2, centres].astype(float).mean(1)
        scene.view.set_post_processing(False)
        raw = np.asarray(r.renderer.render_to_image())[r.height // 2, centres].astype(float).mean(1)
    finally:
        scene.view.set_post_processing(True)
        scene.remove_geometry("tone_probe")
    expected = display_curve(xs) * 255
    assert np.abs(shown - expected).max() < 4.0, f"Filament's tone curve changed: {shown.round()} vs table {expected.round()}"
    assert np.abs(raw - np.clip(xs, 0, 1) * 255).max() < 2.0, f"unlit output without post-processing is not linear: {raw.round()}"


def test_front_facing_and_vertex_lighting_basics():
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=3)
    pos, faces = np.asarray(ico.vertices, np.float32), np.asarray(ico.faces)
    eye = np.array([0.0, 0.0, 5.0])
    ff = front_facing(pos, faces, eye)
    centres = pos[faces].mean(1)
    assert ff.any() and np.all(centres[ff][:, 2] > -0.05) and np.all(centres[~ff][:, 2] < 0.35)
    assert 0.35 < ff.mean() < 0.6
    vl = fastshade.VertexLighting(None, None, base_color=(0.5, 0.5, 0.5))
    nrm = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    col = vl.colors(pos, nrm, eye, Lighting(azimuth=90, elevation=0, env_intensity=0.0), None, 70000.0, 32000.0)
    assert col.shape == pos.shape and col.dtype == np.float32
    lit, dark = col[pos[:, 0] > 0.5].mean(), col[pos[:, 0] < -0.5].mean()
    assert lit > 0.3 and dark < 0.02, f"light from +X: lit side {lit:.3f}, far side {dark:.3f}"
