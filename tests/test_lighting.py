"""avatar3d.render.lighting / color / hdrio: the SH basis, irradiance, environment maps, split-sum specular, HDR files, sRGB."""

import base64

import numpy as np
import pytest
import torch

from avatar3d.errors import BadInputError
from avatar3d.render import lighting as L
from avatar3d.render.color import display_curve, reinhard_gamma, srgb_decode, srgb_encode
from avatar3d.render.hdrio import read_hdr_image, write_hdr_image


def _irradiance_brute(L_fn, normals, n=200_000):
    """E(n) = integral L(d) max(0, n.d) dd by quadrature over n Fibonacci directions."""
    d = L.fibonacci_sphere(n)
    rad = L_fn(d)
    return np.clip(normals @ d.T, 0, None) @ rad * (4 * np.pi / n)


def _normals(k=50, seed=0):
    n = np.random.default_rng(seed).normal(size=(k, 3))
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def test_sh_basis_is_orthonormal_up_to_band_3():
    env = L.EnvironmentMap(np.zeros((256, 512, 3), np.float32))
    d = L.equirect_directions(*env.shape).reshape(-1, 3)
    Y = L.sh_basis(d, bands=4)
    gram = (Y * env.solid_angles().reshape(-1, 1)).T @ Y
    np.testing.assert_allclose(gram, np.eye(16), atol=2e-4)


def test_sh_basis_torch_equals_numpy_and_scalings_are_one_basis():
    n = _normals()
    Y = L.sh_basis(n, bands=4)
    np.testing.assert_allclose(L.sh_basis(torch.from_numpy(n), bands=4).numpy(), Y, rtol=1e-15, atol=1e-15)
    P = L.sh_polynomials(n, bands=4)
    np.testing.assert_allclose(Y, P * np.array(L.SH_K), rtol=1e-15)
    A = np.repeat([L.COSINE_LOBE[l] for l in range(3)], [1, 3, 5])
    np.testing.assert_allclose(L.irradiance_basis(n), Y[:, :9] * A, rtol=2e-6)  # SH_C are A_l K_i to 6 digits
    with pytest.raises(ValueError):
        L.sh_basis(n, bands=5)


def test_sh_projection_of_a_constant_map():
    env = L.EnvironmentMap(np.full((256, 512, 3), [0.5, 1.0, 2.0], np.float32))
    sh = env.sh(bands=4)
    np.testing.assert_allclose(sh[0], np.array([0.5, 1.0, 2.0]) * 4 * np.pi * L.SH_K[0], rtol=1e-6)
    np.testing.assert_allclose(sh[1:], 0, atol=1e-4)  # pixel-centre quadrature of z^2 terms: O(1 / H^2)
    # irradiance of a constant radiance c is pi * c for every normal
    np.testing.assert_allclose(L.irradiance_basis(_normals()) @ sh[:9], np.pi * np.array([[0.5, 1.0, 2.0]]).repeat(50, 0), rtol=1e-5)


def test_irradiance_from_sh_matches_brute_force_integration():
    def band_limited(d):  # radiance with bands 0-2 only: its irradiance is exact from 9 coefficients
        x, y, z = d[:, 0], d[:, 1], d[:, 2]
        v = 1.0 + 0.6 * y + 0.3 * x * z - 0.2 * (x * x - y * y) + 0.25 * (3 * z * z - 1)
        return np.stack([v, 0.5 * v, 2 - v], 1)

    n = _normals()
    d = L.fibonacci_sphere(20000)
    sh = L.project_sh(d, band_limited(d), 4 * np.pi / len(d))
    np.testing.assert_allclose(L.irradiance_basis(n) @ sh, _irradiance_brute(band_limited, n), rtol=2e-4, atol=1e-4)
    # A generated map (not band-limited): 9 coefficients hold irradiance to a few percent (Ramamoorthi & Hanrahan).
    sh = L.environment_sh("overcast")
    ref = _irradiance_brute(lambda d: L.radiance("overcast", d), n)
    assert np.abs(L.irradiance_basis(n) @ sh - ref).max() < 0.03 * ref.max()
    # Filament's convention is a conversion of the same coefficients: P(n) @ filament_sh = E / pi
    np.testing.assert_allclose(L.sh_polynomials(n) @ L.filament_sh(sh), L.irradiance_basis(n) @ sh / np.pi, rtol=1e-5)


def test_environment_map_sample_and_generated_maps():
    env = L.EnvironmentMap.generated("studio", 128, rotation_deg=20.0)
    assert env.pixels.shape == (64, 128, 3) and env.pixels.dtype == np.float32
    d = L.equirect_directions(64, 128).reshape(-1, 3)
    np.testing.assert_allclose(env.sample(d), env.pixels.reshape(-1, 3), rtol=1e-6)  # pixel centres are exact
    np.testing.assert_allclose(env.pixels.reshape(-1, 3), L.radiance("studio", d, 20.0), rtol=1e-6)
    np.testing.assert_allclose(env.solid_angles().sum(), 4 * np.pi, rtol=1e-12)
    assert env.preview().dtype == np.uint8 and env.preview().shape == (64, 128, 3)
    with pytest.raises(ValueError, match="unknown environment"):
        L.radiance("moon", d)


def test_ggx_prefilter_at_zero_roughness_is_the_map_and_blurs_with_roughness():
    env = L.EnvironmentMap.generated("sunset", 64)
    for r in (0.0, 0.02):  # 0.02: the lobe is narrower than the samples, so the map itself
        np.testing.assert_allclose(env.prefiltered(r, width=64).pixels, env.pixels, rtol=1e-6)
    spread = [env.prefiltered(r, width=64).pixels[..., 0].std() for r in (0.3, 0.6, 1.0)]
    assert spread[0] > spread[1] > spread[2] > 0
    const = L.EnvironmentMap(np.full((32, 64, 3), 0.7, np.float32))
    for lobe in ("ggx", "phong"):
        np.testing.assert_allclose(const.prefiltered(0.5, width=32, lobe=lobe).pixels, 0.7, rtol=1e-6)


def test_brdf_lut_energy_and_reference_points():
    lut = L.brdf_lut(16, 256)
    assert lut.shape == (16, 16, 2)
    assert lut.min() >= 0 and lut.sum(-1).max() <= 1 + 1e-6
    # smooth surfaces reflect everything at f0 = 1; rough ones lose energy (no multiple scattering)
    assert lut[0].sum(-1).min() > 0.95 and lut[-1].sum(-1).max() < 0.9
    # against brute-force uniform sampling of the same integral (GGX D, Smith G with k = alpha / 2, Schlick F)
    r, nov = (np.arange(16) + 0.5)[[8, 15]] / 16, (np.arange(16) + 0.5)[[8, 0]] / 16
    for i, (rough, nv) in zip([8, 15], zip(r, nov)):
        j = 8 if i == 8 else 0
        g = np.random.default_rng(0).random((400_000, 2))
        z, phi = g[:, 0], 2 * np.pi * g[:, 1]
        l = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
        v = np.array([np.sqrt(1 - nv * nv), 0, nv])
        h = (l + v) / np.linalg.norm(l + v, axis=1, keepdims=True)
        a = rough**2
        D = a * a / (np.pi * (h[:, 2] ** 2 * (a * a - 1) + 1) ** 2)
        k = a / 2
        G = nv / (nv * (1 - k) + k) * l[:, 2] / (l[:, 2] * (1 - k) + k)
        f = D * G / (4 * nv) * 2 * np.pi
        fc = (1 - h @ v) ** 5
        np.testing.assert_allclose(lut[i, j], [((1 - fc) * f).mean(), (fc * f).mean()], atol=0.01)
    ab = L.brdf_lut_approx(0.55, np.linspace(0.05, 1, 8, dtype=np.float32)[:, None])
    assert ab.shape == (8, 2) and ab.dtype == np.float32


# A 4x3 half-float ZIP-compressed image written by the OpenEXR library (3.x, Python bindings).
_OPENEXR_TINY = (
    "di8xAQIAAABjaGFubmVscwBjaGxpc3QANwAAAEIAAQAAAAAAAAABAAAAAQAAAEcAAQAAAAAAAAABAAAAAQAAAFIAAQAAAAAAAAABAAAAAQAAAABjb21w"
    "cmVzc2lvbgBjb21wcmVzc2lvbgABAAAAA2RhdGFXaW5kb3cAYm94MmkAEAAAAAAAAAAAAAAAAwAAAAIAAABkaXNwbGF5V2luZG93AGJveDJpABAAAAAA"
    "AAAAAAAAAAMAAAACAAAAbGluZU9yZGVyAGxpbmVPcmRlcgABAAAAAHBpeGVsQXNwZWN0UmF0aW8AZmxvYXQABAAAAAAAgD9zY3JlZW5XaW5kb3dDZW50"
    "ZXIAdjJmAAgAAAAAAAAAAAAAAHNjcmVlbldpbmRvd1dpZHRoAGZsb2F0AAQAAAAAAIA/dHlwZQBzdHJpbmcADQAAAHNjYW5saW5laW1hZ2UAXgEAAAAA"
    "AAAAAAAARQAAAHheY2homJneAAcGFxoaDjiAsO/mhoZnUiDMYNPT47Ckpych4EBPhk/DngUqe1xuJbk0XMspmtxQXTClqSpnejMA4lEiyQ=="
)
_OPENEXR_TINY_PIXELS = np.array([[[0, 0.5, 1], [2, 4, 8], [16, 32, 64], [0.25, 0.125, 1e-3]],
                                 [[1, 0, 0], [0, 1, 0], [0, 0, 1], [100, 200, 300]],
                                 [[3, 3, 3], [0.1, 0.2, 0.3], [5, 6, 7], [9, 8, 7]]], np.float32)


def test_hdr_and_exr_round_trip(tmp_path):
    env = L.EnvironmentMap.generated("studio", 64)
    env.write(tmp_path / "a.exr")
    assert np.array_equal(L.EnvironmentMap.read(tmp_path / "a.exr").pixels, env.pixels)  # float32, lossless
    env.write(tmp_path / "a.hdr")
    back = L.EnvironmentMap.read(tmp_path / "a.hdr").pixels
    # RGBE: one shared exponent, 8-bit mantissas: error below 1 % of the pixel's largest channel
    assert np.all(np.abs(back - env.pixels) <= 0.01 * env.pixels.max(-1, keepdims=True))
    # a file from the reference implementation reads back (half floats, ZIP)
    (tmp_path / "ref.exr").write_bytes(base64.b64decode(_OPENEXR_TINY))
    np.testing.assert_array_equal(read_hdr_image(tmp_path / "ref.exr"), _OPENEXR_TINY_PIXELS.astype(np.float16).astype(np.float32))
    with pytest.raises(BadInputError, match="must be .hdr or .exr"):
        write_hdr_image(tmp_path / "a.png", env.pixels)
    (tmp_path / "bad.exr").write_bytes(b"not an exr file at all")
    with pytest.raises(BadInputError, match="not an OpenEXR file"):
        read_hdr_image(tmp_path / "bad.exr")


def test_srgb_round_trip_torch_equals_numpy_and_display_curves():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(srgb_decode(srgb_encode(x)), x, atol=1e-12)
    np.testing.assert_allclose(srgb_encode(0.5), 0.735356983, atol=1e-9)
    np.testing.assert_allclose(srgb_encode(0.002), 12.92 * 0.002)
    xt = torch.from_numpy(x).requires_grad_(True)
    enc = srgb_encode(xt)
    np.testing.assert_allclose(enc.detach().numpy(), srgb_encode(x), atol=1e-15)
    np.testing.assert_allclose(srgb_decode(enc).detach().numpy(), srgb_decode(srgb_encode(x)), atol=1e-15)
    enc.sum().backward()
    assert torch.isfinite(xt.grad).all()
    y = display_curve(np.array([0.0, 0.01, 0.1, 1.0, 10.0]))
    assert y.dtype == np.float32 and np.all(np.diff(y) > 0) and 0 <= y.min() and y.max() <= 1
    np.testing.assert_allclose(reinhard_gamma(np.array([0.0, 1.0])), [0.0, 0.5 ** (1 / 2.2)])
