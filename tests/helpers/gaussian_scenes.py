"""Dense Gaussian scenes for the CPU kernels' fast paths, and a comparison against the PyTorch reference
(shared by test_gaussian_raster_simd.py and the child processes it starts)."""

from __future__ import annotations

import torch

from avatar3d.render.gaussians import rasterize_gaussians


def shell_scene(N: int, W: int, H: int, opacity=(0.9, 0.99), thin: bool = False, seed: int = 0):
    """A head-like shell of Gaussians 0.5 m in front of an OpenCV camera (dense: pixels saturate)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(N, 3, generator=g), dim=-1)
    spacing = (4 * torch.pi * 0.12 ** 2 / N) ** 0.5
    scales = spacing * (0.6 + torch.rand(N, 3, generator=g))
    if thin:  # needles: one long axis, two tiny ones, random orientation
        scales = scales * torch.tensor([4.0, 0.08, 0.08])
    lo, hi = opacity
    vm = torch.eye(4)[None].clone()
    vm[0, 2, 3] = 0.5
    f = 1.1 * max(W, H)
    return dict(means=d * 0.12, quats=torch.randn(N, 4, generator=g), scales=scales,
                opacities=lo + (hi - lo) * torch.rand(N, generator=g), features=torch.rand(N, 3, generator=g),
                viewmats=vm, Ks=torch.tensor([[[f, 0, W / 2 + 0.3], [0, f, H / 2 - 0.7], [0, 0, 1]]]), width=W, height=H)


def outputs_and_grads(scene, backend):
    leaves = {k: scene[k].clone().requires_grad_() for k in ("means", "quats", "scales", "opacities", "features")}
    img, alpha, depth, _, _ = rasterize_gaussians(**{**scene, **leaves}, backend=backend)
    g = torch.Generator().manual_seed(7)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in (img, alpha, depth))
    loss.backward()
    return [img.detach(), alpha.detach(), depth.detach()], {k: v.grad for k, v in leaves.items()}


def assert_close_to_reference(scene):
    out_c, gr_c = outputs_and_grads(scene, "cpu")
    out_r, gr_r = outputs_and_grads(scene, "torch")
    for a, b, name in zip(out_c, out_r, ["images", "alphas", "depths"]):
        tol = 1e-4 * max(1.0, b.abs().max().item())
        assert (a - b).abs().max().item() < tol, name
    for k in gr_r:
        rel = ((gr_c[k] - gr_r[k]).norm() / gr_r[k].norm().clamp_min(1e-12)).item()
        assert torch.isfinite(gr_c[k]).all() and rel < 1e-3, f"{k}: relative gradient error {rel:.2e}"
    return out_r
