"""Training presets of ``avatar3d avatar train --preset``: plain data, each sized to a wall-time budget on two CPU cores.

==========  ==========  ==========  ==========  ==============================================================
preset      resolution  iterations  Gaussians   budget (a 300-frame video, 255 training frames, 2 CPU cores)
==========  ==========  ==========  ==========  ==============================================================
``quick``   256^2       QUICK_IT    QUICK_N     5 minutes
``default`` 512^2       DEFAULT_IT  DEFAULT_N   30 minutes
==========  ==========  ==========  ==========  ==============================================================

MEASUREMENTS

An explicit resolution or iteration count overrides the preset's; the densification schedule (start, stop and
period of refinement, opacity resets) is a fraction of the iteration count, so it scales with ``--iterations``.
The model's own settings (learning rates, thresholds, initialisation) are :class:`~.train.AvatarOptions`'
defaults: a preset sets only what the time budget decides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from ..errors import BadInputError

if TYPE_CHECKING:  # imported where used: the command line reads the presets without loading torch
    from .strategy import DensifyOptions
    from .train import AvatarOptions

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "densify_schedule", "preset_options", "resume_options"]


@dataclass(frozen=True)
class Preset:
    """A training preset (plain data).

    Attributes:
        name: as ``--preset`` spells it; resolution: training crops' width (pixels); iterations: optimiser steps.
        max_gaussians: densification stops growing beyond this many Gaussians (step time grows with them).
        densify_start, densify_stop: densify between these fractions of the iterations.
        densify_every: fraction of the iterations between two refinements (at least ``min_densify_every`` steps,
            so that each refinement averages gradients over many frames).
        opacity_reset_every: fraction of the iterations between opacity resets (0: never).
        minutes: the wall-time budget it is sized for (a 300-frame video on two CPU cores).
    """

    name: str
    resolution: int
    iterations: int
    max_gaussians: int
    densify_start: float = 0.1
    densify_stop: float = 0.6
    densify_every: float = 0.025
    min_densify_every: int = 25
    opacity_reset_every: float = 0.0
    minutes: float = 0.0


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", resolution=256, iterations=1500, max_gaussians=40_000, minutes=5),
    Preset("default", resolution=512, iterations=6000, max_gaussians=60_000, minutes=30),
)}
DEFAULT_PRESET = "default"


def densify_schedule(preset: Preset, iterations: int, base: Optional["DensifyOptions"] = None) -> "DensifyOptions":
    """``base`` (default: :class:`DensifyOptions`' thresholds) with the preset's schedule scaled to ``iterations`` steps."""
    from .strategy import DensifyOptions

    every = max(preset.min_densify_every, round(preset.densify_every * iterations))
    reset = round(preset.opacity_reset_every * iterations)
    return replace(base if base is not None else DensifyOptions(), refine_start=round(preset.densify_start * iterations),
                   refine_stop=round(preset.densify_stop * iterations), refine_every=every, reset_every=reset,
                   max_gaussians=preset.max_gaussians)


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BadInputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_options(name: str = DEFAULT_PRESET, resolution: Optional[int] = None, iterations: Optional[int] = None,
                   **run: Any) -> "AvatarOptions":
    """The options of preset ``name``; ``resolution`` / ``iterations`` override its own, ``run`` sets any other
    :class:`AvatarOptions` field (e.g. ``backend``, ``progress``)."""
    from .train import AvatarOptions

    p = _preset(name)
    n = int(iterations) if iterations is not None else p.iterations
    if n < 1:
        raise BadInputError(f"--iterations must be at least 1, got {n}")
    res = int(resolution) if resolution is not None else p.resolution
    return AvatarOptions(resolution=res, iterations=n, densify=densify_schedule(p, n), preset=p.name, **run)


def resume_options(previous: "AvatarOptions", preset: Optional[str] = None, resolution: Optional[int] = None,
                   iterations: Optional[int] = None, **run: Any) -> "AvatarOptions":
    """The options to continue a run that used ``previous``: the same ones (so it continues bit for bit), with a new
    iteration count where given (the preset's densification schedule rescaled to it) and ``run`` (backend, progress).

    Raises:
        BadInputError: a ``preset`` or ``resolution`` other than the run's (a run cannot change them midway).
    """
    if preset is not None and preset != previous.preset:
        raise BadInputError(f"this avatar was trained with --preset {previous.preset or '(none)'}, and --resume continues it so: "
                            f"leave out --preset {preset}, or pass --restart to train a new one")
    if resolution is not None and resolution != previous.resolution:
        raise BadInputError(f"this avatar was trained at {previous.resolution} pixels, and --resume continues it so: leave out "
                            f"--resolution {resolution}, or pass --restart to train a new one")
    options = replace(previous, **run)
    if iterations is not None and iterations != previous.iterations:
        densify = previous.densify
        if densify is not None and previous.preset in PRESETS:
            densify = densify_schedule(PRESETS[previous.preset], iterations, base=densify)
        options = replace(options, iterations=int(iterations), densify=densify)
    return options
