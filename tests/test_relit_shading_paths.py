"""The faster relit shading gives the colours of the slower code it replaced (render/brdf.py ``_sample_stack``: one
trilinear lookup of the prefiltered stack instead of a bilinear lookup per level; avatar/relight.py
``PBRAppearance.albedo``: the expression albedo as a batched product instead of ``einsum``).

The references are the replaced code, kept here; the rasterizer takes the colours as they are, so equal colours
are an unchanged image.
"""

from __future__ import annotations

import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar import relight
from avatar3d.avatar.appearance import ShadingInputs
from avatar3d.avatar.relight import PBRAppearance
from avatar3d.render import brdf
from avatar3d.render.lighting import EnvironmentMap


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _blend_levels(maps: torch.Tensor, level: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """The replaced lookup: a bilinear lookup of each level, weighted linearly between the two around ``level``."""
    out = uv.new_zeros(len(uv), 3)
    for k, img in enumerate(maps):
        w = (1 - (level - k).abs()).clamp(min=0)
        sel = torch.nonzero(w.detach() > 0)[:, 0]
        if len(sel):
            out = out.index_add(0, sel, w[sel, None] * brdf._sample_uv(img.to(uv), uv[sel]))
    return out


def test_stack_lookup_equals_the_per_level_blend_and_its_gradients():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(9, 16, 32, 3, generator=g, dtype=torch.float64).requires_grad_()
    uv = torch.rand(2000, 2, generator=g, dtype=torch.float64)
    uv[:10, 0] = torch.tensor([0.0, 1.0, 0.5 / 32, 1 - 0.5 / 32, 0.001, 0.999, 0.25, 0.5, 0.75, 0.3])  # the wrap and texel centres
    uv[:4, 1] = torch.tensor([0.0, 1.0, 0.01, 0.99])  # the poles
    level = (torch.rand(2000, generator=g, dtype=torch.float64) * 8)
    level[:5] = torch.tensor([0.0, 8.0, 3.0, 0.5, 7.999])  # the ends and a level exactly
    level.requires_grad_()
    fast, slow = brdf._sample_stack(maps, level, uv), _blend_levels(maps, level, uv)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-10)
    w = torch.rand_like(fast)
    gm_fast, gl_fast = torch.autograd.grad((fast * w).sum(), (maps, level))
    gm_slow, gl_slow = torch.autograd.grad((slow * w).sum(), (maps, level))
    torch.testing.assert_close(gm_fast, gm_slow, rtol=0, atol=1e-10)
    inner = (level.detach() - level.detach().round()).abs() > 1e-6  # at a level exactly the two pick different one-sided slopes
    torch.testing.assert_close(gl_fast[inner], gl_slow[inner], rtol=0, atol=1e-9)


def test_relit_colours_are_unchanged(monkeypatch):
    """PBRAppearance colours of random Gaussians under a prefiltered, turned studio map: the new code against the
    replaced lookup and ``einsum`` (float32: within 1e-6 of each other)."""
    g = torch.Generator().manual_seed(2)
    N, K = 3000, 6
    ap = PBRAppearance(shadows=False)
    ap.set_environment(EnvironmentMap.generated("studio", 64))
    ap.relit = ap.relit.rotated(33.3)
    params = ap.fields(torch.rand(N, 3, generator=g), K)
    params["expr_albedo"] = 0.05 * torch.randn(N, K, 3, generator=g)
    params["roughness"] = torch.randn(N, 1, generator=g)
    params["rotation"] = torch.nn.functional.normalize(torch.randn(N, 4, generator=g), dim=-1)
    expression = torch.randn(2, K, generator=g)
    quats = torch.nn.functional.normalize(torch.randn(2, N, 4, generator=g), dim=-1)
    means = torch.randn(2, N, 3, generator=g) * 0.1
    view = torch.nn.functional.normalize(means - torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    scales = torch.rand(2, N, 3, generator=g).expand(2, N, 3) * 0.01

    def colours() -> torch.Tensor:
        inputs = ShadingInputs(view, means, quats, scales, params["rotation"], torch.zeros(2, 3, 3), torch.zeros(N, dtype=torch.long))
        return ap.colours(params, expression, inputs)

    fast = colours()
    monkeypatch.setattr(brdf, "_sample_stack", _blend_levels)
    monkeypatch.setattr(relight.PBRAppearance, "albedo", lambda self, p, e=None: (
        torch.sigmoid(p["albedo"]) if e is None else
        (torch.sigmoid(p["albedo"])[None] + torch.einsum("nkc,bk->bnc", p["expr_albedo"], e)).clamp(0, 1)))
    slow = colours()
    assert fast.shape == (2, N, 3) and fast.std() > 0.05  # lit, varied colours
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)
