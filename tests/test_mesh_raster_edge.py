"""Edge cases (empty, degenerate, off-screen, behind-camera, NaN, 1x1, batches, ranges), bad input, backends."""

from __future__ import annotations

import pytest
import torch

from avatar3d.errors import BadInputError
from avatar3d.render import mesh as M
from avatar3d.render.backends import mesh_backend_status, mesh_cpu_extension

BACKENDS = ["reference"] + (["cpu"] if mesh_cpu_extension() is not None else [])


def full(backend, pos, tri, H, W):
    """Whole pipeline with gradients; returns (image, pos.grad)."""
    pos = pos.clone().requires_grad_()
    rast, db = M.rasterize(pos, tri, (H, W), backend=backend)
    attr = pos[..., :3] if pos.ndim == 3 else pos[None, :, :3]
    col, _ = M.interpolate(attr, rast, tri, backend=backend)
    img = M.antialias(col.contiguous(), rast, pos, tri, backend=backend)
    img.sum().backward()
    return rast, db, img, pos.grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_offscreen_behind_and_nan(backend):
    pos = torch.tensor([[
        [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0],      # a point (zero area)
        [-0.5, -0.5, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0],     # collinear
        [5.0, 5.0, 0.0, 1.0], [7.0, 5.0, 0.0, 1.0], [6.0, 8.0, 0.0, 1.0],       # off-screen
        [-0.5, -0.5, 0.0, -1.0], [0.5, -0.5, 0.0, -1.0], [0.0, 0.5, 0.0, -1.0], # behind the camera
        [-0.5, -0.5, 5.0, 1.0], [0.5, -0.5, 5.0, 1.0], [0.0, 0.5, 5.0, 1.0],    # beyond the far plane
        [float("nan"), 0.0, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0],  # NaN vertex
        [0.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0],       # w = 0 everywhere
    ]])
    tri = torch.arange(pos.shape[1], dtype=torch.int32).view(-1, 3)
    rast, db, img, g = full(backend, pos, tri, 17, 23)
    assert (rast[..., 3] == 0).all(), "none of these triangles is visible"
    for t in (rast, db, img, g):
        assert torch.isfinite(t).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (9, 1), (5, 64)])
def test_tiny_and_non_square_images(backend, size):
    pos = torch.tensor([[[-0.9, -0.9, 0.1, 1.0], [0.9, -0.8, 0.2, 1.0], [0.0, 0.9, 0.3, 1.0]]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, db, img, g = full(backend, pos, tri, *size)
    assert rast.shape == (1, *size, 4) and img.shape == (1, *size, 3)
    assert (rast[..., 3] == 1).any(), "the big triangle covers the image centre"
    assert torch.isfinite(g).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_scene_and_batch_of_views(backend):
    pos = torch.rand(3, 5, 4)
    pos[..., 3] = 1
    empty = torch.zeros(0, 3, dtype=torch.int32)
    rast, db, img, g = full(backend, pos, empty, 8, 9)
    assert rast.shape == (3, 8, 9, 4) and (rast == 0).all() and (img == 0).all() and (g == 0).all()
    # one triangle, three views: each view sees it shifted
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    base = torch.tensor([[-0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 1.0]])
    pos = torch.stack([base + torch.tensor([dx, 0.0, 0.0, 0.0]) for dx in (-0.4, 0.0, 0.4)])
    rast, _ = M.rasterize(pos, tri, (16, 16), backend=backend)
    cx = [float(torch.nonzero(rast[b, ..., 3] > 0)[:, 1].float().mean()) for b in range(3)]
    assert cx[0] < cx[1] < cx[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_mode_equals_separate_draws(backend):
    g = torch.Generator().manual_seed(7)
    pos = torch.rand(30, 4, generator=g) * 1.6 - 0.8
    pos[:, 3] = 1.0
    tri = torch.arange(30, dtype=torch.int32).view(10, 3)
    ranges = torch.tensor([[0, 4], [4, 6], [2, 3]], dtype=torch.int32)
    rast, _ = M.rasterize(pos, tri, (20, 24), ranges=ranges, backend=backend)
    assert rast.shape[0] == 3
    for b, (f0, n) in enumerate(ranges.tolist()):
        sub, _ = M.rasterize(pos[None], tri[f0:f0 + n], (20, 24), backend=backend)
        ids = torch.where(sub[0, ..., 3] > 0, sub[0, ..., 3] + f0, sub[0, ..., 3])
        assert torch.equal(rast[b, ..., 3], ids)
        assert torch.allclose(rast[b, ..., :3], sub[0, ..., :3])


def test_shared_edge_pixels_belong_to_exactly_one_triangle():
    """A quad split along its diagonal through pixel centres: no gaps, no double coverage, same in both backends."""
    pos = torch.tensor([[[-1.0, -1.0, 0.0, 1.0], [1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0], [-1.0, 1.0, 0.0, 1.0]]])
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]], dtype=torch.int32)
    outs = [M.rasterize(pos, tri, (8, 8), backend=be)[0] for be in BACKENDS]
    for r in outs:
        assert (r[..., 3] > 0).all(), "the quad covers every pixel: no cracks on the diagonal"
        diag = r[0, torch.arange(8), torch.arange(8), 3]
        assert len(set(diag.tolist())) == 1, "diagonal pixels follow one consistent tie rule"
    for r in outs[1:]:
        assert torch.equal(r, outs[0])


def test_bad_inputs_raise_one_clear_error():
    pos = torch.zeros(1, 3, 4)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    with pytest.raises(BadInputError, match="pos must be"):
        M.rasterize(torch.zeros(3, 3), tri, (4, 4))
    with pytest.raises(BadInputError, match="integer"):
        M.rasterize(pos, tri.float(), (4, 4))
    with pytest.raises(BadInputError, match="outside"):
        M.rasterize(pos, tri + 5, (4, 4))
    with pytest.raises(BadInputError, match="resolution"):
        M.rasterize(pos, tri, (0, 4))
    with pytest.raises(BadInputError, match="unknown mesh backend"):
        M.rasterize(pos, tri, (4, 4), backend="opengl")
    with pytest.raises(BadInputError, match="CUDA tensors"):
        M.rasterize(pos, tri, (4, 4), backend="cuda")
    with pytest.raises(BadInputError, match="boundary_mode"):
        M.texture(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 2), boundary_mode="mirror")
    with pytest.raises(BadInputError, match="needs uv_da"):
        M.texture(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 2), filter_mode="linear-mipmap-linear")
    with pytest.raises(BadInputError, match="rast must be"):
        M.interpolate(torch.zeros(3, 2), torch.zeros(4, 4, 4), tri)


def test_backend_status_lists_every_backend():
    rows = mesh_backend_status()
    names = [r[0] for r in rows]
    assert names == ["mesh-cpu", "mesh-cuda", "mesh-nvdiffrast", "mesh-reference"]
    assert all(isinstance(r[1], bool) and isinstance(r[2], str) and r[2] for r in rows)
    assert dict((r[0], r[1]) for r in rows)["mesh-reference"] is True


def test_triangle_adjacency():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3], [3, 4, 2]], dtype=torch.int32)
    adj = M.triangle_adjacency(tri)
    # edge (0,1)->none, (1,2)->tri 1, (2,0)->none; tri 1: (2,1)->0, (1,3)->none, (3,2)->2
    assert adj.tolist() == [[-1, 1, -1], [0, -1, 2], [-1, -1, 1]]


def test_without_extension_auto_falls_back_to_reference():
    """AVATAR3D_NO_EXT=1 (what a failed build looks like): import works, 'auto' renders with the reference."""
    import os
    import subprocess
    import sys

    code = (
        "import warnings, torch\n"
        "from avatar3d.render import mesh as M, mesh_backend_status\n"
        "pos = torch.tensor([[[-0.9, -0.9, 0.0, 1.0], [0.9, -0.9, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]]])\n"
        "rast, _ = M.rasterize(pos, torch.tensor([[0, 1, 2]], dtype=torch.int32), (8, 8))\n"
        "assert (rast[..., 3] == 1).sum() > 10\n"
        "rows = dict((r[0], r) for r in mesh_backend_status())\n"
        "assert rows['mesh-cpu'][1] is False and 'AVATAR3D_NO_EXT' in rows['mesh-cpu'][2], rows\n"
        "print('ok')\n"
    )
    env = dict(os.environ, AVATAR3D_NO_EXT="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rast_db_matches_finite_differences(backend):
    """(du/dX, du/dY, dv/dX, dv/dY) agree with central differences of the barycentrics inside a perspective triangle."""
    pos = torch.tensor([[[-2.0, -2.0, 0.5, 2.0], [3.0, -1.0, 0.2, 3.0], [-0.5, 1.8, 0.3, 1.0]]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast, db = M.rasterize(pos, tri, (32, 40), backend=backend)
    inside = rast[0, ..., 3] > 0
    core = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1] & inside[1:-1, :-2] & inside[1:-1, 2:]
    assert core.sum() > 100
    u, v = rast[0, ..., 0], rast[0, ..., 1]
    for k, f in enumerate((u, v)):
        fdx = (f[1:-1, 2:] - f[1:-1, :-2]) / 2
        fdy = (f[2:, 1:-1] - f[:-2, 1:-1]) / 2
        assert torch.allclose(db[0, 1:-1, 1:-1, 2 * k][core], fdx[core], atol=2e-4)
        assert torch.allclose(db[0, 1:-1, 1:-1, 2 * k + 1][core], fdy[core], atol=2e-4)
