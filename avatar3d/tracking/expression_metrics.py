"""Are the fitted expressions plausible, not just close to the landmarks? Saturation and neutral-frame measures.

A fit can match the detected landmarks and still play back as a grimace: a coefficient held at its
bound for most of a neutral video (the resting face explained by expressions), or many coefficients
well above zero on frames where the face is at rest. :func:`expression_report` measures both for
``metrics.json`` and ``benchmarks/bench_tracking_expressions.py``.

Our capture does not store MediaPipe's blendshape scores (the face-mesh solution we run has none), so
"neutral" frames come from the detected landmarks (:func:`neutral_frames`): eyes open, lips closed,
brows and mouth corners where the video usually has them.
"""

from __future__ import annotations

import numpy as np

from ..capture.landmarks import interocular

__all__ = ["eyelid_gaps", "lip_gap", "brow_heights", "neutral_frames", "expression_report"]

#: MediaPipe face-mesh points: upper / lower lid midpoints (subject's right, left), inner lips, mid brows
LID_RIGHT, LID_LEFT = (159, 145), (386, 374)
INNER_LIPS = (13, 14)
BROW_RIGHT, BROW_LEFT = 105, 334
EYE_RIGHT, EYE_LEFT = (33, 133), (263, 362)
MOUTH_CORNERS = (61, 291)


def _dist(lm: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(lm[..., a, :2] - lm[..., b, :2], axis=-1)


def eyelid_gaps(lm: np.ndarray) -> np.ndarray:
    """(…, 2) upper-to-lower lid distance of the subject's right and left eye, in inter-ocular distances."""
    iod = np.maximum(interocular(lm), 1e-6)
    return np.stack([_dist(lm, *LID_RIGHT), _dist(lm, *LID_LEFT)], -1) / iod[..., None]


def lip_gap(lm: np.ndarray) -> np.ndarray:
    """(…,) inner-lip opening at the midline, in inter-ocular distances."""
    return _dist(lm, *INNER_LIPS) / np.maximum(interocular(lm), 1e-6)


def brow_heights(lm: np.ndarray) -> np.ndarray:
    """(…, 2) distance of the right and left mid-brow point from its eye's centre, in inter-ocular distances."""
    iod = np.maximum(interocular(lm), 1e-6)
    r = np.linalg.norm(lm[..., BROW_RIGHT, :2] - lm[..., list(EYE_RIGHT), :2].mean(-2), axis=-1)
    l_ = np.linalg.norm(lm[..., BROW_LEFT, :2] - lm[..., list(EYE_LEFT), :2].mean(-2), axis=-1)
    return np.stack([r, l_], -1) / iod[..., None]


def neutral_frames(lm: np.ndarray, valid: np.ndarray | None = None, lips_closed: float = 0.05, eyes_open: float = 0.8,
                   brows: float = 0.04, corners: float = 0.06) -> np.ndarray:
    """(N,) bool: frames whose detected landmarks (N, 478, ≥2) look like the person at rest.

    A frame is neutral when the inner lips are closed (gap < ``lips_closed`` inter-ocular distances),
    both eyes are open to at least ``eyes_open`` of the video's median lid gap, both brows are within
    ``brows`` of their median height above the eye, and the mouth width is within ``corners`` (relative)
    of its median. Medians are over the valid frames, so a person's own resting face counts, whatever
    it looks like; a video that never rests has few neutral frames, not wrong ones.
    """
    lm = np.asarray(lm, np.float64)
    ok = np.ones(len(lm), bool) if valid is None else np.asarray(valid, bool)
    if not ok.any():
        return np.zeros(len(lm), bool)
    eyes, brow = eyelid_gaps(lm), brow_heights(lm)
    width = _dist(lm, *MOUTH_CORNERS) / np.maximum(interocular(lm), 1e-6)
    med = lambda x: np.median(x[ok], 0)  # noqa: E731
    n = (lip_gap(lm) < lips_closed) & (eyes >= eyes_open * med(eyes)).all(-1)
    n &= (np.abs(brow - med(brow)) < brows).all(-1) & (np.abs(width / med(width) - 1) < corners)
    return n & ok


def expression_report(expression: np.ndarray, names: list[str], bounds: tuple[float, float], detected: np.ndarray,
                      valid: np.ndarray | None = None, high: float = 0.9, bound_tol: float = 0.02) -> dict:
    """Saturation and neutral-frame measures of fitted expressions (the ``expression_saturation`` block of metrics.json).

    Args:
        expression: (N, E) fitted coefficients. names: E expression names. bounds: the model's
            ``expression_range`` (an infinite upper bound: nothing is "at the bound").
        detected: (N, 478, ≥2) detected landmarks (for :func:`neutral_frames`). valid: (N,) frames with a detection.
        high: what counts as a large coefficient. bound_tol: within this of the upper bound counts as at it.
    Returns:
        ``frames_any_above`` (share of frames with any coefficient >= ``high``), ``threshold``,
        ``at_bound_share`` {name: share of frames at the upper bound} for coefficients that ever are,
        ``most_at_bound`` {"name", "share"}, ``any_at_bound_share``, ``neutral_frames`` (count),
        ``neutral_mean`` (mean coefficient over neutral frames and all expressions), ``neutral_max_mean``
        {"name", "value"}: the expression with the largest mean on neutral frames (None without neutral frames).
    """
    e = np.asarray(expression, np.float64)
    if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
        return {}
    ok = np.ones(len(e), bool) if valid is None else np.asarray(valid, bool)
    hi = float(bounds[1])
    at = e[ok] >= hi - bound_tol if np.isfinite(hi) else np.zeros_like(e[ok], bool)
    share = at.mean(0) if ok.any() else np.zeros(e.shape[1])
    k = int(np.argmax(share))
    neutral = neutral_frames(detected, ok)
    out = {
        "threshold": high,
        "frames_any_above": float((e[ok] >= high).any(1).mean()) if ok.any() else 0.0,
        "most_at_bound": {"name": names[k], "share": float(share[k])},
        "any_at_bound_share": float(at.any(1).mean()) if ok.any() else 0.0,
        "at_bound_share": {names[i]: float(share[i]) for i in np.flatnonzero(share > 0)},
        "neutral_frames": int(neutral.sum()),
        "neutral_mean": None,
        "neutral_max_mean": None,
    }
    if neutral.any():
        m = np.abs(e[neutral]).mean(0)
        j = int(np.argmax(m))
        out["neutral_mean"] = float(m.mean())
        out["neutral_max_mean"] = {"name": names[j], "value": float(m[j])}
    return out
