"""The built-in head: geometry sanity, UVs, rig, blendshapes, identity space and "looks like a face"."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from avatar3d.models.base import REGION_NAMES, HeadModel
from avatar3d.models.builtin import _load, _save, build_builtin_data
from avatar3d.models.builtin.anatomy import DEFAULT as A
from avatar3d.models.builtin.assemble import PART_IDS, assemble
from avatar3d.models.builtin.blendshapes import build_expressions

REQUIRED_EXPR = [
    "jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "browDownLeft", "browDownRight", "mouthPucker", "mouthFunnel",
    "cheekPuff", "eyeLookUpLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpRight", "eyeLookDownRight",
    "eyeLookInRight", "eyeLookOutRight", "mouthClose", "mouthLeft", "mouthRight", "noseSneerLeft", "noseSneerRight",
    "eyeSquintLeft", "eyeWideLeft", "jawLeft", "jawRight", "jawForward", "mouthRollLower", "mouthRollUpper",
]  # fmt: skip


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return build_builtin_data(landmarks=False)


@pytest.fixture(scope="module")
def model(data):
    return HeadModel(data)


def _edges(faces):
    return Counter((int(a), int(b)) for f in faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])))


def test_sizes_names_and_validate(data):
    data.validate()
    V = len(data.v_template)
    assert 5000 < V < 15000
    assert data.joint_names == ["root", "neck", "jaw", "eye_left", "eye_right"]
    assert list(data.parents) == [-1, 0, 1, 1, 1]
    assert set(REQUIRED_EXPR) <= set(data.expression_names) and len(data.expression_names) >= 45
    assert set(REGION_NAMES) <= set(data.regions)
    assert all(data.regions[k].any() for k in REGION_NAMES)
    assert data.shapedirs.shape[2] >= 30 and data.shape_std.shape == (data.shapedirs.shape[2],)
    np.testing.assert_allclose(data.lbs_weights.sum(1), 1.0, atol=1e-5)
    assert data.lbs_weights.min() >= 0
    albedo = data.extras["albedo"]
    assert albedo.dtype == np.uint8 and albedo.shape == (1024, 1024, 3)
    # Proportions: chin to crown ~0.23 m, breadth without ears ~0.15 m, face towards +Z.
    v = data.v_template[data.extras["part_ids"] == PART_IDS["head"]]
    face = data.v_template[data.regions["face"]]
    assert 0.21 < v[:, 1].max() - face[:, 1].min() < 0.25
    assert v[:, 2].max() > 0.1 and v[:, 2].max() > -v[:, 2].min()


def test_proportions_of_an_adult_head(data):
    from avatar3d.models.builtin.proportions import head_proportions

    p = head_proportions(data.v_template, data.extras["part_ids"], A)
    # Adult soft-tissue anthropometry: chin-vertex ~0.23 m, breadth ~0.15 m, length 0.19-0.20 m,
    # pupils near half the head height, neck ~0.11-0.12 m wide and about as deep.
    assert 0.22 < p["height"] < 0.245, p
    assert 0.145 < p["breadth"] < 0.16, p
    assert 0.19 < p["length"] < 0.21, p
    assert 0.47 < p["eye_height"] < 0.55, p
    assert 0.105 < p["neck_width"] < 0.125 and 0.105 < p["neck_depth"] < 0.135, p
    assert 0.65 < p["neck_width"] / p["breadth"] < 0.8, p
    # A short neck below the chin (a body attaches at the cut), wider at the cut than in the middle.
    assert 0.06 < p["neck_length"] < 0.10 and p["neck_cut_width"] >= p["neck_width"], p


def test_identity_modes_keep_the_neck_cut(data):
    # A body attaches at the neck cut: no identity mode may move it.
    cut = data.regions["neck_boundary"]
    assert np.abs(data.shapedirs[cut]).max() < 1e-9
    k = data.extras["shape_names"].index("neck_width")
    assert np.abs(data.shapedirs[:, :, k]).max() > 1e-3  # but the neck above it does change


def test_deterministic(data):
    asm = assemble(A)
    np.testing.assert_array_equal(asm.vertices.astype(np.float32), data.v_template)
    np.testing.assert_array_equal(asm.faces, data.faces)
    np.testing.assert_array_equal(build_expressions(asm, A).astype(np.float32), data.exprdirs)


def test_mesh_is_clean_and_closed_except_openings(data):
    V, F = data.v_template, data.faces
    area = 0.5 * np.linalg.norm(np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]), axis=1)
    assert area.min() > 1e-8  # no degenerate triangles (0.01 mm^2)
    assert len({tuple(sorted(f)) for f in F.tolist()}) == len(F)
    E = _edges(F)
    assert max(E.values()) == 1, "a directed edge is used twice: inconsistent orientation or non-manifold"
    boundary = [e for e in E if (e[1], e[0]) not in E]
    bverts = np.unique(np.array(boundary))
    # Open only at the neck cut and the two eyelid openings.
    neck = data.regions["neck_boundary"]
    eye_lid = ~neck[bverts]
    assert neck[bverts].sum() == neck.sum()
    lid_pts = V[bverts[eye_lid]]
    d = np.minimum(np.linalg.norm(lid_pts - A.eye(1), axis=1), np.linalg.norm(lid_pts - A.eye(-1), axis=1))
    assert d.max() < A.lid_radius + 0.004  # the canthi sit a little outside the lid sphere
    assert (lid_pts[:, 0] > 0).sum() == (lid_pts[:, 0] < 0).sum() > 10


def test_outward_orientation(data):
    V, F = data.v_template, data.faces
    part = data.extras["part_ids"]
    for pid in (PART_IDS["eye_left"], PART_IDS["ear_left"], PART_IDS["ear_right"], PART_IDS["teeth_upper"], PART_IDS["teeth_lower"]):
        f = F[part[F].max(1) == pid]
        vol = np.einsum("ij,ij->i", V[f[:, 0]], np.cross(V[f[:, 1]], V[f[:, 2]])).sum() / 6
        assert vol > 0, f"part {pid} is inside out"
    f = F[part[F].max(1) == PART_IDS["head"]]
    n = np.cross(V[f[:, 1]] - V[f[:, 0]], V[f[:, 2]] - V[f[:, 0]])
    out = V[f].mean(1) - np.array(A.ray_center)
    assert ((n * out).sum(1) > 0).mean() > 0.97


def test_uvs_layout_and_seams(data):
    assert data.uvs.min() >= 0 and data.uvs.max() <= 1
    uv = data.uvs[data.uv_faces]
    a = (uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1]) - (uv[:, 1, 1] - uv[:, 0, 1]) * (uv[:, 2, 0] - uv[:, 0, 0])
    assert (a > 0).all(), "every UV triangle keeps the 3D winding (no mirrored or degenerate UVs)"
    # Seams: some vertices carry several UVs; separate islands for eyes / mouth.
    pairs = {(int(v), int(t)) for v, t in zip(data.faces.ravel(), data.uv_faces.ravel())}
    per_vertex = Counter(v for v, _ in pairs)
    assert sum(1 for c in per_vertex.values() if c > 1) > 100
    fpart = data.extras["part_ids"][data.faces].max(1)  # bag faces touching the lips count as bag
    boxes = {}
    for name in ("head", "eye_left", "eye_right", "bag", "ear_left", "ear_right", "teeth_upper"):
        t = np.unique(data.uv_faces[fpart == PART_IDS[name]])
        boxes[name] = (data.uvs[t].min(0), data.uvs[t].max(0))
    for a_ in boxes:
        for b_ in boxes:
            if a_ < b_:
                lo = np.maximum(boxes[a_][0], boxes[b_][0])
                hi = np.minimum(boxes[a_][1], boxes[b_][1])
                assert (hi <= lo + 1e-6).any(), f"UV islands {a_} and {b_} overlap"


def test_albedo_colours(data):
    tex = data.extras["albedo"].astype(float)
    part = data.extras["part_ids"]

    def sample(vid):
        t = data.uv_faces[data.faces == vid][0] if (data.faces == vid).any() else None
        u, v = data.uvs[t]
        return tex[int((1 - v) * 1023), int(u * 1023)]

    eye = np.flatnonzero(part == PART_IDS["eye_left"])
    front = eye[np.argmax(data.v_template[eye, 2])]  # pupil
    side = eye[np.argmax(data.v_template[eye, 0])]  # sclera
    assert sample(front).mean() < 60 < sample(side).mean()
    skin = np.flatnonzero(data.regions["face"])
    cheek = skin[np.argmin(np.linalg.norm(data.v_template[skin] - [0.045, -0.02, 0.07], axis=1))]
    lip = skin[np.argmin(np.linalg.norm(data.v_template[skin] - [0.0, A.mouth_y - 0.005, A.mouth_z + 0.003], axis=1))]
    c, l_ = sample(cheek), sample(lip)
    assert l_[0] / l_[1] > c[0] / c[1] + 0.2  # lips are redder than skin


def _moves(model, name, w=1.0):
    with torch.no_grad():
        out = model(expression=model.expression_vector({name: w}))
    return (out.vertices[0] - model.v_template).norm(dim=1).numpy()


def _nearest(model, p):
    return int(torch.argmin((model.v_template - torch.tensor(p, dtype=torch.float32)).norm(dim=1)))


def test_expressions_move_the_right_region(model):
    V = model.v_template.numpy()
    chin = _nearest(model, [0, A.chin_y + 0.005, 0.07])
    forehead = _nearest(model, [0, 0.07, 0.095])
    m = _moves(model, "jawOpen")
    assert m[chin] > 0.015 and m[forehead] < 1e-6
    lip_lo = _nearest(model, A.mouth_line(np.zeros(1))[0] + [0, -0.003, 0.002])
    lip_up = _nearest(model, A.mouth_line(np.zeros(1))[0] + [0, 0.004, 0.002])
    assert m[lip_lo] > 0.008 and m[lip_up] < 0.002  # lips part
    # Blinks: the left upper lid moves by about the eye opening, nothing on the right side moves.
    b = _moves(model, "eyeBlinkLeft")
    assert 0.004 < b.max() < 0.012
    assert b[V[:, 0] < 0].max() < 1e-7
    moved = V[b > 0.002]
    assert (moved[:, 1] > A.eye_center[1] - 0.002).all() and (np.abs(moved[:, 0] - A.eye_center[0]) < 0.02).all()
    s = _moves(model, "mouthSmileLeft")
    corner = _nearest(model, A.mouth_line(np.array([A.mouth_half_width]))[0])
    assert s[corner] > 0.004 and s[V[:, 0] < -0.02].max() < 5e-4
    with torch.no_grad():
        d = model(expression=model.expression_vector({"mouthSmileLeft": 1})).vertices[0, corner] - model.v_template[corner]
    assert d[1] > 0.003  # the corner goes up
    eyes = model.region("eyes").numpy()
    for i, name in enumerate(model.expression_names):
        mv = _moves(model, name)
        assert 5e-4 < mv.max() < 0.04, name
        assert mv[eyes].max() < 1e-7, f"{name} deforms an eyeball"
        if not name.startswith("jaw"):
            assert mv[model.region("teeth").numpy()].max() < 1e-7, f"{name} moves the teeth"
    # The lower teeth ride on the jaw, the upper ones never move.
    upper = model.extras["part_ids"] == PART_IDS["teeth_upper"]
    lower = model.extras["part_ids"] == PART_IDS["teeth_lower"]
    assert m[upper].max() < 1e-7 and m[lower].min() > 0.005


def test_identity_modes_plausible(model, data):
    S = model.num_shape
    names = data.extras["shape_names"]
    for k in range(S):
        d = data.shapedirs[:, :, k]
        assert np.abs(d).max() > 3e-4, names[k]
        assert np.linalg.norm(d, axis=1).max() * 3 < 0.03, f"{names[k]} moves a vertex > 3 cm at 3 std"
    rng = np.random.default_rng(0)
    b = torch.tensor(rng.normal(size=(4, S)) * 3, dtype=torch.float32)
    with torch.no_grad():
        out = model(shape=b)
    disp = (out.vertices - model.v_template).norm(dim=-1)
    assert disp.max() < 0.05
    # Eyeballs stay rigid spheres under identity changes.
    eye = model.region("eye_left")
    p = out.vertices[:, eye]
    r = (p - p.mean(1, keepdim=True)).norm(dim=-1)
    assert torch.allclose(r, torch.full_like(r, A.eye_radius), atol=1e-5)


def test_lbs_jaw_and_eyes(model):
    B = 2
    pose = torch.zeros(B, 5, 3)
    pose[:, 2, 0] = 0.3
    with torch.no_grad():
        out = model(pose=pose)
    d = (out.vertices[0] - model.v_template).norm(dim=1).numpy()
    chin = _nearest(model, [0, A.chin_y + 0.005, 0.07])
    forehead = _nearest(model, [0, 0.07, 0.095])
    assert d[chin] > 0.02 and d[forehead] < 1e-6
    np.testing.assert_allclose(out.joints[0, 3].numpy(), A.eye(1), atol=1e-5)
    pose = torch.zeros(1, 5, 3)
    pose[0, 3, 1] = 0.4
    with torch.no_grad():
        out = model(pose=pose)
    eye = model.region("eye_left")
    p0, p1 = model.v_template[eye], out.vertices[0, eye]
    assert (p1 - p0).norm(dim=1).max() > 0.003
    mm = "donot_use_mm_for_euclid_dist"
    assert torch.allclose(torch.cdist(p0, p0, compute_mode=mm), torch.cdist(p1, p1, compute_mode=mm), atol=1e-6)  # rigid
    others = ~eye
    assert (out.vertices[0, others] - model.v_template[others]).abs().max() < 1e-6


def test_forward_batched_and_differentiable(model):
    B = 3
    shape = torch.zeros(B, model.num_shape, requires_grad=True)
    expr = torch.full((B, model.num_expression), 0.1, requires_grad=True)
    pose = torch.zeros(B, 5, 3, requires_grad=True)
    out = model(shape=shape, expression=expr, pose=pose)
    assert out.vertices.shape == (B, model.num_vertices, 3) and out.joints.shape == (B, 5, 3)
    out.vertices.square().sum().backward()
    assert shape.grad.abs().sum() > 0 and expr.grad.abs().sum() > 0 and pose.grad.abs().sum() > 0


def test_cache_round_trip(data, tmp_path):
    p = tmp_path / "b.npz"
    _save(data, p)
    back = _load(p)
    back.validate()
    np.testing.assert_array_equal(back.exprdirs, data.exprdirs)
    assert back.expression_names == data.expression_names
    assert all((back.regions[k] == data.regions[k]).all() for k in data.regions)


def test_mediapipe_finds_a_face(data):
    pytest.importorskip("mediapipe", reason="mediapipe not installed")
    pytest.importorskip("open3d", reason="open3d not installed")
    from avatar3d.models.builtin.preview import render
    from avatar3d.models.embedding import detect_mediapipe

    img = render(data.v_template, data.faces, uvs=data.uvs, uv_faces=data.uv_faces, texture=data.extras["albedo"], size=384, distance=0.6)
    pts = detect_mediapipe(img)
    assert pts is not None, "MediaPipe found no face in the front render of the built-in head"
    # The detected eyes are level and the face is centred.
    assert abs(pts[33, 1] - pts[263, 1]) < 8 and abs(pts[1, 0] - 192) < 25
