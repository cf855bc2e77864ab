"""The focal length: a bracketed search that is never pinned at a limit silently (issue #17, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar3d.tracking.focal import FocalSearch, search_focal

L = 1000.0  # the image's long side, px


def _bowl(best: float, calls: list | None = None):
    """A residual with its minimum at ``best`` px, quadratic in log focal (as the short fits' residual is near its minimum)."""
    def residuals(f: np.ndarray, iters: tuple[int, int], frames: int) -> np.ndarray:
        if calls is not None:
            calls.append(len(f))
        return 0.01 + 0.004 * np.log(np.asarray(f) / best) ** 2
    return residuals


@pytest.mark.parametrize("best", [0.45 * L, 1.0 * L, 1.93 * L, 4.7 * L])
def test_search_finds_the_minimum_anywhere_in_the_bracket(best):
    calls: list = []
    est = search_focal(_bowl(best, calls), L, gauge="test")
    assert abs(est.px / best - 1) < 0.01, (est.px, best)
    assert len(est.fine) == 3 and len(est.tried) == sum(calls) - 3
    assert not est.at_bound and est.why is None and est.gauge == "test"
    # a coarse bracket of 8 (more only when the best is at its end) and three around its vertex: batched fits
    assert len(calls) >= 2 and calls[0] == 8 and calls[-1] == 3
    # What the old search did: a PnP guess capped at 4x and a refinement over 0.5-2x of it returned 2.00x exactly.
    assert not np.isclose(est.px / L, 2.0, atol=1e-3)


def test_search_extends_past_the_bracket_before_calling_a_limit():
    est = search_focal(_bowl(9.0 * L), L)  # beyond the coarse bracket (0.3-6x): found by extending it
    assert abs(est.px / (9.0 * L) - 1) < 0.01 and not est.at_bound
    est = search_focal(_bowl(0.2 * L), L)
    assert abs(est.px / (0.2 * L) - 1) < 0.01 and not est.at_bound


def test_a_residual_still_falling_at_the_limit_is_reported():
    """Orthographic-looking data (the residual keeps falling with the focal): at the limit, and said so."""
    est = search_focal(lambda f, it, n: 1.0 / np.asarray(f), L)
    hi = FocalSearch().limits[1]
    assert est.at_bound and np.isclose(est.px, hi * L)
    assert "longest" in est.why and "perspective" in est.why
    js = est.to_json()
    assert js["at_bound"] is True and js["why"] == est.why and np.isclose(js["relative_to_long_side"], hi)
    est = search_focal(lambda f, it, n: np.asarray(f, float), L)
    assert est.at_bound and "shortest" in est.why


@pytest.fixture(scope="module")
def phone_clip(tmp_path_factory, builtin):
    """Rendered truth through ``avatar3d track``: a phone's 26 mm-equivalent lens at 0.35 m (24 frames; with 16 the
    residual's minimum moved from 1.02x to 1.05x the truth: the search sees 8 frames either way, spread over less motion)."""
    from avatar3d.synthetic.video import track_ground_truth

    return track_ground_truth(tmp_path_factory.mktemp("focal_phone"), "builtin", num_frames=24)


def test_rendered_truth_focal(phone_clip):
    """Issue #17's target: within 5% of the truth, and not at a limit. Measured 1.017x (2026-12-08); 1.077x while the
    fit anchored the detector correction at the neutral face without keeping its depth (MediaPipe's flatter face,
    avatar3d.calibration.detector_response: fold_neutral_depth). The phone lens only: MediaPipe's landmarks barely
    carry perspective (module docstring of avatar3d.tracking.focal), and the detector response is calibrated at it."""
    rep, s = phone_clip["report"], phone_clip["summary"]
    ratio = rep["focal"] / rep["focal_true"]
    print(f"focal {rep['focal']:.0f} px, true {rep['focal_true']:.0f} px ({ratio:.3f}); {s['focal']}")
    assert abs(ratio - 1) < 0.05, ratio
    assert s["focal"]["at_bound"] is False and s["focal"]["why"] is None and s["focal"]["gauge"] == "builtin"
    assert np.isclose(s["focal"]["px"], s["focal_px_source"], rtol=1e-4)


def test_given_focal_is_kept(phone_clip, tmp_path):
    """``--focal-35mm``: the lens a user knows is used as given (26 mm-equivalent: the renders' lens)."""
    from avatar3d.tracking.pipeline import TrackOptions, track

    s = track(phone_clip["truth"]["path"], tmp_path / "t", TrackOptions(focal_35mm=26.0, overlay=False, progress=False,
                                                                         plausibility=False))
    assert abs(s["focal_px_source"] / phone_clip["truth"]["focal"] - 1) < 1e-3
    assert "given" in s["focal"]["why"] and s["focal"]["at_bound"] is False


@pytest.fixture(scope="module")
def d3_capture(tmp_path_factory, videos_dir):
    from avatar3d.capture.stage import run_capture

    return run_capture(videos_dir / "d3.mp4", tmp_path_factory.mktemp("focal_d3"), resolution=512, fps=10, max_frames=40,
                       progress=False)


def test_real_video_models_agree_and_no_focal_sits_at_a_limit(d3_capture, builtin, ict_archive):
    """d3: the old search returned exactly 2.00x the long side with both models (its refinement's lower bound)."""
    from avatar3d.models import load_head_model
    from avatar3d.tracking.fitting import CropCameras, fit_landmarks
    from avatar3d.tracking.pipeline import focal_gauge

    cap = d3_capture
    cams = CropCameras(cap.boxes, cap.source_size, cap.resolution)
    focals = {}
    for m in (builtin, load_head_model(f"ict={ict_archive}")):
        res = fit_landmarks(m, cap.landmarks, cap.valid, cams, progress=False, focal_model=focal_gauge(m))
        est = res.focal_estimate
        assert not est.at_bound and est.why is None, est
        tried = np.array([r for r, _ in est.tried + est.fine])
        assert tried.min() < est.px / est.long_side < tried.max()  # inside what was tried, not at an end
        focals[m.name] = res.focal
    print(focals)
    assert max(focals.values()) / min(focals.values()) < 1.15, focals
    assert not np.isclose(focals["builtin"] / max(cap.source_size), 2.0, atol=1e-3)


def test_shipped_response_keeps_mediapipes_flatter_neutral_face(builtin):
    """The offset's depth is the correction network's view of the neutral face (folded once), flatter than the mesh:
    without it the fit compared MediaPipe with a deeper face and read the focal 7.7% long (the test above)."""
    import torch

    from avatar3d.calibration.detector_response import fold_neutral_depth, neutral_depth
    from avatar3d.tracking.detector_model import load_response, response_path

    with np.load(response_path("builtin")) as z:
        assert str(z["offset_depth"]) == "correction"
    resp = load_response(builtin)
    if resp is None or "correction" not in resp:
        pytest.skip("no shipped detector response for this built-in head")
    tables = {k: resp[k].numpy() for k in ("expression", "shape", "offset")}
    with pytest.raises(ValueError, match="already"):
        fold_neutral_depth(builtin, {**tables, "correction": resp["correction"], "offset_depth": "correction"})
    folded = fold_neutral_depth(builtin, {**tables, "correction": resp["correction"]})
    depth = neutral_depth(builtin, resp["correction"])
    np.testing.assert_allclose(folded["offset"][:, :2], tables["offset"][:, :2])
    np.testing.assert_allclose(folded["offset"][:, 2] - tables["offset"][:, 2], depth, atol=1e-6)
    with torch.no_grad():
        z_mesh = builtin().landmarks[0, :, 2].numpy()
    assert np.corrcoef(z_mesh, depth)[0, 1] < -0.5  # nearer points pushed back: a flatter face
