"""avatar3d.geometry: the torch and NumPy versions agree, conversions round-trip, gradients are finite and correct."""

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from avatar3d import geometry as G


def _mesh(seed=0, V=40, F=70):
    g = np.random.default_rng(seed)
    verts = g.normal(size=(V, 3))
    faces = np.stack([g.choice(V - 1, 3, replace=False) for _ in range(F)])  # vertex V-1 unused
    return verts, faces


def _rvecs(n=64, seed=1):
    g = np.random.default_rng(seed)
    axis = g.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = g.uniform(0, np.pi - 1e-3, size=(n, 1))
    angle[:4] = [[0.0], [1e-9], [1e-5], [np.pi - 1e-6]]  # rest pose, tiny angles, near pi
    return axis * angle


def test_vertex_normals_torch_numpy_and_incidence_agree():
    verts, faces = _mesh()
    ref = G.vertex_normals_np(verts, faces)
    assert ref.dtype == np.float64 and np.allclose(ref[-1], 0)  # unused vertex: zero normal
    used = np.linalg.norm(ref, axis=1) > 0
    np.testing.assert_allclose(np.linalg.norm(ref[used], axis=1), 1, atol=1e-12)
    vt, ft = torch.from_numpy(verts)[None].repeat(2, 1, 1), torch.from_numpy(faces)
    np.testing.assert_allclose(G.vertex_normals(vt, ft)[1].numpy(), ref, atol=1e-12)
    inc = G.incidence(ft, len(verts)).to(torch.float64)
    np.testing.assert_allclose(G.vertex_normals(vt, ft, inc)[0].numpy(), ref, atol=1e-12)
    # float32 in, float32 out; a subset of rows through the incidence matrix
    rows = np.array([3, 0, 3])
    sub = G.vertex_normals_np(verts.astype(np.float32), faces, G.incidence_np(faces, len(verts))[rows])
    assert sub.dtype == np.float32
    np.testing.assert_allclose(sub, ref[rows], atol=1e-5)


def test_face_normals_torch_numpy_agree_and_point_outwards():
    verts, faces = _mesh()
    ref = G.face_normals_np(verts, faces)
    assert ref.shape == (len(faces), 3) and ref.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(ref, axis=1), 1, atol=1e-12)
    raw = G.face_normals_np(verts, faces, normalize=False)  # length = twice the triangle's area
    tri = verts[faces]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), area2, rtol=1e-12)
    np.testing.assert_allclose(raw / area2[:, None], ref, atol=1e-12)
    vt, ft = torch.from_numpy(verts)[None].repeat(2, 1, 1), torch.from_numpy(faces)
    nt = G.face_normals(vt, ft)
    assert nt.shape == (2, len(faces), 3)
    np.testing.assert_allclose(nt[1].numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(G.face_normals(vt[0], ft, normalize=False).numpy(), raw, atol=1e-12)
    assert G.face_normals_np(verts.astype(np.float32), faces).dtype == np.float32
    # counter-clockwise seen from outside: outwards on a tetrahedron; a degenerate triangle: zero, finite
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3], [0, 0, 1]])
    n = G.face_normals_np(v, f)
    assert np.all((n[:4] * (v[f[:4]].mean(1) - v.mean(0))).sum(1) > 0)
    assert np.all(n[4] == 0) and torch.isfinite(G.face_normals(torch.from_numpy(v), torch.from_numpy(f))).all()


def test_face_normals_gradient():
    verts, faces = _mesh(V=8, F=6)
    vt = torch.from_numpy(verts).requires_grad_()
    assert gradcheck(lambda v: G.face_normals(v, torch.from_numpy(faces)), (vt,))


def test_vertex_normals_point_outwards_on_a_tetrahedron():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    n = G.vertex_normals_np(v, f)
    assert np.all((n * (v - v.mean(0))).sum(1) > 0)


def test_axis_angle_matrix_torch_numpy_and_orthonormal():
    r = _rvecs()
    R = G.axis_angle_to_matrix_np(r)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1, atol=1e-12)
    Rt = G.axis_angle_to_matrix(torch.from_numpy(r), eps=1e-30).numpy()
    np.testing.assert_allclose(Rt[1:], R[1:], atol=1e-12)
    # batch shapes pass through; the default eps moves angles by ~eps / (2 angle) only
    Rb = G.axis_angle_to_matrix(torch.from_numpy(r).view(8, 8, 3)).numpy().reshape(-1, 3, 3)
    np.testing.assert_allclose(Rb, R, atol=2e-8)
    # a rotation about +Z by 90 degrees takes +X to +Y
    np.testing.assert_allclose(G.axis_angle_to_matrix_np([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-15)


def test_rotation_round_trips():
    r = _rvecs()
    R = G.axis_angle_to_matrix_np(r)
    q = G.axis_angle_to_quaternion_np(r)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1, atol=1e-12)
    np.testing.assert_allclose(G.quaternion_to_matrix_np(q), R, atol=1e-12)
    qR = G.matrix_to_quaternion_np(R)
    np.testing.assert_allclose(np.abs((qR * q).sum(-1)), 1, atol=1e-12)  # same rotation (q or -q)
    np.testing.assert_allclose(G.quaternion_to_axis_angle_np(q), r, atol=1e-9)
    np.testing.assert_allclose(G.axis_angle_to_matrix_np(G.matrix_to_axis_angle_np(R)), R, atol=1e-9)
    # torch versions equal the NumPy ones
    rt = torch.from_numpy(r)
    qt = G.axis_angle_to_quaternion(rt)
    np.testing.assert_allclose(qt.numpy(), q, atol=1e-12)
    np.testing.assert_allclose(G.quaternion_to_matrix(qt).numpy(), R, atol=1e-12)
    np.testing.assert_allclose(G.matrix_to_quaternion(torch.from_numpy(R)).numpy(), qR, atol=1e-12)
    np.testing.assert_allclose(G.quaternion_to_axis_angle(qt).numpy(), r, atol=1e-9)
    np.testing.assert_allclose(G.matrix_to_axis_angle(torch.from_numpy(R)).numpy(), G.matrix_to_axis_angle_np(R), atol=1e-9)


def test_quaternion_to_matrix_normalises_and_ignores_sign():
    q = np.array([[2.0, 0, 0, 2.0], [-1.0, 0, 0, -1.0]])
    R = G.quaternion_to_matrix_np(q)
    np.testing.assert_allclose(R[0], R[1])
    np.testing.assert_allclose(R[0] @ [1, 0, 0], [0, 1, 0], atol=1e-15)  # 90 degrees about +Z


@pytest.mark.parametrize("fn, make", [
    (G.axis_angle_to_matrix, lambda: torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)),
    (G.quaternion_to_matrix, lambda: torch.tensor([[0.9, 0.1, -0.3, 0.2]], dtype=torch.float64)),
    (G.axis_angle_to_quaternion, lambda: torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)),
    (G.matrix_to_axis_angle, lambda: G.axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 1.5]], dtype=torch.float64))),
])
def test_gradients(fn, make):
    x = make().requires_grad_(True)
    assert gradcheck(fn, (x,))


def test_rodrigues_gradient_is_finite_at_the_rest_pose():
    r = torch.zeros(3, 3, dtype=torch.float32, requires_grad=True)
    G.axis_angle_to_matrix(r).sum().backward()
    assert torch.isfinite(r.grad).all()


def test_vertex_normals_gradient():
    verts, faces = _mesh(V=12, F=16)
    v = torch.from_numpy(verts)[None].requires_grad_(True)
    assert gradcheck(lambda x: G.vertex_normals(x, torch.from_numpy(faces))[:, :-1], (v,))  # the unused last vertex has no direction
