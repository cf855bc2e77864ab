"""avatar3d.render.brdf: the BRDF's pieces, the split-sum tables and lookups, gradients (no path tracer)."""

import numpy as np
import pytest
import torch

from avatar3d.render import brdf as B
from avatar3d.render import lighting as L
from avatar3d.render.shading import sh_irradiance as tracking_sh_irradiance


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _hemisphere(n: int = 200_000) -> tuple[torch.Tensor, float]:
    """Fibonacci directions of the upper (+Z) hemisphere and the solid angle each stands for."""
    d = torch.as_tensor(L.fibonacci_sphere(2 * n))
    return d[d[:, 2] > 0], 4 * np.pi / (2 * n)


def test_conversions():
    assert B.specular_to_f0(0.5) == pytest.approx(0.04)
    assert B.specular_to_f0(0.35) == pytest.approx(0.028)
    assert B.ior_to_f0(1.4) == pytest.approx(0.02778, abs=1e-5)
    assert B.f0_to_ior(B.ior_to_f0(1.4)) == pytest.approx(1.4)
    assert B.f0_to_specular(B.specular_to_f0(0.7)) == pytest.approx(0.7)
    assert B.roughness_to_alpha(torch.tensor(0.5)) == pytest.approx(0.25)


@pytest.mark.parametrize("roughness", [0.2, 0.5, 0.9])
def test_ggx_ndf_is_normalised(roughness):
    """integral D(h) (n.h) dh = 1 over the hemisphere."""
    h, dw = _hemisphere()
    a = B.roughness_to_alpha(torch.tensor(roughness, dtype=torch.float64))
    assert float((B.ggx_ndf(h[:, 2:], a) * h[:, 2:]).sum() * dw) == pytest.approx(1.0, rel=2e-3)


def test_brdf_is_reciprocal_and_loses_energy():
    g = torch.Generator().manual_seed(0)
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    v, l = (_unit(torch.randn(64, 3, generator=g, dtype=torch.float64).abs()) for _ in range(2))
    args = (torch.tensor([0.5, 0.4, 0.3], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64), torch.tensor([0.04], dtype=torch.float64))
    for a, b in zip(B.brdf(n, v, l, *args), B.brdf(n, l, v, *args)):
        torch.testing.assert_close(a, b)
    # Directional albedo of the specular lobe at f0 = 1 is at most 1 (single scattering loses energy).
    d, dw = _hemisphere(50_000)
    for rough in (0.1, 0.5, 1.0):
        v0 = _unit(torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64))
        _, s = B.brdf(n, v0, d, args[0], torch.tensor([rough], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        albedo = float((s[:, 0] * d[:, 2]).sum() * dw)
        assert 0.3 < albedo <= 1.0 + 1e-3, (rough, albedo)  # ~0.35 at alpha 1: GGX loses up to 2/3 to multiple scattering
    # Nothing below the horizon.
    fd, fs = B.brdf(n, v0, torch.tensor([0.0, 0.6, -0.8], dtype=torch.float64), *args)
    assert float(fd.abs().sum() + fs.abs().sum()) == 0


@pytest.mark.parametrize("roughness, nov", [(0.3, 0.9), (0.5, 0.5), (0.8, 0.2)])
def test_split_sum_lut_is_the_white_furnace(roughness, nov):
    """Under uniform unit radiance the specular is exactly f0 scale + bias: check both terms by quadrature."""
    d, dw = _hemisphere()
    n = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    v = torch.tensor([np.sqrt(1 - nov * nov), 0.0, nov], dtype=torch.float64)
    r = torch.tensor([roughness], dtype=torch.float64)
    alb = torch.zeros(3, dtype=torch.float64)
    lut = B.split_sum_lut(dtype=torch.float64)
    sb = B.lut_lookup(lut, r, torch.tensor([nov], dtype=torch.float64))
    for f0 in (0.0, 1.0):
        _, s = B.brdf(n, v, d, alb, r, torch.tensor([f0], dtype=torch.float64))
        furnace = float((s[:, 0] * d[:, 2]).sum() * dw)
        assert float(f0 * sb[0] + sb[1]) == pytest.approx(furnace, rel=0.03, abs=2e-3)


def test_sh_irradiance_bands_and_the_tracking_convention():
    env = L.EnvironmentMap.generated("sunset", 128)
    sh = torch.as_tensor(env.sh(bands=4))
    n = _unit(torch.randn(100, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    e3 = B.irradiance(n, sh, 3)
    torch.testing.assert_close(B.irradiance(n, sh, 4), e3)  # A_3 = 0
    # The tracking path's irradiance (constants SH_C to 6 digits) is the same function.
    torch.testing.assert_close(tracking_sh_irradiance(n[None], sh[:9])[0], e3, rtol=3e-6, atol=1e-6)
    torch.testing.assert_close(B.shade_diffuse(n, torch.ones(3, dtype=torch.float64), sh), e3 / np.pi)


def test_prefiltered_environment():
    const = L.EnvironmentMap(np.full((64, 128, 3), [0.5, 1.0, 2.0], np.float32))
    p = B.PrefilteredEnvironment.from_environment(const, levels=(0.0, 0.5, 1.0), width=32)
    torch.testing.assert_close(p.maps, torch.tensor([0.5, 1.0, 2.0]).expand_as(p.maps), rtol=1e-5, atol=1e-5)
    env = L.EnvironmentMap.generated("studio", 128)
    p = B.PrefilteredEnvironment.from_environment(env, levels=(0.0, 0.3, 1.0), width=64)
    d = _unit(torch.randn(500, 3, generator=torch.Generator().manual_seed(2)))
    # Level 0 is the (box-averaged) map; the lookup is EnvironmentMap.sample's bilinear one.
    level0 = L.EnvironmentMap(p.maps[0].numpy())
    torch.testing.assert_close(p.radiance(d, torch.zeros(500, 1)), torch.as_tensor(level0.sample(d.double().numpy())).float(),
                               rtol=1e-4, atol=1e-4)
    # Linear in roughness between levels, and energy kept by the filter (studio's mean radiance).
    mid = p.radiance(d, torch.full((500, 1), 0.15))
    torch.testing.assert_close(mid, 0.5 * (p.radiance(d, torch.zeros(500, 1)) + p.radiance(d, torch.full((500, 1), 0.3))))
    w = torch.as_tensor(L.EnvironmentMap(np.zeros((32, 64, 3), np.float32)).solid_angles()).float()
    means = [(m * w[..., None]).sum((0, 1)) / w.sum() for m in p.maps]
    for m in means[1:]:
        torch.testing.assert_close(m, means[0], rtol=0.03, atol=0)
    with pytest.raises(ValueError):
        B.PrefilteredEnvironment.from_environment(env, levels=(0.1, 0.5))


def test_shading_is_differentiable():
    env = L.EnvironmentMap.generated("studio", 64)
    p = B.PrefilteredEnvironment.from_environment(env, levels=(0.0, 0.25, 0.5, 1.0), width=32)
    lut = B.split_sum_lut(16, 256, dtype=torch.float64)
    sh = torch.as_tensor(env.sh())
    g = torch.Generator().manual_seed(3)
    n = _unit(torch.randn(20, 3, generator=g, dtype=torch.float64)).requires_grad_()
    v = _unit(n.detach() + 0.3 * torch.randn(20, 3, generator=g, dtype=torch.float64))
    albedo = torch.full((20, 3), 0.5, dtype=torch.float64, requires_grad=True)
    rough = torch.full((20, 1), 0.4, dtype=torch.float64, requires_grad=True)
    f0 = torch.full((20, 1), 0.03, dtype=torch.float64, requires_grad=True)
    d, s = B.shade(n, v, albedo, rough, f0, sh, p, lut)
    (d + s).sum().backward()
    for t in (n, albedo, rough, f0):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    assert (f0.grad >= 0).all() and float(albedo.grad.abs().sum()) > 0
    # The roughness gradient agrees with finite differences (piecewise-linear lookups: a one-sided step inside a cell).
    eps = 1e-4
    hi = sum(x.sum() for x in B.shade(n.detach(), v, albedo.detach(), rough.detach() + eps, f0.detach(), sh, p, lut))
    lo = sum(x.sum() for x in B.shade(n.detach(), v, albedo.detach(), rough.detach(), f0.detach(), sh, p, lut))
    assert float(rough.grad.sum()) == pytest.approx(float(hi - lo) / eps, rel=1e-3)
