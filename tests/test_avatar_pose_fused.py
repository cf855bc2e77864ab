"""The fused forward-only posing (avatar3d.avatar.binding.pose_on_mesh, csrc/gs_pose_cpu.cpp) is the torch
posing (triangle_frames + pose_gaussians) up to float rounding, and steps aside whenever gradients are needed."""

from __future__ import annotations

import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.binding import pose_gaussians, pose_on_mesh, triangle_frames
from avatar3d.render.gaussians import cpu_extension


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _scene(B: int = 2, F: int = 300, N: int = 700, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    V = 3 * F
    verts = torch.randn(B, V, 3, generator=g, dtype=torch.float64) * 0.05
    faces = torch.randperm(V, generator=g).reshape(F, 3)
    verts[:, faces[0, 2]] = verts[:, faces[0, 1]]  # one degenerate (zero-area) triangle
    parent = torch.randint(0, F, (N,), generator=g)
    parent[:3] = 0
    offset = torch.randn(B, N, 3, generator=g, dtype=torch.float64) * 0.4
    rot = torch.randn(N, 4, generator=g, dtype=torch.float64)
    log_scale = torch.randn(N, 3, generator=g, dtype=torch.float64) * 0.3 - 1
    return verts, faces, parent, offset, rot, log_scale


def _need_ext():
    if cpu_extension() is None:
        pytest.skip("the CPU Gaussian extension is unavailable here")


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_fused_posing_matches_the_torch_posing(dtype, atol):
    _need_ext()
    verts, faces, parent, offset, rot, log_scale = (t.to(dtype) if t.is_floating_point() else t for t in _scene())
    # the random frames take every branch of Shepperd's method (the fused kernel has its own copy of it)
    d = torch.diagonal(triangle_frames(verts, faces).rotation, dim1=-2, dim2=-1)  # (B, F, 3)
    four = torch.stack([d.sum(-1), d[..., 0] - d[..., 1] - d[..., 2], d[..., 1] - d[..., 0] - d[..., 2],
                        d[..., 2] - d[..., 0] - d[..., 1]], -1)  # 4 w^2 - 1, 4 x^2 - 1, ...
    assert set(four.argmax(-1).flatten().tolist()) == {0, 1, 2, 3}
    g = torch.Generator().manual_seed(5)
    blend = (torch.randn(len(parent), 4, 3, generator=g) * 0.2).to(dtype)  # (N, K, 3) offset blendshapes
    drive = torch.randn(len(verts), 4, generator=g).to(dtype)  # (B, K)
    cases = [(offset, offset, ()), (offset[0], offset[0], ()),  # per-frame and shared offsets
             (offset[0] + torch.einsum("nek,be->bnk", blend, drive), offset[0], (blend, drive))]  # and blendshapes
    for off, base, extra in cases:
        want = pose_gaussians(triangle_frames(verts, faces), parent, off, rot, log_scale)
        with torch.no_grad():
            got = pose_on_mesh(verts, faces, parent, base, rot, log_scale, *extra)
        sound = parent != 0  # a degenerate triangle's frame is arbitrary (but finite) in both
        for w, g in zip(want, got):
            assert g.shape == w.shape and g.dtype == dtype
            assert torch.isfinite(g).all()
            assert torch.allclose(g[:, sound], w[:, sound], rtol=0, atol=atol)
        assert torch.allclose(got.quats.norm(dim=-1), torch.ones((), dtype=dtype), atol=atol)


def test_posing_with_gradients_uses_the_differentiable_path():
    verts, faces, parent, offset, rot, log_scale = _scene(B=1, F=20, N=40, seed=1)
    offset = offset.clone().requires_grad_()
    g = pose_on_mesh(verts, faces, parent, offset, rot, log_scale)
    assert g.means.grad_fn is not None
    g.means.sum().backward()
    assert offset.grad is not None and torch.isfinite(offset.grad).all()
    # the same call without gradients gives the same Gaussians
    with torch.no_grad():
        h = pose_on_mesh(verts, faces, parent, offset, rot, log_scale)
    assert h.means.grad_fn is None
    sound = parent != 0  # (the degenerate triangle's frame is arbitrary)
    assert torch.allclose(h.means[:, sound], g.means.detach()[:, sound], rtol=0, atol=1e-12)
