"""Signed-distance primitives (NumPy, vectorised over points) used to sculpt the built-in head.

All functions take points ``p`` of shape (N, 3) in metres and return (N,) signed distances
(negative inside). The ellipsoid distance is the usual first-order approximation, which is
exact on the surface and good enough for locating it by bisection.
"""

from __future__ import annotations

import numpy as np


def _len(q: np.ndarray) -> np.ndarray:
    """Row norms of (N, 3); einsum is several times faster than np.linalg.norm here."""
    return np.sqrt(np.einsum("ij,ij->i", q, q))


def sphere(p: np.ndarray, c, r: float) -> np.ndarray:
    return _len(p - np.asarray(c, float)) - r


def ellipsoid(p: np.ndarray, c, radii) -> np.ndarray:
    q = (p - np.asarray(c, float)) / np.asarray(radii, float)
    k0 = _len(q)
    k1 = _len(q / np.asarray(radii, float))
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def capsule(p: np.ndarray, a, b, ra: float, rb: float | None = None, scale=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Segment a-b swept by a radius going linearly from ra to rb; ``scale`` squashes the cross-section."""
    s = np.asarray(scale, float)
    a = np.asarray(a, float) / s
    b = np.asarray(b, float) / s
    q = p / s
    ab = b - a
    h = np.clip(((q - a) @ ab) / (ab @ ab), 0.0, 1.0)
    r = ra if rb is None else ra + (rb - ra) * h
    return (_len(q - (a + h[:, None] * ab)) - r) * s.min()


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth union (blend width k metres)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth intersection; ``smax(d, -s, k)`` carves s out of d with a rounded edge."""
    return -smin(-a, -b, k)
