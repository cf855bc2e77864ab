"""Landmark error and jitter measures used by the tracker, its tests and benchmarks."""

from __future__ import annotations

import numpy as np

from ..capture.landmarks import interocular

__all__ = ["landmark_errors", "nme", "jitter", "similarity_align", "rms_after_similarity"]


def landmark_errors(fitted: np.ndarray, detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean landmark distance, in pixels and divided by the detection's inter-ocular distance.

    Args:
        fitted, detected: (N, P, ≥2) pixel landmarks (MediaPipe order, P = 478).
    Returns:
        (N,) pixel errors and (N,) normalised errors (NME).
    """
    d = np.linalg.norm(np.asarray(fitted)[..., :2] - np.asarray(detected)[..., :2], axis=-1).mean(-1)
    return d, d / np.maximum(interocular(np.asarray(detected)), 1e-6)


def nme(fitted: np.ndarray, detected: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean NME over (valid) frames: mean fitted-vs-detected distance / inter-ocular distance."""
    _, n = landmark_errors(fitted, detected)
    if valid is not None:
        n = n[np.asarray(valid, bool)]
    return float(n.mean()) if len(n) else float("nan")


def jitter(points: np.ndarray) -> float:
    """Mean acceleration magnitude |p[t+1] - 2 p[t] + p[t-1]| of (N, P, D) tracks (their units / frame²).

    0 for fewer than three frames."""
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        return 0.0
    return float(np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=-1).mean())


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama: the (P, 3) ``src`` after the scale + rotation + translation best matching ``dst``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (a ** 2).sum(1).mean()
    return s * a @ R.T + mu_d


def rms_after_similarity(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS distance between (P, 3) point sets after similarity-aligning ``src`` to ``dst``."""
    return float(np.sqrt(((similarity_align(src, dst) - dst) ** 2).sum(1).mean()))
