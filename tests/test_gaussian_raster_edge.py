"""Gaussian rasterizer edge cases (empty, behind camera, huge, 1x1, batches), backend choice, bad input."""

from __future__ import annotations

import pytest
import torch

from avatar3d.render import gaussians as G
from avatar3d.render.gaussians import gaussian_backend_status, rasterize_gaussians

BACKENDS = ["cpu", "torch"]


def scene(N=50, C=1, W=32, H=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    vm = torch.eye(4).repeat(C, 1, 1)
    vm[:, 2, 3] = 2.0
    return dict(
        means=torch.randn(N, 3, generator=g) * 0.3, quats=torch.randn(N, 4, generator=g),
        scales=torch.rand(N, 3, generator=g) * 0.05 + 0.01, opacities=torch.rand(N, generator=g),
        features=torch.rand(N, 3, generator=g), viewmats=vm,
        Ks=torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]]).repeat(C, 1, 1), width=W, height=H)


def run_all(sc, backend, **kw):
    """Render and backprop; assert every output and gradient is finite. Returns outputs and grads."""
    leaves = {k: sc[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "features")}
    img, alpha, depth, nrm, meta = rasterize_gaussians(**{**sc, **leaves}, backend=backend, **kw)
    C, H, W = sc["viewmats"].shape[0], sc["height"], sc["width"]
    assert img.shape == (C, H, W, sc["features"].shape[-1]) and alpha.shape == (C, H, W, 1) and depth.shape == (C, H, W, 1)
    for t in (img, alpha, depth):
        assert torch.isfinite(t).all()
    (img.sum() + alpha.sum() + depth.sum()).backward()
    for k, v in leaves.items():
        assert v.grad is not None and torch.isfinite(v.grad).all(), k
    return img.detach(), alpha.detach(), depth.detach(), meta, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_scene(backend):
    sc = scene(N=0)
    img, alpha, depth, meta, _ = run_all(sc, backend, backgrounds=torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(img, torch.tensor([0.2, 0.4, 0.6]).expand_as(img))
    assert alpha.abs().max() == 0 and depth.abs().max() == 0
    assert meta["radii"].shape == (1, 0, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_behind_camera_is_culled(backend):
    sc = scene(N=30)
    sc["means"][:, 2] = -2.5  # all at camera z = -0.5
    img, alpha, _, meta, grads = run_all(sc, backend)
    assert (meta["radii"] == 0).all() and alpha.abs().max() == 0
    assert all(g.abs().max() == 0 for g in grads.values())
    sc["means"][:, 2] = -2.0  # exactly at the camera centre: z = 0 must not divide by zero
    run_all(sc, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_and_degenerate_gaussians(backend):
    sc = scene(N=6)
    sc["scales"][0] = 50.0  # covers the whole view and far beyond
    sc["scales"][1] = 0.0  # zero-size: only the 0.3 px low-pass dilation remains
    sc["quats"][2] = 0.0  # unnormalisable quaternion
    sc["means"][3] = torch.tensor([1e4, 0.0, 0.0])  # far off-screen
    img, alpha, _, meta, _ = run_all(sc, backend)
    assert (meta["radii"][0, 0] > 100).all() and alpha.min() > 0  # the huge one covers every pixel
    assert (meta["radii"][0, 3] == 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("W,H", [(1, 1), (17, 3), (5, 40)])
def test_tiny_and_non_square_images(backend, W, H):
    sc = scene(N=40, W=W, H=H)
    sc["Ks"][:, 0, 0] = sc["Ks"][:, 1, 1] = 8.0
    run_all(sc, backend)


def test_batch_of_views_equals_single_views():
    sc = scene(N=80, C=3, W=40, H=30)
    sc["viewmats"][:, 0, 3] = torch.tensor([-0.3, 0.0, 0.3])
    sc["Ks"][1, 0, 0] = 45.0
    img, alpha, depth, _, _ = run_all(sc, "cpu")
    for c in range(3):
        one = dict(sc, viewmats=sc["viewmats"][c:c + 1], Ks=sc["Ks"][c:c + 1])
        i1, a1, d1, _, _ = run_all(one, "cpu")
        torch.testing.assert_close(i1[0], img[c], atol=1e-6, rtol=0)
        torch.testing.assert_close(d1[0], depth[c], atol=1e-5, rtol=0)
    assert not torch.allclose(img[0], img[2])  # the views do differ


def test_single_gaussian_depth_and_normals():
    """One Gaussian: expected depth is exactly its camera z; composited normal = alpha * normal."""
    sc = scene(N=1, W=20, H=20)
    sc["means"] = torch.tensor([[0.0, 0.0, 0.5]])  # camera z = 2.5
    sc["scales"] = torch.full((1, 3), 0.2)
    sc["opacities"] = torch.tensor([0.9])
    n = torch.tensor([[0.0, 0.6, 0.8]])
    img, alpha, depth, nrm, meta = rasterize_gaussians(**sc, normals=n, backend="cpu")
    hit = alpha[..., 0] > 0
    assert hit.sum() > 100
    torch.testing.assert_close(depth[..., 0][hit], torch.full_like(depth[..., 0][hit], 2.5))
    torch.testing.assert_close(nrm, alpha * n[0])
    _, _, acc, _, _ = rasterize_gaussians(**sc, depth_mode="accumulated", backend="cpu")
    torch.testing.assert_close(acc, alpha * 2.5)


def test_saturated_pixels_stop_compositing():
    """Many opaque layers: transmittance stops at 1e-4 like gsplat, alpha saturates, hidden layer ignored."""
    N = 12
    sc = scene(N=N, W=16, H=16)
    sc["means"] = torch.zeros(N, 3)
    sc["means"][:, 2] = torch.linspace(-1.0, 1.0, N)
    sc["scales"] = torch.full((N, 3), 1.0)
    sc["opacities"] = torch.full((N,), 0.9)
    sc["features"] = torch.zeros(N, 3)
    sc["features"][-1] = 1.0  # the farthest layer (camera z = 3) is white: fully hidden
    img, alpha, *_ = rasterize_gaussians(**sc, backend="cpu")
    ref, ralpha, *_ = rasterize_gaussians(**sc, backend="torch")
    assert img.abs().max() == 0 and ref.abs().max() == 0
    # a layer is composited only while the transmittance stays above 1e-4
    assert alpha.min() > 0.99 and alpha.max() < 1 - 1e-4 + 1e-6
    assert torch.allclose(alpha, ralpha)


def test_backend_choice(monkeypatch):
    sc = scene(N=10)
    assert rasterize_gaussians(**sc)[4]["backend"] == "cpu"  # auto on CPU tensors
    with pytest.raises(ValueError, match="backend"):
        rasterize_gaussians(**sc, backend="vulkan")
    with pytest.raises(ValueError, match="CUDA"):
        rasterize_gaussians(**sc, backend="cuda")
    if G._gsplat_rasterization() is None:
        with pytest.raises(ValueError, match="gsplat"):
            rasterize_gaussians(**sc, backend="gsplat")
    monkeypatch.setattr(G, "_cpu_ext", lambda: None)  # as after a failed build
    assert rasterize_gaussians(**sc)[4]["backend"] == "torch"
    with pytest.warns(RuntimeWarning, match="unavailable"):
        assert rasterize_gaussians(**sc, backend="cpu")[4]["backend"] == "torch"


def test_bad_input_messages():
    sc = scene(N=5)
    with pytest.raises(ValueError, match=r"quats must have shape \(5, 4\)"):
        rasterize_gaussians(**dict(sc, quats=torch.zeros(5, 3)))
    with pytest.raises(ValueError, match="features"):
        rasterize_gaussians(**dict(sc, features=torch.zeros(4, 3)))
    with pytest.raises(ValueError, match="Ks"):
        rasterize_gaussians(**dict(sc, Ks=torch.eye(3)))
    with pytest.raises(ValueError, match="width and height"):
        rasterize_gaussians(**dict(sc, width=0))
    with pytest.raises(ValueError, match="float32 or float64"):
        rasterize_gaussians(**{**sc, **{k: sc[k].half() for k in ("means", "quats", "scales")}})
    with pytest.raises(ValueError, match="backgrounds"):
        rasterize_gaussians(**sc, backgrounds=torch.zeros(2))


def test_backend_status_lines():
    st = gaussian_backend_status()
    assert set(st) == {"torch", "cpu", "cuda", "gsplat"}
    assert st["cpu"].startswith("ok")
