"""Rendered ground truth through the whole tracker (issue #4, "synthetic ground truth").

A phone-like clip of the textured built-in head (portrait 360x640, 26 mm-equivalent lens, SH
lighting, room background, sensor noise, H.264) is rendered through 24 frames of known identity,
expressions and head motion, then tracked by exactly what ``avatar3d track`` runs (video decode,
MediaPipe in video mode, crop, segmentation, landmark fitting with the focal length estimated).

Two of the six animated expressions are not asserted at 0.9, on purpose and with the reason
measured in ``benchmarks/bench_tracking.py`` (rendered counterfactual pairs through MediaPipe):
``mouthSmileLeft`` peaks while the head is turned 14 degrees away from that mouth corner, where
MediaPipe reports only ~0.2 of its landmark motion; ``browInnerUp`` moves MediaPipe's brow points by
only ~0.2-0.4 of the true motion at any pose, below the pose-dependent disagreement between the
detector and the embedding (~3% of the inter-ocular distance). Landmarks alone cannot recover them
here; the test checks that they are at least not mistaken for large spurious values.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar3d.tracking.metrics import jitter

#: Expressions the detections carry well enough for correlation >= 0.9 (see the module docstring).
VISIBLE = ("jawOpen", "mouthSmileRight", "mouthPucker", "eyeBlinkLeft")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    from avatar3d.models import load_head_model

    m = load_head_model("builtin")
    if not m.has_landmarks:
        pytest.skip("built-in head model has no 478-point landmark embedding")
    from avatar3d.tracking.synthetic_video import track_ground_truth

    return track_ground_truth(tmp_path_factory.mktemp("synthetic_gt"), "builtin", num_frames=24, overlay=True)


def test_face_vertices_within_2mm(tracked, out_dir):
    rep = tracked["report"]
    rms = rep["rms_mm"]
    msg = f"face RMS {rep['rms_all_mm']:.2f} mm over all frames, worst frame {rep['worst_frame']} at {rms.max():.2f} mm, per frame {np.round(rms, 2)}"
    print(msg)
    assert tracked["summary"]["failures"] == 0
    assert rep["rms_all_mm"] < 2.0, msg
    assert rms.max() < 4.0, msg  # the open-jaw frames: MediaPipe reports only part of the opening
    assert rep["identity_rms_mm"] < 1.5, f"identity {rep['identity_rms_mm']:.2f} mm"
    # Keep the worst frame and a neutral one to look at (fitted mesh over the rendered crop).
    import av
    import cv2

    with av.open(str(tracked["truth"]["path"].parent.parent / "track" / "overlay.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    calm = int(np.argmin(rms))
    cv2.imwrite(str(out_dir / "synthetic_gt_worst_and_best.png"), np.concatenate([frames[rep["worst_frame"]], frames[calm]], 1)[..., ::-1])


def test_expression_correlations(tracked):
    corr = tracked["report"]["corr"]
    print({k: round(v, 3) for k, v in corr.items()})
    low = {k: round(corr[k], 3) for k in VISIBLE if not corr[k] >= 0.9}
    assert not low, f"expression correlation below 0.9: {low} (all: {corr})"
    seq, truth = tracked["sequence"], tracked["truth"]
    names = seq.expression_names
    for k in set(corr) - set(VISIBLE):  # see the module docstring: not recoverable from landmarks here
        e = names.index(k)
        assert np.abs(seq.expression[:, e]).max() < 1.0 + 1e-6 and np.isfinite(corr[k])
    # Recovered amplitudes are in the right range, not just correlated (jawOpen excluded: the jaw
    # joint's rotation opens the mouth too, and the fit splits the opening between the two).
    for k in VISIBLE[1:]:
        e = names.index(k)
        peak = int(np.argmax(truth["expression"][:, e]))
        assert 0.2 < seq.expression[peak, e] <= 1.0, f"{k}: {seq.expression[peak, e]:.2f} at its peak (true 0.8)"


def test_focal_and_stability(tracked):
    rep, s = tracked["report"], tracked["summary"]
    ratio = rep["focal"] / rep["focal_true"]
    print(f"focal {rep['focal']:.0f} px vs true {rep['focal_true']:.0f} px; jitter fitted {s['jitter_fitted_px']:.2f} vs detected {s['jitter_detected_px']:.2f}")
    # Perspective from 2D landmarks is weak: MediaPipe's points look flatter than the true head, which
    # biases the focal long; the similarity-aligned vertex error above is what it costs.
    assert 0.7 < ratio < 1.6, ratio
    assert s["jitter_fitted_px"] < s["jitter_detected_px"]
    assert s["nme_mean"] < 0.04
    # The truth is smooth: the fit's landmarks must not jitter more than the true motion plus a margin.
    assert jitter(np.load(tracked["truth"]["path"].parent.parent / "track" / "fitted_landmarks.npy")) < s["jitter_detected_px"]
