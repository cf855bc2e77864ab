"""Gaussians bound to triangle frames (avatar3d.avatar.binding): they follow the mesh rigidly and in scale."""

from __future__ import annotations

import math

import torch

from avatar3d.avatar.binding import bind_points, pose_gaussians, quaternion_multiply, triangle_frames
from avatar3d.geometry import axis_angle_to_matrix, quaternion_to_matrix


def _mesh_and_gaussians(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(12, 3, generator=g, dtype=torch.float64) * 0.05
    faces = torch.randint(0, 12, (20, 3), generator=g)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    N = 50
    parent = torch.randint(0, len(faces), (N,), generator=g)
    offset = torch.randn(N, 3, generator=g, dtype=torch.float64) * 0.3
    rot = torch.randn(N, 4, generator=g, dtype=torch.float64)
    log_scale = torch.randn(N, 3, generator=g, dtype=torch.float64) * 0.3 - 1
    return verts, faces, parent, offset, rot, log_scale


def test_frames_are_orthonormal_right_handed_with_the_normal_as_z():
    verts, faces, *_ = _mesh_and_gaussians()
    fr = triangle_frames(verts, faces)
    R = fr.rotation[0]
    assert torch.allclose(R.transpose(-1, -2) @ R, torch.eye(3, dtype=R.dtype).expand_as(R), atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(faces), dtype=R.dtype), atol=1e-12)
    tri = verts[faces]
    n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert torch.allclose(R[..., 2], n / n.norm(dim=-1, keepdim=True), atol=1e-12)
    assert torch.allclose(fr.centre[0], tri.mean(1))
    # the size: mean of the first edge and the height over it
    e0 = (tri[:, 1] - tri[:, 0]).norm(dim=-1)
    height = n.norm(dim=-1) / e0
    assert torch.allclose(fr.scale[0], 0.5 * (e0 + height))


def test_rigid_motion_of_the_mesh_moves_the_gaussians_rigidly():
    verts, faces, parent, offset, rot, log_scale = _mesh_and_gaussians()
    A = axis_angle_to_matrix(torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64))
    t = torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64)
    moved = verts @ A.T + t
    both = torch.stack([verts, moved])
    g = pose_gaussians(triangle_frames(both, faces), parent, offset, rot, log_scale)
    assert torch.allclose(g.means[1], g.means[0] @ A.T + t, atol=1e-12)
    assert torch.allclose(g.scales[1], g.scales[0], atol=1e-12)
    assert torch.allclose(quaternion_to_matrix(g.quats[1]), A @ quaternion_to_matrix(g.quats[0]), atol=1e-10)
    assert torch.allclose(g.quats.norm(dim=-1), torch.ones(2, len(parent), dtype=torch.float64))


def test_scaling_the_mesh_scales_means_and_scales():
    verts, faces, parent, offset, rot, log_scale = _mesh_and_gaussians(1)
    g = pose_gaussians(triangle_frames(torch.stack([verts, 2.5 * verts]), faces), parent, offset, rot, log_scale)
    assert torch.allclose(g.means[1], 2.5 * g.means[0], atol=1e-12)
    assert torch.allclose(g.scales[1], 2.5 * g.scales[0], atol=1e-12)
    assert torch.allclose(quaternion_to_matrix(g.quats[1]), quaternion_to_matrix(g.quats[0]), atol=1e-10)


def test_bind_points_inverts_posing_and_a_zero_offset_is_the_centroid():
    verts, faces, parent, _, rot, log_scale = _mesh_and_gaussians(2)
    fr = triangle_frames(verts, faces)
    pts = torch.randn(len(parent), 3, dtype=torch.float64) * 0.05
    off = bind_points(fr, parent, pts)
    assert torch.allclose(pose_gaussians(fr, parent, off, rot, log_scale).means[0], pts, atol=1e-12)
    g0 = pose_gaussians(fr, parent, torch.zeros_like(off), rot, log_scale)
    assert torch.allclose(g0.means[0], fr.centre[0, parent])
    # an identity local rotation is the frame's own rotation; unit log-scale 0 is the triangle's size
    ident = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(len(parent), 4)
    g1 = pose_gaussians(fr, parent, off, ident, torch.zeros_like(log_scale))
    assert torch.allclose(quaternion_to_matrix(g1.quats[0]), fr.rotation[0, parent], atol=1e-10)
    assert torch.allclose(g1.scales[0], fr.scale[0, parent, None].expand(-1, 3))


def test_a_point_on_the_triangle_follows_its_barycentric_coordinates_under_deformation():
    """Any deformation (not just rigid): a point bound in the plane stays at the same barycentrics."""
    verts, faces, *_ = _mesh_and_gaussians(3)
    parent = torch.arange(len(faces))
    bary = torch.softmax(torch.randn(len(faces), 3, dtype=torch.float64), -1)
    p0 = (verts[faces] * bary[..., None]).sum(1)
    off = bind_points(triangle_frames(verts, faces), parent, p0)
    # a similarity per triangle keeps barycentrics exactly; a general deformation does not (the frame is not affine),
    # so deform by a global similarity plus check the in-plane offset has no normal component
    assert torch.allclose(off[:, 2], torch.zeros(len(faces), dtype=torch.float64), atol=1e-10)
    A = 0.7 * axis_angle_to_matrix(torch.tensor([1.0, 0.2, -0.4], dtype=torch.float64))
    v2 = verts @ A.T
    p2 = pose_gaussians(triangle_frames(v2, faces), parent, off, torch.randn(len(faces), 4, dtype=torch.float64),
                        torch.zeros(len(faces), 3, dtype=torch.float64)).means[0]
    assert torch.allclose(p2, (v2[faces] * bary[..., None]).sum(1), atol=1e-12)


def test_quaternion_product_matches_matrix_product_and_gradients_are_finite():
    a, b = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    a, b = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    assert torch.allclose(quaternion_to_matrix(quaternion_multiply(a, b)), quaternion_to_matrix(a) @ quaternion_to_matrix(b), atol=1e-12)
    verts, faces, parent, offset, rot, log_scale = _mesh_and_gaussians(4)
    verts = verts.clone().requires_grad_()
    offset, rot, log_scale = (x.clone().requires_grad_() for x in (offset, rot, log_scale))
    g = pose_gaussians(triangle_frames(verts, faces), parent, offset, rot, log_scale)
    (g.means.sum() + g.quats[..., 1:].sum() + g.scales.sum()).backward()
    for x in (verts, offset, rot, log_scale):
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert math.isfinite(float(verts.grad.abs().sum())) and float(verts.grad.abs().sum()) > 0
