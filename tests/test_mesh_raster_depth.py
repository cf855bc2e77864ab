"""Geometry checks: depth against an independent ray caster, camera conventions (row 0 = top), pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.render import camera as cam
from avatar3d.render import mesh as M
from avatar3d.render.preview import framing_camera, render_mesh, save_image

NEAR, FAR = 0.05, 20.0


def ndc_to_camera_z(d: torch.Tensor) -> torch.Tensor:
    """Invert the OpenGL depth mapping of camera.projection_matrix: z/w in [-1,1] -> camera z (metres)."""
    return 2 * FAR * NEAR / ((FAR + NEAR) - d * (FAR - NEAR))


def raycast_depth(verts: np.ndarray, faces: np.ndarray, K: torch.Tensor, viewmat: torch.Tensor, W: int, H: int) -> np.ndarray:
    """Camera-space z of the first hit through every pixel centre, inf on a miss (Open3D, else trimesh)."""
    Kinv = torch.linalg.inv(K.double())
    j, i = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3)
    d_cam = pix @ Kinv.numpy().T  # z component 1: the hit distance t is the camera z
    R = viewmat[:3, :3].double().numpy()
    tvec = viewmat[:3, 3].double().numpy()
    origin = -R.T @ tvec
    d_world = d_cam @ R  # R^T d for each row
    try:
        import open3d as o3d

        scene = o3d.t.geometry.RaycastingScene()
        mesh = o3d.t.geometry.TriangleMesh()
        mesh.vertex.positions = o3d.core.Tensor(verts.astype(np.float32))
        mesh.triangle.indices = o3d.core.Tensor(faces.astype(np.int32))
        scene.add_triangles(mesh)
        rays = np.concatenate([np.broadcast_to(origin, d_world.shape), d_world], 1).astype(np.float32)
        t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    except ImportError:  # pragma: no cover - open3d is in the venv; trimesh is the fallback
        import trimesh

        tm = trimesh.Trimesh(verts, faces, process=False)
        loc, idx_ray, _ = tm.ray.intersects_location(np.broadcast_to(origin, d_world.shape), d_world, multiple_hits=False)
        t = np.full(len(d_world), np.inf)
        t[idx_ray] = ((loc - origin) @ R[2])  # camera z of the hit
    return t.reshape(H, W)


def test_head_depth_matches_raycast():
    from avatar3d.models import load_head_model

    head = load_head_model("builtin")
    v = head().vertices.detach()[0]
    W, H = 80, 64
    K, vm = framing_camera(v, W, H, direction=(0.5, 0.3, 1.0))
    pos = cam.world_to_clip(v, K, vm, W, H, NEAR, FAR)
    rast, _ = M.rasterize(pos, head.faces.to(torch.int32), (H, W))
    ours = torch.where(rast[0, ..., 3] > 0, ndc_to_camera_z(rast[0, ..., 2].double()), torch.tensor(float("inf"), dtype=torch.float64)).numpy()
    ref = raycast_depth(v.numpy(), head.faces.numpy(), K, vm, W, H)
    hit_o, hit_r = np.isfinite(ours), np.isfinite(ref)
    assert hit_r.mean() > 0.1, "the head should fill a good part of the frame"
    # coverage differs only where a pixel centre grazes the silhouette
    assert (hit_o != hit_r).mean() < 0.01
    both = hit_o & hit_r
    err = np.abs(ours[both] - ref[both])
    # float32 clip-space depth: sub-micrometre typically; occasional pixels at depth discontinuities
    assert np.median(err) < 1e-5
    assert np.quantile(err, 0.99) < 2e-3


def test_triangle_crossing_eye_plane_matches_raycast():
    """A floor extending behind the camera: homogeneous rasterization needs no clipping to get it right."""
    verts = np.array([[-5, -0.5, -5], [5, -0.5, -5], [5, -0.5, 5], [-5, -0.5, 5]], dtype=np.float64)  # y = -0.5 plane
    faces = np.array([[0, 2, 1], [0, 3, 2]])
    W, H = 40, 30
    K = cam.intrinsics_from_fov(W, H, 60.0)
    vm = cam.look_at((0.0, 0.0, 0.0), (0.0, -0.2, -1.0))
    pos = cam.world_to_clip(torch.tensor(verts, dtype=torch.float32), K, vm, W, H, NEAR, FAR)
    assert (pos[0, :, 3] < 0).any() and (pos[0, :, 3] > 0).any(), "the floor must cross the eye plane"
    for be in ("auto", "reference"):
        rast, _ = M.rasterize(pos, torch.tensor(faces, dtype=torch.int32), (H, W), backend=be)
        ours = torch.where(rast[0, ..., 3] > 0, ndc_to_camera_z(rast[0, ..., 2].double()), torch.tensor(float("inf"), dtype=torch.float64)).numpy()
        ref = raycast_depth(verts, faces, K, vm, W, H)
        ref = np.where(ref <= FAR, ref, np.inf)  # the far plane clips the rasterizer, not the ray caster
        hit_o, hit_r = np.isfinite(ours), np.isfinite(ref)
        assert 0.2 < hit_r.mean() < 0.9, "floor in the lower part of the view only"
        assert (hit_o != hit_r).mean() < 0.02
        both = hit_o & hit_r
        assert np.quantile(np.abs(ours[both] - ref[both]) / ref[both], 0.99) < 1e-3
        # the floor is below the horizon: the bottom rows (larger row index) are covered, top rows not
        assert hit_o[-1].all() and not hit_o[0].any()


def test_row_zero_is_top_and_projection_matches_K():
    """A square around the back-projected centre of pixel (row 5, col 20) covers exactly the 5x5 block there."""
    W, H = 32, 24
    K = torch.tensor([[30.0, 0.0, 14.0], [0.0, 28.0, 11.0], [0.0, 0.0, 1.0]])
    vm = cam.look_at((0.1, 0.2, -1.0), (0.1, 0.2, 1.0), up=(0.0, 1.0, 0.0))  # OpenCV camera looking down +Z
    z = 2.0

    def back(u: float, v: float) -> torch.Tensor:  # continuous pixel coords -> world point at depth z
        cx = (u - 14.0) / 30.0 * z
        cy = (v - 11.0) / 28.0 * z
        pc = torch.tensor([cx, cy, z, 1.0])
        return (torch.linalg.inv(vm) @ pc)[:3]

    u0, v0, r = 20.5, 5.5, 2.2  # pixel (row 5, col 20) centre; half-size 2.2 px covers offsets -2..2
    quad = torch.stack([back(u0 - r, v0 - r), back(u0 + r, v0 - r), back(u0 + r, v0 + r), back(u0 - r, v0 + r)])
    pos = cam.world_to_clip(quad, K, vm, W, H, NEAR, FAR)
    rast, _ = M.rasterize(pos, torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32), (H, W))
    cov = rast[0, ..., 3] > 0
    expect = torch.zeros(H, W, dtype=torch.bool)
    expect[3:8, 18:23] = True
    assert torch.equal(cov, expect)
    # the square lies ABOVE the camera in world +Y (camera at y = 0.2) and shows in the top rows
    assert float(quad[:, 1].mean()) > 0.5


def test_render_head_picture(out_dir):
    """Render the builtin head front / side / top: upright (chin at the bottom), lit, outward normals."""
    from avatar3d.models import load_head_model

    head = load_head_model("builtin")
    v = head().vertices.detach()
    imgs = []
    for d in ((0.0, 0.0, 1.0), (1.0, 0.0, 0.2)):
        K, vm = framing_camera(v[0], 96, 96, direction=d)
        img, alpha = render_mesh(v, head.faces, K, vm, 96, 96, return_alpha=True)
        assert img.shape == (1, 96, 96, 3) and torch.isfinite(img).all()
        imgs.append(img[0])
        # upright: the head top (+Y, max y vertex) projects above the neck (min y vertex)
        top = cam.world_to_clip(v[0, v[0, :, 1].argmax()][None], K, vm, 96, 96)[0, 0]
        low = cam.world_to_clip(v[0, v[0, :, 1].argmin()][None], K, vm, 96, 96)[0, 0]
        assert top[1] / top[3] < low[1] / low[3]
        rows = torch.nonzero(alpha[0, ..., 0] > 0.5)[:, 0]
        assert rows.min() < 30 and rows.max() > 66
    # outward normals + light from above: upper surfaces brighter than the shadowed underside
    front = imgs[0]
    cov = front.sum(-1) < 2.9
    assert cov.float().mean() > 0.2
    save_image(torch.cat(imgs, 1), out_dir / "mesh_head_front_side.png")
    # lighting from (0.3, -0.5, -1) in camera space: an inside-out mesh would be nearly ambient-only
    lit = front[cov].mean()
    assert lit > 0.45, f"mean lit brightness {lit:.2f}: normals inside out?"


def test_textured_render_uses_texture():
    from avatar3d.models import load_head_model

    head = load_head_model("builtin")
    v = head().vertices.detach()
    K, vm = framing_camera(v[0], 64, 64)
    tex = torch.zeros(32, 32, 3)
    tex[..., 0] = 1.0  # pure red albedo
    img = render_mesh(v, head.faces, K, vm, 64, 64, uvs=head.uvs, uv_faces=head.uv_faces, texture_image=tex, background=0.0)
    cov = img.sum(-1) > 0.05
    assert cov.float().mean() > 0.2
    assert img[..., 1][cov].max() < 1e-5 and img[..., 0][cov].mean() > 0.3


@pytest.mark.parametrize("angle", [0.1, 0.785])
def test_antialias_approaches_true_coverage(angle):
    """Antialiased coverage of a rotated square is closer to the exact (8x supersampled) coverage than the hard mask."""
    import math

    c, s = math.cos(angle), math.sin(angle)
    pts = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) @ torch.tensor([[c, s], [-s, c]]) + torch.tensor([0.013, 0.021])
    pos = torch.cat([pts, torch.zeros(4, 1), torch.ones(4, 1)], 1)[None]
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    H = W = 48
    rast, _ = M.rasterize(pos, tri, (H, W))
    hard = (rast[..., 3:4] > 0).float()
    aa = M.antialias(hard, rast, pos, tri)
    big, _ = M.rasterize(pos, tri, (8 * H, 8 * W))
    truth = torch.nn.functional.avg_pool2d((big[..., 3] > 0).float()[:, None], 8)[:, 0, ..., None]
    err_hard = (hard - truth).abs().mean()
    err_aa = (aa - truth).abs().mean()
    assert err_aa < 0.3 * err_hard, f"antialias error {err_aa:.4f} vs hard {err_hard:.4f}"
    assert abs(float(aa.sum() - truth.sum())) < 0.005 * float(truth.sum())
