"""Is the tracked face one the head model can describe? Warnings for non-human or implausible faces.

A low landmark error does not mean a human face was tracked: MediaPipe puts a human face mesh on
whatever it accepts as a face (a monkey, a dog, a drawing), and a human head then fits those points
with NME under 4%. The checks here look at what the fit and the detector say beyond that error:

* **identity**: the fitted identity coefficients in units of the model's prior (``shape_std``). Real
  people on the shared videos: RMS 0.45-0.70 (built-in head) and 0.64-1.47 (ICT); an identity far
  outside the prior means the model had to bend into a shape people do not have (a long snout, a
  stretched or squashed face, a caricature);
* **detector confidence**: MediaPipe's short-range face detector's score on a few of the crops (the
  face mesh itself reports no score). Human faces on the shared videos score 0.9 or more;
* **landmark error**: NME above 4% (the tracker's target) means the model could not follow the points.

Measured (tests/test_tracking_plausible.py, scikit-image's public-domain photos): the astronaut photo
passes (identity 0.86 / 0.75 std with the built-in head / ICT, detector 0.94, NME 2.0 / 1.4%); the same
photo stretched 2.5x sideways warns with both models (detector 0.68, built-in identity 1.6 std, NME 4.5%).

What it cannot catch: a face within the spread of people, e.g. the photo stretched 1.8x sideways (detector
0.85, identity 1.3 std, NME 3.4%: no warning); an animal or a drawing with human proportions that the
detector is sure of (a realistic mask or statue is, for the model, a human face); and whatever MediaPipe
does not detect at all never reaches this check (scikit-image's cat: the capture stage stops with "no
face found in any of the 1 frame(s)").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

__all__ = ["Plausibility", "check_plausibility", "detector_score", "IDENTITY_LIMIT", "DETECTOR_LIMIT", "NME_LIMIT"]

#: RMS identity (units of the prior's std) above which the face is called implausible, per model (default: "*").
#: Measured on the six shared videos: at most 0.70 with the built-in head and 1.47 with ICT (d12).
IDENTITY_LIMIT: dict[str, float] = {"builtin": 1.5, "*": 2.5}
#: Median face-detector score below which the detector is called unsure (human faces on the shared videos: median
#: 0.90-0.95 over their crops, no crop under 0.85; the astronaut photo 0.94).
DETECTOR_LIMIT = 0.8
#: Landmark NME (of the inter-ocular distance) above which the fit is called poor (the tracker's target).
NME_LIMIT = 0.04


@dataclass
class Plausibility:
    """What :func:`check_plausibility` measured, and its warnings (one sentence each)."""

    identity_rms_sigma: float  #: RMS of the identity coefficients / their prior std
    identity_limit: float
    detector_score: Optional[float]  #: median short-range detector score on sampled crops (None: not measured)
    nme: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"identity_rms_sigma": self.identity_rms_sigma, "identity_limit": self.identity_limit,
                "detector_score": self.detector_score, "detector_limit": DETECTOR_LIMIT, "nme": self.nme, "nme_limit": NME_LIMIT,
                "plausible": not self.warnings}


def detector_score(images: Iterable[np.ndarray]) -> Optional[float]:
    """Median score of MediaPipe's short-range face detector over RGB uint8 (H, W, 3) face crops (0 where it finds none).

    None when no image is given. The crops are close-ups, the detector's short-range model's setting."""
    import mediapipe as mp

    scores = []
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.05) as det:
        for im in images:
            found = det.process(np.ascontiguousarray(im)).detections or []
            scores.append(max((d.score[0] for d in found), default=0.0))
    return float(np.median(scores)) if scores else None


def check_plausibility(model, shape: np.ndarray, nme: float, score: Optional[float] = None) -> Plausibility:
    """Warnings for a face the head model cannot stand for (module docstring).

    Args:
        model: the fitted :class:`~avatar3d.models.base.HeadModel` (its ``name`` and ``shape_std``).
        shape: (S,) fitted identity coefficients. nme: mean landmark NME of the fit.
        score: :func:`detector_score` of the crops (None: not checked).
    """
    std = np.asarray(model.shape_std, np.float64).reshape(-1)
    z = np.asarray(shape, np.float64).reshape(-1) / np.maximum(std[: len(np.ravel(shape))], 1e-12)
    rms = float(np.sqrt((z**2).mean())) if len(z) else 0.0
    limit = IDENTITY_LIMIT.get(model.name, IDENTITY_LIMIT["*"])
    p = Plausibility(identity_rms_sigma=rms, identity_limit=limit, detector_score=score, nme=float(nme))
    if rms > limit:
        p.warnings.append(f"the face may not be a human face the {model.name} head can describe: its fitted identity lies "
                          f"{rms:.1f} standard deviations (RMS) from the average face, where people measure under {limit:.1f}; "
                          f"the tracked head, and anything built on it, may not look like the input")
    if score is not None and score < DETECTOR_LIMIT:
        p.warnings.append(f"the face detector is unsure this is a human face (score {score:.2f}, human faces score "
                          f"{DETECTOR_LIMIT:.2f} or more); check overlay.mp4 before building on this tracking")
    if nme > NME_LIMIT:
        p.warnings.append(f"the {model.name} head follows the detected landmarks poorly (NME {nme:.1%} of the inter-ocular distance, "
                          f"target {NME_LIMIT:.0%}); the face may be unusual, occluded or poorly detected")
    return p
