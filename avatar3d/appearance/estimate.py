"""The appearance stage's library entry: a tracked video in, :class:`~.maps.AppearanceMaps` out.

:func:`estimate_appearance` chains the steps (each in its own module): multi-frame fusion of albedo and
one SH light (:mod:`.fusion`); reflectance (specular, roughness) and detail (normal, displacement) where
estimated, skin priors (:meth:`.maps.AppearanceMaps.priors`) elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..data.frames import TrackedFrames
from ..models.base import HeadModel
from .fusion import FusionOptions, fuse_appearance
from .maps import AppearanceMaps

__all__ = ["AppearanceOptions", "estimate_appearance"]


@dataclass(frozen=True)
class AppearanceOptions:
    """Settings of :func:`estimate_appearance`: ``resolution`` texels per side of the output maps; ``fusion`` the
    albedo/light fusion's settings (its own ``resolution`` is replaced by ``resolution``)."""

    resolution: int = 1024
    fusion: FusionOptions = field(default_factory=FusionOptions)


def estimate_appearance(frames: TrackedFrames, model: Optional[HeadModel] = None,
                        options: AppearanceOptions = AppearanceOptions()) -> AppearanceMaps:
    """PBR maps and the capture light of a tracking directory.

    Args:
        frames: ``TrackedFrames(track_dir)``.
        model: its head model (None: loaded from ``frames.sequence.model``).
        options: :class:`AppearanceOptions`.
    Raises:
        BadInputError: no valid frame, a frame without image or mask, a model without UVs.
    """
    if model is None:
        from ..models import load_head_model

        model = load_head_model(frames.sequence.model)
    from dataclasses import replace

    res = fuse_appearance(frames, model, replace(options.fusion, resolution=options.resolution))
    return AppearanceMaps.priors(
        albedo=res.albedo.numpy(), coverage=res.coverage.numpy(), sh=res.lighting.numpy(), model=frames.sequence.model,
        exposure=res.exposure.numpy(), frame_names=[frames.name(i) for i in range(len(frames))],
        stats={"residual": float(res.residual), "observed_fraction": float(np.mean(res.observed.numpy()[res.charts.numpy()]))},
    )
