"""Headless viewer: images change the right way for expressions, lights, textures and tracked frames."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from avatar3d.errors import Avatar3DError
from avatar3d.data.sequence import TrackedSequence
from avatar3d.viewer import envmaps
from avatar3d.viewer.headless import HeadlessRenderer, check_offscreen_support
from avatar3d.viewer.mesh import HeadMesh
from avatar3d.viewer.params import HeadParams, apply_settings
from avatar3d.viewer.scene import Lighting, project
from avatar3d.viewer.shot import ViewOptions, render_view
from avatar3d.viewer.source import open_source
from test_viewer_toy import FOREHEAD_Y, JAW_REGION_Y, toy_head

SIZE = 256


@pytest.fixture(scope="module")
def toy():
    return toy_head()


_cache: dict = {}


@pytest.fixture
def renderer(toy):
    """A shared 256x256 renderer, re-created if another test's renderer replaced it (one per process)."""
    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))
    r = _cache.get("r")
    if r is None or r.renderer is None:
        r = _cache["r"] = HeadlessRenderer(HeadMesh(toy), SIZE, SIZE)
        r.render(HeadParams.neutral(toy), Lighting())  # frames the neutral head: the camera stays fixed after
    return r


def _region_mask(points: np.ndarray, r: HeadlessRenderer, radius: int = 3) -> np.ndarray:
    """(H, W) bool: discs around the projected points."""
    m = np.zeros((r.height, r.width), np.uint8)
    for x, y in project(points, r.K, r.world_to_cam).round().astype(int):
        cv2.circle(m, (int(x), int(y)), radius, 1, -1)
    return m.astype(bool)


def _mouth_and_forehead(toy, r: HeadlessRenderer) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool masks around the toy head's front mouth/jaw and forehead vertices."""
    v = toy.v_template.numpy()
    front = v[:, 2] > 0.04
    return _region_mask(v[front & (v[:, 1] < JAW_REGION_Y - 0.02)], r), _region_mask(v[front & (v[:, 1] > FOREHEAD_Y)], r)


def test_jaw_open_changes_the_mouth_not_the_forehead(toy, renderer, out_dir):
    p0 = HeadParams.neutral(toy)
    neutral = renderer.render(p0, Lighting())
    opened = renderer.render(apply_settings(toy, p0, {"jawOpen": 1.0}))
    mouth, forehead = _mouth_and_forehead(toy, renderer)
    diff = np.abs(neutral.astype(float) - opened.astype(float)).mean(2)
    Image.fromarray(np.concatenate([neutral, opened], 1)).save(out_dir / "viewer_jaw.png")
    assert mouth.sum() > 200 and forehead.sum() > 200
    assert diff[mouth].mean() > 8.0, f"mouth barely changed: {diff[mouth].mean():.2f}"
    assert diff[forehead].mean() < 0.5, f"forehead changed: {diff[forehead].mean():.2f}"
    renderer.render(p0)


def test_moving_the_light_changes_shading_not_silhouette(toy, renderer, out_dir):
    p0 = HeadParams.neutral(toy)
    renderer.render(p0, Lighting(azimuth=0))
    sil = renderer.silhouette()
    # Light from the head's +X, which the frontal camera sees on the image's right.
    right_lit = renderer.render(lighting=Lighting(azimuth=70, elevation=0, env_intensity=0.3))
    sil_r = renderer.silhouette()
    left_lit = renderer.render(lighting=Lighting(azimuth=-70, elevation=0, env_intensity=0.3))
    sil_l = renderer.silhouette()
    Image.fromarray(np.concatenate([right_lit, left_lit], 1)).save(out_dir / "viewer_light.png")
    iou = (sil & sil_r & sil_l).sum() / (sil | sil_r | sil_l).sum()
    assert iou > 0.999, f"silhouette moved with the light (IoU {iou:.4f})"
    ys, xs = np.nonzero(sil)
    cx = int(xs.mean())
    g_r, g_l = right_lit.mean(2), left_lit.mean(2)
    left_half, right_half = sil & (np.arange(SIZE)[None] < cx - 10), sil & (np.arange(SIZE)[None] > cx + 10)
    assert g_r[right_half].mean() > g_r[left_half].mean() + 15
    assert g_l[left_half].mean() > g_l[right_half].mean() + 15
    assert np.abs(g_r - g_l)[sil].mean() > 10 and np.abs(g_r - g_l)[~sil].mean() < 2.0  # background untouched (Filament dithers)


def test_albedo_texture_orientation_and_display_modes(toy, renderer):
    p0 = HeadParams.neutral(toy)
    renderer.render(p0, Lighting())
    img = renderer.render(mode="albedo")
    sil = renderer.silhouette()
    ys, xs = np.nonzero(sil)
    cx, top, bottom = int(xs.mean()), ys.min(), ys.max()
    upper = img[top + 10, cx].astype(int)
    lower = img[bottom - 10, cx].astype(int)
    assert upper[0] > upper[2] + 60, f"top of the head should be the texture's red top half, got {upper}"
    assert lower[2] > lower[0] + 60, f"chin should be the texture's blue bottom half, got {lower}"
    normals = renderer.render(mode="normals")
    assert np.abs(normals.astype(int) - img.astype(int))[sil].mean() > 20
    renderer.render(mode="shaded")


def test_environment_maps_bake_to_filament_files(renderer, toy):
    sh = envmaps.irradiance_sh("overcast")
    assert sh.shape == (9, 3) and sh[1].mean() > 0.05  # brighter from above (+Y term)
    rot = envmaps.irradiance_sh("studio", 90.0)
    assert not np.allclose(rot, envmaps.irradiance_sh("studio", 0.0), atol=1e-3)
    prefix = envmaps.bake_environment("sunset", 45.0)
    head = open(prefix + "_ibl.ktx", "rb").read(64)
    assert head[:12] == b"\xabKTX 11\xbb\r\n\x1a\n"
    assert struct.unpack("<13I", head[12:64])[10:12] == (6, 5)  # 6 faces, 5 prefiltered levels
    renderer.render(HeadParams.neutral(toy))
    imgs = {e: renderer.render(lighting=Lighting(environment=e, intensity=0.0)) for e in ("studio", "sunset", "overcast")}
    sil = renderer.silhouette()
    mean = {e: im[sil].mean(0) for e, im in imgs.items()}
    assert mean["sunset"][0] - mean["sunset"][2] > mean["overcast"][0] - mean["overcast"][2] + 5  # warmer
    # Rotating the studio half a turn puts its key light behind the head: the face gets darker.
    behind = renderer.render(lighting=Lighting(environment="studio", env_rotation=180.0, intensity=0.0))
    assert behind[sil].mean() < imgs["studio"][sil].mean() - 5
    dark = renderer.render(lighting=Lighting(intensity=0.0, env_intensity=0.0))
    assert dark[sil].mean() < 0.3 * imgs["overcast"][sil].mean()
    with pytest.raises(ValueError, match="studio, sunset, overcast"):
        envmaps.bake_environment("moon")
    renderer.render(lighting=Lighting())


def _rasterize_silhouette(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, w2c: np.ndarray, w: int, h: int) -> np.ndarray:
    """Reference mask, independent of Open3D: fill every projected triangle (OpenCV camera)."""
    uv = project(verts, K, w2c)
    m = np.zeros((h, w), np.uint8)
    pts = (uv[faces] * 16).round().astype(np.int32)  # 4 fractional bits, as cv2's shift=4 expects
    for tri in pts:  # one by one: fillPoly on all of them would apply the even-odd rule to overlaps
        cv2.fillConvexPoly(m, tri, 255, lineType=cv2.LINE_8, shift=4)
    return m


def _synthetic_sequence(model, directory, n: int = 3, size: int = 160) -> TrackedSequence:
    E, J = model.num_expression, model.num_joints
    expr = np.zeros((n, E), np.float32)
    expr[:, 0] = np.linspace(0, 1, n)
    pose = np.zeros((n, J, 3), np.float32)
    pose[:, 0, 1] = np.deg2rad(np.linspace(-25, 25, n))  # head turns
    pose[:, 0, 0] = np.deg2rad(10)
    transl = np.tile(np.array([0.01, -0.005, 0.0], np.float32), (n, 1))
    f = 2.2 * size
    K = np.tile(np.array([[f, 0, size / 2 + 3], [0, f, size / 2 - 2], [0, 0, 1]], np.float32), (n, 1, 1))
    # Camera 0.55 m in front of the face, slightly rolled (not the viewer's own frontal camera).
    a = np.deg2rad(8)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    R = Rz @ np.diag([1.0, -1.0, -1.0])
    w2c = np.eye(4, dtype=np.float32)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ np.array([0.0, 0.0, 0.55])
    seq = TrackedSequence(model="toy", model_version="1", fps=25.0, shape=np.zeros(model.num_shape, np.float32), expression=expr,
                          pose=pose, transl=transl, K=K, world_to_cam=np.tile(w2c, (n, 1, 1)), width=size, height=size,
                          joint_names=list(model.joint_names), expression_names=list(model.expression_names))
    seq.save(directory)
    (directory / "images").mkdir()
    (directory / "masks").mkdir()
    faces = model.faces.numpy()
    with torch.no_grad():
        verts = model(expression=torch.from_numpy(expr), pose=torch.from_numpy(pose), transl=torch.from_numpy(transl)).vertices.numpy()
    for i in range(n):
        mask = _rasterize_silhouette(verts[i], faces, K[i].astype(float), w2c.astype(float), size, size)
        Image.fromarray(mask).save(directory / "masks" / f"{i:06d}.png")
        img = np.dstack([mask // 2 + 40] * 3).astype(np.uint8)
        Image.fromarray(img).save(directory / "images" / f"{i:06d}.png")
    return seq


def test_tracked_frame_silhouette_overlaps_the_tracking_mask(toy, tmp_path, out_dir):
    seq_dir = tmp_path / "track"
    _synthetic_sequence(toy, seq_dir)
    src = open_source(str(seq_dir), model=toy)
    assert src.num_frames == 3 and src.fps == 25.0
    ious = []
    r = None
    for i in (0, 2):
        img, r = render_view(src, ViewOptions(frame=i, beside=True), r)
        assert img.shape == (160, 320, 3)  # source frame beside the render
        sil = r.silhouette()
        mask = src.frame_mask(i)
        ious.append((sil & mask).sum() / (sil | mask).sum())
        Image.fromarray(img).save(out_dir / f"viewer_track_{i}.png")
    print(f"tracked-frame silhouette IoU vs mask: {', '.join(f'{x:.4f}' for x in ious)}")
    over, r = render_view(src, ViewOptions(frame=2, overlay=0.5), r)
    frame = src.frame_image(2)
    assert over.shape == frame.shape
    assert np.array_equal(over[~sil], frame[~sil])  # the video untouched outside the head
    assert np.abs(over[sil].astype(int) - frame[sil].astype(int)).mean() > 10  # the head drawn over it
    assert min(ious) > 0.97, ious
    # A frame's mask must not match the other frame's render (the head turns 50 degrees).
    assert (sil & src.frame_mask(0)).sum() / (sil | src.frame_mask(0)).sum() < min(ious) - 0.02
    with pytest.raises(Avatar3DError, match="outside the sequence"):
        src.frame_params(3)


def test_missing_vulkan_is_one_sentence(monkeypatch):
    import avatar3d.viewer.headless as H

    monkeypatch.delenv("VK_ICD_FILENAMES", raising=False)
    monkeypatch.delenv("VK_DRIVER_FILES", raising=False)
    monkeypatch.setattr(H.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(H.glob, "glob", lambda pattern: [])
    with pytest.raises(Avatar3DError, match="libvulkan1"):
        check_offscreen_support()
    monkeypatch.setattr(H.ctypes.util, "find_library", lambda name: "libvulkan.so.1")
    with pytest.raises(Avatar3DError, match="mesa-vulkan-drivers"):
        check_offscreen_support()


def test_no_display_is_one_sentence(monkeypatch):
    from avatar3d.viewer.app import check_gui_support

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(Avatar3DError, match="xvfb"):
        check_gui_support()
