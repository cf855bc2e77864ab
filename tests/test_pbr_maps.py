"""Procedural ground-truth material maps (avatar3d.synthetic.pbr_maps): ranges, determinism, normals vs displacement."""

import numpy as np
import pytest

from avatar3d.models import load_head_model
from avatar3d.synthetic.pbr_maps import landmark_uv, make_maps, tangent_normals, uv_geometry

RES = 256


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin")


@pytest.fixture(scope="module")
def geom(model):
    return uv_geometry(model, RES)


@pytest.fixture(scope="module")
def maps(model, geom):
    return make_maps(model, RES, seed=3, geometry=geom)


def _texel(uv, res=RES):
    """(row, col) of a UV point (origin bottom-left)."""
    return int((1 - uv[1]) * res), int(uv[0] * res)


def test_maps_have_skin_like_ranges_and_regions(model, maps):
    assert maps.albedo.shape == (RES, RES, 3) and maps.normal.shape == (RES, RES, 3)
    for a in (maps.albedo, maps.specular, maps.roughness, maps.displacement, maps.normal):
        assert np.isfinite(a).all()
    assert 0 <= maps.albedo.min() and maps.albedo.max() <= 1
    L = landmark_uv(model)
    # Cheek skin: F0 about 0.028 (IOR 1.4), roughness about 0.5 +- 0.1.
    r, c = _texel(L[50])
    cheek = (slice(r - 3, r + 4), slice(c - 3, c + 4))
    assert 0.024 < maps.specular[cheek].mean() < 0.034
    assert 0.45 < maps.roughness[cheek].mean() < 0.65
    # T-zone shinier than cheeks; lips smoother than skin; hair (top of the head) rough and less specular.
    nose, forehead, lips = _texel(L[4]), _texel(L[151]), _texel(L[0] * 0.5 + L[17] * 0.5)
    assert maps.roughness[nose] < maps.roughness[cheek].mean() - 0.05
    assert maps.roughness[forehead] < maps.roughness[cheek].mean() - 0.05
    assert maps.specular[forehead] > maps.specular[cheek].mean()
    assert maps.roughness[lips] < 0.45
    hair = (slice(2, 20), slice(10, RES - 10))
    assert maps.roughness[hair].mean() > 0.7 and maps.specular[hair].mean() < 0.02
    # Displacement in metres: wrinkles down to about -0.5 mm, pores 0.05-0.1 mm, nothing sticks out by more.
    d = maps.displacement
    assert -0.6e-3 < d.min() < -0.3e-3 and d.max() < 0.1e-3
    assert (d[maps.covered] < -0.04e-3).mean() > 0.005  # pores and folds exist
    assert np.allclose(np.linalg.norm(maps.normal, axis=-1), 1, atol=1e-5)


def test_maps_are_deterministic_from_the_seed(model, geom, maps):
    again = make_maps(model, RES, seed=3, geometry=geom)
    other = make_maps(model, RES, seed=4, geometry=geom)
    for k in ("albedo", "specular", "roughness", "displacement", "normal"):
        assert np.array_equal(getattr(maps, k), getattr(again, k)), k
    assert not np.array_equal(maps.displacement, other.displacement)


def test_normal_map_matches_the_displacement_gradient_on_the_surface(model, geom):
    """Independent check: the 3D gradient of h from the template's texel positions (least squares over the
    four neighbours) gives the tangent-space normal; it must agree with tangent_normals (UV Jacobians)."""
    u, v = np.meshgrid((np.arange(RES) + 0.5) / RES, 1 - (np.arange(RES) + 0.5) / RES)
    h = 0.4e-3 * np.sin(2 * np.pi * 5 * u) * np.cos(2 * np.pi * 4 * v)  # smooth test height field, metres
    n_map = tangent_normals(h, geom)
    P, t, b = geom.position.astype(np.float64), geom.tangent.astype(np.float64), geom.bitangent.astype(np.float64)
    ok = geom.covered & (geom.part == 0)
    errs = []
    for r in range(8, RES - 8, 3):
        for c in range(8, RES - 8, 3):
            if not ok[r - 1 : r + 2, c - 1 : c + 2].all():
                continue
            nb = [(r, c + 1), (r, c - 1), (r - 1, c), (r + 1, c)]
            dp = np.array([P[q] - P[r, c] for q in nb])
            A = np.stack([dp @ t[r, c], dp @ b[r, c]], -1)
            if np.linalg.cond(A) > 20:  # a neighbour across a chart seam
                continue
            gt, gb = np.linalg.lstsq(A, np.array([h[q] - h[r, c] for q in nb]), rcond=None)[0]
            want = np.array([-gt, -gb, 1.0]) / np.linalg.norm([gt, gb, 1.0])
            errs.append(np.degrees(np.arccos(np.clip(want @ n_map[r, c], -1, 1))))
    errs = np.array(errs)
    assert len(errs) > 500
    slope = np.degrees(np.arctan(0.4e-3 * 2 * np.pi * 5 / 0.6))  # the field's largest tilt is a few degrees
    assert slope > 1
    assert np.median(errs) < 0.1 * slope and np.percentile(errs, 90) < 0.25 * slope, (np.median(errs), np.percentile(errs, 90))


def test_uv_layout_is_right_handed_so_the_bitangent_is_plus_v(geom):
    """glTF's normal-map green is +v; Mitsuba's normalmap uses n x t: they agree where dp/du x dp/dv points out."""
    ok = geom.covered & (geom.part == 0)
    # The bitangent n x t must point along +v on the surface: positive component on grad_b's v part.
    assert (geom.grad_b[ok][:, 1] > 0).mean() > 0.99
