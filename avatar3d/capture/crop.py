"""A stable square crop around the head, smoothed over time, and failure interpolation.

The crop has one side length for the whole sequence (so the crop's focal length in pixels is
constant) and a centre that follows the face, low-pass filtered so the head does not jitter in
the crop. Crops may extend past the image border; the outside is filled with black.
"""

from __future__ import annotations

import numpy as np

__all__ = ["interpolate_invalid", "compute_crops", "apply_crop", "to_crop_coords"]


def interpolate_invalid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill frames where ``valid`` is False by linear interpolation in time (nearest at the ends).

    Args:
        values: (N, ...) per-frame array. valid: (N,) bool, at least one True.
    Returns:
        (N, ...) float array, equal to ``values`` on valid frames.
    """
    valid = np.asarray(valid, bool)
    if valid.shape != (len(values),):
        raise ValueError(f"valid must be ({len(values)},) bool, got {valid.shape}")
    if not valid.any():
        raise ValueError("interpolate_invalid needs at least one valid frame")
    out = np.array(values, dtype=np.float64, copy=True)
    if valid.all():
        return out
    idx = np.arange(len(out))
    flat = out.reshape(len(out), -1)
    for c in range(flat.shape[1]):
        flat[~valid, c] = np.interp(idx[~valid], idx[valid], flat[valid, c])
    return flat.reshape(out.shape)


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 with edge padding; x (N, D)."""
    if sigma <= 0 or len(x) < 2:
        return x.copy()
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(x, ((r, r), (0, 0)), mode="edge")
    return np.stack([np.convolve(pad[:, d], k, mode="valid") for d in range(x.shape[1])], 1)


def compute_crops(landmarks: np.ndarray, valid: np.ndarray, fps: float, scale: float = 1.9, smooth_seconds: float = 0.2) -> np.ndarray:
    """Square crop boxes (x0, y0, size) in source pixels, integers, one per frame.

    Args:
        landmarks: (N, 478, ≥2) landmarks in source pixels (invalid frames may hold anything).
        valid: (N,) bool, at least one True.
        fps: frame rate (the smoothing window is in seconds).
        scale: crop side / face-mesh box side (1.9 keeps hair, ears and chin in view).
        smooth_seconds: Gaussian sigma of the centre trajectory.
    Returns:
        (N, 3) int64 boxes; the crop of frame i is ``image[y0:y0+size, x0:x0+size]`` (padded).
    """
    pts = np.asarray(landmarks)[..., :2].astype(np.float64)
    lo, hi = pts.min(1), pts.max(1)  # (N, 2)
    center = interpolate_invalid((lo + hi) / 2, valid)
    side = interpolate_invalid((hi - lo).max(1), valid)
    # The face box is a bit above the head's centre (no hair); shift the crop up by 10% of the box.
    center[:, 1] -= 0.1 * side
    center = _gaussian_smooth(center, smooth_seconds * fps)
    # One size for the whole clip: a high percentile of valid frames, so a close-up moment fits.
    size = float(np.percentile(side[np.asarray(valid, bool)], 90)) * scale
    size = max(16, int(round(size)))
    x0 = np.round(center[:, 0] - size / 2).astype(np.int64)
    y0 = np.round(center[:, 1] - size / 2).astype(np.int64)
    return np.stack([x0, y0, np.full_like(x0, size)], 1)


def apply_crop(image: np.ndarray, box: np.ndarray, resolution: int) -> np.ndarray:
    """Cut the square ``box`` = (x0, y0, size) from (H, W, C) ``image`` (black outside) and resize
    to (resolution, resolution, C)."""
    import cv2

    x0, y0, s = (int(v) for v in box)
    h, w = image.shape[:2]
    out = np.zeros((s, s) + image.shape[2:], image.dtype)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    if s == resolution:
        return out
    interp = cv2.INTER_AREA if s > resolution else cv2.INTER_LINEAR
    return cv2.resize(out, (resolution, resolution), interpolation=interp)


def to_crop_coords(points: np.ndarray, boxes: np.ndarray, resolution: int) -> np.ndarray:
    """Map (N, P, 2|3) source-pixel points into crop pixels given (N, 3) boxes (z scales like x)."""
    p = np.array(points, np.float64, copy=True)
    s = resolution / boxes[:, 2].astype(np.float64)
    # Pixel centres: source pixel centre x maps to (x + 0.5 - x0) * s - 0.5 in the resized crop.
    p[..., 0] = (p[..., 0] + 0.5 - boxes[:, None, 0]) * s[:, None] - 0.5
    p[..., 1] = (p[..., 1] + 0.5 - boxes[:, None, 1]) * s[:, None] - 0.5
    if p.shape[-1] > 2:
        p[..., 2:] *= s[:, None, None]
    return p
