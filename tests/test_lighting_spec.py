"""Environments users name (avatar3d/render/lighting.py: environment_from_spec, directional_light): the generated maps,
the capture's light, HDR files and a directional light; one sentence for every bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from avatar3d.errors import BadInputError
from avatar3d.render import lighting as L
from avatar3d.render.lighting import CAPTURE, ENVIRONMENTS, EnvironmentMap, directional_light, environment_from_spec, environment_names
from avatar3d.viewer import envmaps


def _brightest(env: EnvironmentMap) -> np.ndarray:
    """(3,) unit direction of the map's brightest pixel."""
    lum = env.pixels.sum(-1)
    i, j = np.unravel_index(int(lum.argmax()), lum.shape)
    return L.equirect_directions(*env.shape)[i, j]


def _azimuth(d: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(d[0], d[2])))


def _one_sentence(err: BadInputError) -> str:
    text = str(err)
    assert "\n" not in text and not re.search(r"[.;]\s+[A-Z]", text) and not text.endswith(". "), text
    return text


def test_names_are_the_viewers():
    assert environment_names() == tuple(ENVIRONMENTS) == ("studio", "sunset", "overcast")
    assert environment_names(EnvironmentMap.generated("studio", 16)) == ("studio", "sunset", "overcast", CAPTURE)
    assert envmaps.environment_names is environment_names and envmaps.CAPTURE == CAPTURE  # one list for the viewer and the CLI


@pytest.mark.parametrize("name", list(ENVIRONMENTS))
def test_generated_maps_are_the_shared_ones(name):
    env = environment_from_spec(name)
    assert env.shape[1] == 2 * env.shape[0]
    assert np.allclose(env.pixels, EnvironmentMap.generated(name, env.shape[1]).pixels)


def test_rotation_moves_the_map():
    a, b = environment_from_spec("studio"), environment_from_spec("studio", 90.0)
    # The key light turns by 90 degrees about +Y, towards +X (the way a light's azimuth grows).
    turn = _azimuth(_brightest(b)) - _azimuth(_brightest(a))
    assert abs((turn + 180) % 360 - 180 - 90) < 3, turn
    # A file map turns the same way as the generated one (bilinear resampling of the same picture).
    rot = L.rotate_environment(a, 90.0)
    assert abs(_azimuth(_brightest(rot)) - _azimuth(_brightest(b))) < 3
    assert np.abs(rot.pixels - b.pixels).mean() < 0.05 * b.pixels.mean()


@pytest.mark.parametrize("az,el", [(90, 0), (-90, 0), (0, 0), (30, 45), (180, -20)])
def test_directional_light_direction_and_power(az, el):
    env = directional_light(az, el, 2.0, (1.0, 0.5, 0.25))
    d = _brightest(env)
    want = np.array([np.sin(np.radians(az)) * np.cos(np.radians(el)), np.sin(np.radians(el)), np.cos(np.radians(az)) * np.cos(np.radians(el))])
    assert np.degrees(np.arccos(np.clip(d @ want, -1, 1))) < 1.5
    power = (env.pixels * env.solid_angles()[..., None]).sum((0, 1))
    assert np.allclose(power, np.pi * 2.0 * np.array([1.0, 0.5, 0.25]), rtol=1e-3)  # intensity 1: irradiance pi facing it
    # Nothing else: everything 30 degrees from the light is dark.
    far = L.equirect_directions(*env.shape) @ want < np.cos(np.radians(30))
    assert env.pixels[far].max() < 1e-6
    # Its irradiance: about pi * intensity facing it, much less from behind (band-limited SH).
    E = L.irradiance_basis(np.stack([want, -want])) @ env.sh()
    assert 0.9 * 2 * np.pi < E[0, 0] < 1.2 * 2 * np.pi and E[1, 0] < 0.15 * E[0, 0]


def test_light_spec_and_rotation():
    a = environment_from_spec("90,10,3,1,0.8,0.6")
    assert np.allclose(a.pixels, directional_light(90, 10, 3, (1, 0.8, 0.6)).pixels)
    b = environment_from_spec("0,10,3", rotation_deg=-90)
    assert abs(_azimuth(_brightest(b)) + 90) < 1.5  # a rotation turns the light's azimuth


def test_capture_and_files(tmp_path):
    cap = EnvironmentMap.generated("sunset", 64)
    assert environment_from_spec("capture", capture=cap) is cap
    turned = environment_from_spec("capture", 45.0, capture=cap)
    assert turned.shape == cap.shape and not np.allclose(turned.pixels, cap.pixels)
    for suffix in (".hdr", ".exr"):
        cap.write(tmp_path / f"env{suffix}")
        back = environment_from_spec(str(tmp_path / f"env{suffix}"))
        assert back.shape == cap.shape and np.allclose(back.pixels, cap.pixels, rtol=0.02, atol=1e-3)
    moved = environment_from_spec(tmp_path / "env.exr", 45.0)
    assert np.allclose(moved.pixels, turned.pixels, rtol=1e-4, atol=1e-5)


def _bad(tmp_path, case: str):
    """(spec, capture) of one bad input."""
    if case == "png":
        Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "sky.png")
        return str(tmp_path / "sky.png"), None
    if case == "png_named_hdr":
        Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(tmp_path / "sky.png")
        (tmp_path / "sky.hdr").write_bytes((tmp_path / "sky.png").read_bytes())
        return str(tmp_path / "sky.hdr"), None
    if case == "garbage_hdr":
        (tmp_path / "x.hdr").write_bytes(b"#?RADIANCE\nnot really\n")
        return str(tmp_path / "x.hdr"), None
    if case == "missing":
        return str(tmp_path / "nope.hdr"), None
    if case == "shape":
        EnvironmentMap(np.ones((32, 32, 3), np.float32)).write(tmp_path / "square.exr")
        return str(tmp_path / "square.exr"), None
    if case == "negative":
        EnvironmentMap(-np.ones((16, 32, 3), np.float32)).write(tmp_path / "neg.exr")
        return str(tmp_path / "neg.exr"), None
    if case == "name":
        return "sunrise", None
    if case == "capture":
        return "capture", None
    return {"light_short": "90,20", "light_words": "left,up,3", "light_elevation": "0,120,1", "light_negative": "0,0,-1",
            "light_colour": "0,0,1,1,1"}[case], None


@pytest.mark.parametrize("case,want", [
    ("png", "not an HDR image"), ("png_named_hdr", "not an HDR image"), ("garbage_hdr", "not a readable"), ("missing", "no such"),
    ("shape", "twice as wide"), ("negative", "negative"), ("name", "studio, sunset, overcast, capture"), ("capture", "not known"),
    ("light_short", "AZ,EL,INTENSITY"), ("light_words", "AZ,EL,INTENSITY"), ("light_elevation", "-90..90"),
    ("light_negative", ">= 0"), ("light_colour", "AZ,EL,INTENSITY"),
])
def test_bad_input_is_one_sentence(tmp_path, case, want):
    spec, capture = _bad(tmp_path, case)
    with pytest.raises(BadInputError) as e:
        environment_from_spec(spec, capture=capture)
    assert want in _one_sentence(e.value)
