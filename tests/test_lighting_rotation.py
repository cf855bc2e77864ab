"""Turning an environment about +Y without prefiltering it again (render/lighting.py ``sh_rotation_y``,
``rotate_environment``; render/brdf.py ``PrefilteredEnvironment.rotated``; avatar/relight.py ``FixedLight``;
avatar/render.py ``frame_lights``).

The reference is the map turned exactly (``EnvironmentMap.generated(name, width, angle)`` evaluates the analytic map at
the turned directions) and then prefiltered; the fast path prefilters the unturned map once and turns the result.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.relight import FixedLight
from avatar3d.avatar.render import Relight, frame_lights
from avatar3d.render.brdf import shade, split_sum_lut
from avatar3d.render.color import srgb_encode
from avatar3d.render.lighting import (
    EnvironmentMap,
    directional_light,
    environment_from_spec,
    equirect_directions,
    fibonacci_sphere,
    rotate_environment,
    sh_basis,
    sh_rotation_y,
)

ANGLES = (37.3, -121.9)  # fractional columns at every width used here


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_sh_rotation_is_exact_and_turns_the_front_towards_plus_x():
    u = fibonacci_sphere(50)
    for a in (30.0, -77.7, 200.0):
        M = sh_rotation_y(a, 4)
        # Y(R u) = M Y(u) for every direction: the basis functions turn exactly (bands 0-3).
        np.testing.assert_allclose(sh_basis(u @ _rot_y(a).T, 4), sh_basis(u, 4) @ M.T, atol=1e-12)
        np.testing.assert_allclose(sh_rotation_y(a, 3), M[:9, :9])
    # Band 1 is (y, z, x): a light in front (+z) turned +90 degrees comes from +X, y untouched.
    front = np.array([0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(sh_rotation_y(90.0, 2) @ front, [0, 0, 0, 1], atol=1e-12)
    # The SH of the turned map is the turned SH of the map (the generated maps turn analytically).
    for name in ("studio", "sunset"):
        env = EnvironmentMap.generated(name, 128)
        for a in ANGLES:
            want = EnvironmentMap.generated(name, 128, a).sh()
            np.testing.assert_allclose(sh_rotation_y(a) @ env.sh(), want, atol=1e-5 * np.abs(want).max())


def test_rotate_environment_shifts_columns_like_the_bilinear_lookup():
    env = EnvironmentMap.generated("sunset", 128)
    H, W = env.shape
    for a in (*ANGLES, 90.0):
        turned = rotate_environment(env, a)
        d = equirect_directions(H, W).reshape(-1, 3) @ _rot_y(a)  # the turned map at d is the map at R^-1 d
        np.testing.assert_allclose(turned.pixels, env.sample(d).reshape(H, W, 3), rtol=1e-5, atol=1e-5)
        assert turned.turned[0] is env and turned.turned[1] == a
    # Whole columns turn exactly, as the analytic map does; turning a turned map keeps the first source.
    np.testing.assert_allclose(rotate_environment(env, 90.0).pixels, EnvironmentMap.generated("sunset", 128, 90.0).pixels, rtol=1e-5)
    twice = rotate_environment(rotate_environment(env, 10.0), 20.0)
    assert twice.turned[0] is env and twice.turned[1] == pytest.approx(30.0)
    # A light's azimuth and a named map's rotation record their sources too.
    lamp = environment_from_spec("0,10,3", rotation_deg=-90)
    np.testing.assert_allclose(lamp.turned[0].pixels, directional_light(0, 10, 3).pixels)
    assert lamp.turned[1] == -90 and environment_from_spec("studio").turned is None


def _colours(light: FixedLight, n, v, rough, lut) -> torch.Tensor:
    """sRGB display colours of a skin-like surface (albedo 0.5, f0 0.028) under ``light``."""
    diff, spec = shade(n, v, torch.full_like(n, 0.5), rough, torch.full_like(rough, 0.028), light.sh, light.prefiltered, lut)
    return srgb_encode((diff + spec).clamp(0, 1))


def test_turned_prefiltered_light_shades_like_the_turned_map_prefiltered():
    """Measured (128 px maps, 64 px stack): display colours differ by <= 0.001 on average and p99 <= 0.002
    over roughness 0-1; at skin roughness (>= 0.3) by at most 0.004 (one 8-bit step). The largest differences are the
    sunset's sun (5 degrees, 60x the sky) seen in a mirror-like lobe (roughness < 0.3): the turned analytic map and
    the turned sampled map place its peak at different sub-texel positions, and neither is the truer one."""
    g = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(3000, 3, generator=g), dim=-1)
    v = torch.nn.functional.normalize(n + 0.7 * torch.nn.functional.normalize(torch.randn(3000, 3, generator=g), dim=-1), dim=-1)
    rough = torch.rand(3000, 1, generator=g)
    skin = rough[:, 0] >= 0.3
    lut = split_sum_lut()
    for name in ("studio", "sunset"):
        base = EnvironmentMap.generated(name, 128)
        for a in ANGLES:
            fast = FixedLight.of(rotate_environment(base, a))
            assert fast.prefiltered.maps is FixedLight.of(base).prefiltered.maps  # prefiltered once, shared
            ref = FixedLight.prefilter(EnvironmentMap.generated(name, 128, a))
            err = (_colours(fast, n, v, rough, lut) - _colours(ref, n, v, rough, lut)).abs()
            assert err.mean() < 1e-3 and err.quantile(0.99) < 2e-3, (name, a)
            assert err[skin].max() < 4.5e-3, (name, a)
            # Sign: a turn the wrong way would move the studio's key light and fail by far.
            wrong = (_colours(FixedLight.of(base).rotated(-a), n, v, rough, lut) - _colours(ref, n, v, rough, lut)).abs()
            assert wrong.mean() > 10 * err.mean()


def test_a_rotating_light_prefilters_once():
    """``--env-rotation 0:360``: every frame's map is the one unturned map turned by that frame's angle."""
    lights = frame_lights(Relight("studio", (0.0, 360.0), "30,20,2"), 5)
    maps = [lights(i) for i in range(5)]
    assert maps[0].turned is None and maps[4] is maps[0]  # 0 and 360 degrees: the unturned map itself
    assert all(m.turned[0] is maps[0] for m in maps[1:4]) and [m.turned[1] for m in maps[1:4]] == [90.0, 180.0, 270.0]
    # The source is studio plus the lamp at its own azimuth; frame 1 is it turned by 90 degrees, pixel for pixel.
    source = maps[0]
    np.testing.assert_allclose(source.pixels, EnvironmentMap.generated("studio", source.shape[1]).pixels
                               + directional_light(30, 20, 2, width=source.shape[1]).pixels, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[1].pixels, np.roll(source.pixels, source.shape[1] // 4, axis=1), rtol=1e-6)


def test_the_viewers_rotation_slider_reuses_one_prefiltering():
    """The viewer's Relight rotation (``avatar_environment``): every angle of one map and intensity is that map turned."""
    from types import SimpleNamespace

    from avatar3d.viewer.gaussians import AvatarLight, avatar_environment

    capture = EnvironmentMap.generated("overcast", 32)
    avatar = SimpleNamespace(appearance=SimpleNamespace(relightable=True, capture_environment=lambda: capture))
    for name in ("studio", "capture"):
        a, b = (avatar_environment(avatar, AvatarLight(name, rot, 1.5)) for rot in (20.0, -65.5))
        assert (a.turned[1], b.turned[1]) == (20.0, -65.5)
        np.testing.assert_array_equal(a.turned[0].pixels, b.turned[0].pixels)
        assert FixedLight.of(a).prefiltered.maps is FixedLight.of(b).prefiltered.maps
    # The intensity scales the light before it is turned.
    lit = avatar_environment(avatar, AvatarLight("capture", 90.0, 2.0))
    np.testing.assert_allclose(lit.pixels, rotate_environment(capture, 90.0).pixels * 2, rtol=1e-6)
