"""Colour encodings: sRGB <-> linear, and the display curves that turn linear scene values into pixels.

Renderers, lighting and the fitted albedo work in *linear* RGB; images on disk and on screen are
*sRGB*-encoded. The viewer's display curve is Filament's (tone map + sRGB) as measured in Open3D,
so the interactive frames it computes itself match Filament's own.

The sRGB functions take a NumPy array (computed in float64) or a torch tensor (kept in its dtype,
differentiable) and return the same kind.
"""

from __future__ import annotations

from typing import TypeVar, Union

import numpy as np
import torch

__all__ = ["srgb_encode", "srgb_decode", "display_curve", "reinhard_gamma"]

Array = TypeVar("Array", np.ndarray, torch.Tensor)

# IEC 61966-2-1 sRGB transfer function: a linear toe below the knee, a 2.4 power above it.
_KNEE_LINEAR = 0.0031308  # linear value of the knee
_KNEE_ENCODED = 0.04045  # its encoded value (12.92 * 0.0031308)


def srgb_decode(c: Union[Array, float]) -> Array:
    """sRGB-encoded values in [0, 1] (any shape) -> linear values."""
    if isinstance(c, torch.Tensor):
        return torch.where(c <= _KNEE_ENCODED, c / 12.92, ((c.clamp(min=_KNEE_ENCODED) + 0.055) / 1.055) ** 2.4)
    c = np.asarray(c, np.float64)
    return np.where(c <= _KNEE_ENCODED, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def srgb_encode(c: Union[Array, float]) -> Array:
    """Linear values (any shape; negatives clip to 0) -> sRGB-encoded values (1 stays 1; above 1 is not clipped)."""
    if isinstance(c, torch.Tensor):
        c = c.clamp(min=0.0)
        # The clamp inside the power keeps its gradient finite at 0 (the branch is not taken there).
        return torch.where(c <= _KNEE_LINEAR, 12.92 * c, 1.055 * c.clamp(min=_KNEE_LINEAR) ** (1 / 2.4) - 0.055)
    c = np.clip(np.asarray(c, np.float64), 0.0, None)
    return np.where(c <= _KNEE_LINEAR, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)


# Filament's display transform in Open3D 0.20 (Uchimura tone mapping, high-quality colour grading,
# sRGB output) for grey input: linear scene value -> displayed value in [0, 1]. Measured by drawing
# unlit patches with post-processing on in the viewer's scene (its lights and background change the
# top end a little); tests/test_viewer_fast.py re-measures and compares.
_TONE_X = np.array([0.0, 0.0016, 0.0031, 0.0058, 0.0110, 0.0208, 0.0394, 0.0746, 0.1413, 0.2676, 0.5068, 0.9600, 1.8183, 3.4443,
                    6.5240, 12.3576])
_TONE_Y = np.array([0.0, 1.0, 3.0, 6.0, 13.0, 24.3, 43.0, 71.0, 111.7, 158.3, 199.0, 224.3, 236.0, 242.0, 244.7, 246.7]) / 255.0
_LOG_X = np.log(_TONE_X[1:])


def display_curve(x: np.ndarray) -> np.ndarray:
    """Linear scene values (any shape) -> displayed values in [0, 1] (Filament's tone map + sRGB), float32,
    applied per channel (for grey exactly what Filament does; its Rec.2020 working space shifts
    saturated colours by ~1 level, below the interactive frames' other approximations)."""
    x = np.maximum(np.asarray(x, np.float32), 0.0)
    # Interpolate in log space (the samples are log-spaced); below the first non-zero sample the
    # curve is linear from (0, y0).
    y = np.interp(np.log(np.maximum(x, 1e-6)), _LOG_X, _TONE_Y[1:]).astype(np.float32)
    low = x < _TONE_X[1]
    y[low] = _TONE_Y[0] + (_TONE_Y[1] - _TONE_Y[0]) * x[low] / _TONE_X[1]
    return y


def reinhard_gamma(x: np.ndarray) -> np.ndarray:
    """Linear HDR values >= 0 (any shape) -> [0, 1): Reinhard ``x / (1 + x)`` then a 1/2.2 display gamma.

    A quick, parameter-free look at a whole HDR image (environment-map thumbnails); not the viewer's
    calibrated :func:`display_curve`.
    """
    return (x / (1 + x)) ** (1 / 2.2)
