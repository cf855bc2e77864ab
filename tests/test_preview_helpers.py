"""Shared preview helpers: orbit cameras, the contact sheet, and the built-in head's preview renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.errors import BadInputError
from avatar3d.render.preview import contact_sheet, orbit_camera, to_uint8


def test_contact_sheet_tiles_row_major():
    ims = [np.full((4, 6, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    s = contact_sheet(ims, cols=3)
    assert s.shape == (8, 18, 3) and s.dtype == np.uint8
    assert s[0, 0, 0] == 10 and s[0, 17, 0] == 30 and s[4, 0, 0] == 40 and s[4, 6, 0] == 50
    assert (s[4:, 12:] == 255).all()  # the empty slot keeps the background


def test_contact_sheet_labels_and_bad_input():
    ims = [np.zeros((20, 30, 3), np.uint8)] * 2
    s = contact_sheet(ims, cols=2, labels=["a", "bb"])
    assert s.shape == (38, 60, 3)
    assert (s[:18] < 255).any() and (s[18:] == 0).all()  # captions drawn above the tiles only
    with pytest.raises(BadInputError, match="labels"):
        contact_sheet(ims, cols=2, labels=["one"])
    with pytest.raises(BadInputError, match="one size"):
        contact_sheet([ims[0], np.zeros((5, 5, 3), np.uint8)], cols=2)
    with pytest.raises(BadInputError):
        contact_sheet([], cols=2)


def test_orbit_camera_sees_the_subjects_left_on_the_image_right():
    K, w2c = orbit_camera(0.0, 0.0, 1.0, (0.0, 0.0, 0.0), 100)
    p = torch.tensor([[0.1, 0.05, 0.0, 1.0]]) @ w2c.T
    uv = (p[:, :3] @ K.T)[:, :2] / p[:, 2:3]
    assert uv[0, 0] > 50 and uv[0, 1] < 50  # +X right, +Y up in the image
    K, w2c = orbit_camera(90.0, 0.0, 1.0, (0.0, 0.0, 0.0), 100)
    cam_pos = -w2c[:3, :3].T @ w2c[:3, 3]
    np.testing.assert_allclose(cam_pos.numpy(), [1.0, 0.0, 0.0], atol=1e-6)  # yaw 90: at the subject's left
    assert to_uint8(torch.full((1, 2, 2, 3), 0.5)).tolist() == [[[128] * 3] * 2] * 2


def test_builtin_preview_render_and_project_agree():
    from avatar3d.models.builtin import load_builtin
    from avatar3d.models.builtin.anatomy import DEFAULT as A
    from avatar3d.models.builtin.preview import project, render

    torch.set_num_threads(1)
    m = load_builtin(landmarks=False)  # the cached head when another test already built it
    V, F = m.v_template.numpy(), m.faces.numpy()
    bg = (235, 235, 240)
    cam = dict(size=160, distance=0.6)
    img = render(V, F, background=bg, **cam)
    fg = (img != np.array(bg, np.uint8)).any(-1)
    assert 0.2 < fg.mean() < 0.8
    pts = np.round(project(np.stack([A.eye(1), A.eye(-1), np.array(A.nose_tip), np.array([0.1, 0.08, 0.0])]), **cam)).astype(int)
    assert pts[0, 0] > pts[1, 0]  # the subject's left eye is on the image right
    assert all(fg[y, x] for x, y in pts[:3]) and not fg[pts[3, 1], pts[3, 0]]  # beside the temple: background
    cam = dict(size=160, distance=1.0)
    side = render(V, F, yaw_deg=90, background=bg, **cam)
    cols = np.flatnonzero((side != np.array(bg, np.uint8)).any(-1).any(0))
    nose = project(np.array([A.nose_tip]), yaw_deg=90, **cam)[0]
    assert abs(nose[0] - cols.min()) < 4  # seen from the left, the face points to the image left


def test_vertex_normals_match_a_per_face_loop_for_each_batch_item():
    """The vertex-major batched layout of ``vertex_normals`` keeps batch items apart: each equals
    an area-weighted sum over its own faces, and gradients flow (double-precision gradcheck)."""
    from torch.autograd import gradcheck

    from avatar3d.geometry import vertex_normals

    g = torch.Generator().manual_seed(0)
    B, V, F = 3, 40, 70
    v = torch.randn(B, V, 3, generator=g, dtype=torch.float64)
    f = torch.randint(0, V, (F, 3), generator=g)
    n = vertex_normals(v, f)
    assert n.shape == (B, V, 3) and n.is_contiguous()
    vn, fn = v.numpy(), f.numpy()
    for b in range(B):
        ref = np.zeros((V, 3))
        for a, c, d in fn:
            ref[[a, c, d]] += np.cross(vn[b, c] - vn[b, a], vn[b, d] - vn[b, a])
        used = np.linalg.norm(ref, axis=1) > 1e-9
        ref[used] /= np.linalg.norm(ref[used], axis=1, keepdims=True)
        np.testing.assert_allclose(n[b].numpy()[used], ref[used], atol=1e-12)
    assert gradcheck(lambda x: vertex_normals(x, f[:12]), (v[:2].clone().requires_grad_(),))
