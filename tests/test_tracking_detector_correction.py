"""The non-linear part of MediaPipe's view of the built-in head (avatar3d.calibration.detector_correction).

The shipped correction is what lifts mouthSmileLeft on the rendered ground truth
(tests/test_tracking_synthetic.py); these tests check how LandmarkHead uses it, that it survives the
file format, that training reduces the error, and that the shipped one generalises to fresh renders
(new identities, expressions, poses and lights) it was not trained on.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.calibration.detector_correction import sample_detections, sample_projector, train_correction
from avatar3d.calibration.detector_response import save_response
from avatar3d.tracking.detector_model import DetectorCorrection, joint_indices, load_response
from avatar3d.tracking.landmark_model import LandmarkHead


def _random_correction(model, seed: int = 0, scale: float = 0.05) -> DetectorCorrection:
    c = DetectorCorrection(model.num_expression, joint_indices(model), hidden=32, rank=8)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in c.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return c


def _args(model, B: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    S, E, J = model.num_shape, model.num_expression, model.num_joints
    return (torch.randn(S, generator=g) * 0.5, torch.rand(B, E, generator=g) * 0.5, torch.randn(B, J, 3, generator=g) * 0.1,
            torch.randn(B, 3, generator=g) * 0.01)


@pytest.fixture(scope="module")
def table(builtin):
    r = load_response(builtin, correction=False)
    if r is None:
        pytest.skip("no shipped response table (see tests/test_tracking_detector_response.py)")
    return r


@pytest.fixture(scope="module")
def fresh(builtin):
    """48 renders the shipped correction never saw (its samples use seeds 0 and 1), through MediaPipe."""
    return sample_detections(builtin, 48, seed=90210, batch=12)


def test_untrained_correction_changes_nothing(builtin, table):
    extra = torch.arange(0, builtin.num_vertices, 997)
    args = _args(builtin)
    plain = LandmarkHead(builtin, extra_vertices=extra, response=table)
    zero = LandmarkHead(builtin, extra_vertices=extra, response={**table, "correction": DetectorCorrection(builtin.num_expression, joint_indices(builtin))})
    a, b = plain(*args), zero(*args)
    # (Equal up to float rounding: the concatenated points take another GEMM path.)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-7)


def test_correction_moves_landmarks_only_and_passes_gradients(builtin, table):
    extra = torch.arange(0, builtin.num_vertices, 997)
    # (scale 0.3: the head anchors the correction at the neutral face, so what moves the points is the
    # network's variation with the inputs, not its constant output, which at 0.05 was most of it)
    c = _random_correction(builtin, scale=0.3)
    head = LandmarkHead(builtin, extra_vertices=extra, response={**table, "correction": c})
    plain = LandmarkHead(builtin, extra_vertices=extra, response=table)
    shape, expr, pose, transl = _args(builtin)
    a, b = plain(shape, expr, pose, transl), head(shape, expr, pose, transl)
    assert (b[0] - a[0]).norm(dim=-1).amax() > 1e-4
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=1e-7)  # extra vertices keep the mesh's
    # Gradients reach the expressions and the head rotation through the network (double precision).
    head64 = head.double()
    f = lambda e, p: head64(shape.double(), e, p, transl[:1].double())[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (expr[:1].double().requires_grad_(), pose[:1].double().requires_grad_()), eps=1e-6, atol=1e-6)


def test_file_round_trip(builtin, table, tmp_path):
    c = _random_correction(builtin, seed=3, scale=0.3)
    p = save_response(builtin, {**{k: v.numpy() for k, v in table.items()}, "correction": c}, tmp_path / "r.npz")
    loaded = load_response(builtin, p)
    assert load_response(builtin, p, correction=False).keys() == {"expression", "shape", "offset"}
    args = _args(builtin, seed=1)
    from avatar3d.models.lbs import batch_rodrigues

    rot = batch_rodrigues(args[2].reshape(-1, 3)).view(3, -1, 3, 3)
    with torch.no_grad():
        d0, d1 = c(args[1], rot), loaded["correction"](args[1], rot)
    assert d0.abs().max() > 1e-3
    np.testing.assert_allclose(d1.numpy(), d0.numpy(), atol=3e-3 * float(d0.abs().max()))  # float16 weights


def test_training_reduces_the_detection_error(builtin, table, fresh):
    head = LandmarkHead(builtin, response=table)
    corr, rep = train_correction(builtin, head, fresh, steps=150, batch=48, val_fraction=0.25)
    print(rep)
    assert rep["train_px"] < 0.8 * rep["val_px_table"], rep  # it learns (48 samples: no claim about held-out ones)
    assert not any(p.requires_grad for p in corr.parameters())


def test_shipped_correction_generalises_to_fresh_renders(builtin, table, fresh):
    shipped = load_response(builtin)
    if shipped is None or "correction" not in shipped:
        pytest.skip("no shipped detector correction: python -m avatar3d.calibration builtin")
    ok = np.isfinite(fresh["detections"]).all((1, 2))
    assert ok.mean() > 0.9  # MediaPipe finds the head in the random renders
    s = {k: (v[ok] if k != "K" else v) for k, v in fresh.items()}
    expr, rot, v0, project = sample_projector(LandmarkHead(builtin, response=table), s)
    det = torch.as_tensor(s["detections"], dtype=torch.float32)
    idx = torch.arange(len(det))
    with torch.no_grad():
        err_table = (project(idx, v0) - det).norm(dim=-1).mean(1)
        err_corr = (project(idx, v0 + shipped["correction"](expr, rot)) - det).norm(dim=-1).mean(1)
    msg = f"mean px table {float(err_table.mean()):.2f} -> corrected {float(err_corr.mean()):.2f}"
    print(msg)
    # Measured on these renders: see the print; asserted with a margin (MediaPipe is not bit-reproducible).
    assert err_corr.mean() < 0.8 * err_table.mean(), msg
    assert (err_corr < err_table).float().mean() > 0.75, msg
