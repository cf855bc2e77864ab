"""MediaPipe's measured view of the built-in head (avatar3d.calibration.detector_response) and its use in the fit.

The shipped table is what makes the rendered ground truth reach 2 mm (tests/test_tracking_synthetic.py);
these tests check the table belongs to the current model, that the lifting is right, and a small
measurement reproduces the shipped numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d._tensor import f32
from avatar3d.calibration.detector_response import measure_response, projection_jacobian, save_response
from avatar3d.tracking.detector_model import load_response, response_path
from avatar3d.tracking.landmark_model import LandmarkHead

CORNERS = [61, 291]  # MediaPipe mouth corners (subject's right, left)


def _own(model) -> dict:
    """The mesh's own landmark motion in the response format (what LandmarkHead uses without one)."""
    h = LandmarkHead(model)
    P = h.num_points  # bases are stored coordinate-major: (K, 3P) rows view as (K, 3, P)
    return dict(expression=h.exprdirs.view(model.num_expression, 3, P).transpose(1, 2).clone(),
                shape=h.shapedirs.view(model.num_shape, 3, P).transpose(1, 2).clone(), offset=torch.zeros(h.num_landmarks, 3))


def _gain(resp: np.ndarray, own: np.ndarray) -> float:
    """<d, t> / <t, t> over the points the mesh moves by more than 30% of its largest motion."""
    w = np.linalg.norm(own, axis=-1) > 0.3 * np.linalg.norm(own, axis=-1).max()
    return float((resp[w] * own[w]).sum() / (own[w] ** 2).sum())


def test_shipped_table_belongs_to_the_current_builtin_head(builtin):
    """Fails when the built-in head changes without regenerating the table (the fit would silently lose it)."""
    r = load_response(builtin)
    assert r is not None, f"{response_path('builtin')} is missing or stale: python -m avatar3d.calibration builtin"
    own = _own(builtin)
    jaw = builtin.expression_names.index("jawOpen")
    e, t = r["expression"][jaw].numpy(), own["expression"][jaw].numpy()
    # What the table says (measured, see the module docstring): MediaPipe reports part of the jaw's
    # motion, and drops the mouth corners, which the mesh's jawOpen does not move.
    assert 0.4 < _gain(e, t) < 0.95
    assert np.abs(t[CORNERS, 1]).max() < 1e-4 and (e[CORNERS, 1] < -0.002).all()  # +Y up: corners go down > 2 mm
    assert np.abs(r["offset"].numpy()).max() < 0.02 and np.isfinite(r["shape"].numpy()).all()


def test_landmark_head_uses_the_response_rows(builtin):
    g = torch.Generator().manual_seed(0)
    S, E, J = builtin.num_shape, builtin.num_expression, builtin.num_joints
    args = (torch.randn(S, generator=g) * 0.5, torch.rand(3, E, generator=g) * 0.5, torch.randn(3, J, 3, generator=g) * 0.1,
            torch.randn(3, 3, generator=g) * 0.01)
    extra = torch.arange(0, builtin.num_vertices, 997)
    plain = LandmarkHead(builtin, extra_vertices=extra)
    own = LandmarkHead(builtin, extra_vertices=extra, response=_own(builtin))
    a, b = plain(*args), own(*args)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # the mesh's own rows: nothing changes
    resp = _own(builtin)
    resp["offset"][5] = torch.tensor([0.001, 0.0, 0.0])
    resp["expression"][0, 7] += 0.01
    moved = LandmarkHead(builtin, extra_vertices=extra, response=resp)(*args)
    changed = (moved[0] - a[0]).norm(dim=-1).amax(0) > 1e-6
    assert changed[[5, 7]].all() and changed.sum() == 2 and torch.equal(moved[1], a[1])  # extra vertices keep the mesh's
    with pytest.raises(ValueError, match="response tables"):
        LandmarkHead(builtin, response={**resp, "shape": resp["shape"][:3]})


def test_projection_jacobian_matches_finite_differences(builtin):
    """The lifting's J_v: pixel motion of a rest-frame landmark displacement, checked through LandmarkHead."""
    from avatar3d.render.camera import project
    from avatar3d.render.camera_builders import front_camera

    J = builtin.num_joints
    pose = np.zeros((J, 3))
    pose[0] = [0.05, 0.25, 0.0]
    K = np.array([[440.0, 0, 179.5], [0, 440.0, 319.5], [0, 0, 1]])
    w2c = front_camera(0.35)
    Jv, scale = projection_jacobian(builtin, pose, K, w2c)
    assert 1300 < scale < 2100  # 440 px / ~0.26 m (the face is ~9 cm in front of the model origin at 0.35 m)
    args = (torch.zeros(builtin.num_shape), torch.zeros(1, builtin.num_expression), f32(pose)[None], torch.zeros(1, 3))
    base = project(LandmarkHead(builtin)(*args)[0], f32(K), f32(w2c))[0][0].numpy()
    p, d = [1, 61, 291, 152], np.array([0.0005, -0.0003, 0.0004])
    resp = _own(builtin)
    resp["offset"][p] = f32(d)
    moved = project(LandmarkHead(builtin, response=resp)(*args)[0], f32(K), f32(w2c))[0][0].numpy()
    np.testing.assert_allclose(moved[p] - base[p], Jv[p] @ d, atol=0.01)  # px, for ~0.7 px of motion


def test_stale_table_is_ignored_with_a_warning(builtin, tmp_path):
    r = {k: v.numpy() for k, v in _own(builtin).items()}
    p = save_response(builtin, r, tmp_path / "t.npz")
    loaded = load_response(builtin, p)
    assert loaded is not None and all(np.allclose(loaded[k].numpy(), r[k], rtol=2e-3, atol=1e-6) for k in r)  # stored as float16
    z = dict(np.load(p))
    z["version"] = np.array("0.0-old")
    np.savez(tmp_path / "old.npz", **z)
    with pytest.warns(UserWarning, match="another version"):
        assert load_response(builtin, tmp_path / "old.npz") is None


def test_small_measurement_reproduces_the_shipped_jaw(builtin):
    """jawOpen alone at one head turn (2 renders through MediaPipe): close to the shipped three-turn table."""
    shipped = load_response(builtin)
    if shipped is None:
        pytest.skip("no shipped table (see test_shipped_table_belongs_to_the_current_builtin_head)")
    r = measure_response(builtin, yaws=(0.25,), expressions=["jawOpen"], identity=False)
    own = _own(builtin)
    jaw = builtin.expression_names.index("jawOpen")
    e, s = r["expression"][jaw], shipped["expression"][jaw].numpy()
    assert abs(_gain(e, own["expression"][jaw].numpy()) - _gain(s, own["expression"][jaw].numpy())) < 0.1
    assert (e[CORNERS, 1] < -0.002).all()
    # Not measured: the mesh's own rows, unchanged.
    np.testing.assert_allclose(r["expression"][jaw + 1], own["expression"][jaw + 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(r["shape"], own["shape"].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="no expression"):
        measure_response(builtin, expressions=["notAShape"], identity=False)
