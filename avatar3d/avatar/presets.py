"""Training presets of ``avatar3d avatar train --preset``: plain data, each sized to a wall-time budget on two CPU cores.

==========  ==========  ==========  ===============  =========================================================
preset      resolution  iterations  Gaussians (max)  budget: a 300-frame video (255 training frames), 2 cores
==========  ==========  ==========  ===============  =========================================================
``quick``   256^2       1200        32k              5 minutes
``default`` 512^2       3600        50k              30 minutes
==========  ==========  ==========  ===============  =========================================================

What they are based on (d3_builtin_10fps_90, a real tracked clip: 90 frames, 60 for training; this machine, 2 cores
shared with other jobs, load average 8-14; ``nice``, one torch thread, so that the process's CPU seconds measure
the work rather than the contention; 26k Gaussians is the built-in head's initialisation, 52k all of them doubled):

=================================  ============  ============
CPU seconds per step, 1 thread     26k           52k
=================================  ============  ============
256^2                              0.175         0.277
512^2                              0.309         0.476
=================================  ============  ============

i.e. about 0.073 s + 3.9 us per Gaussian at 256^2 and 0.142 s + 6.4 us per Gaussian at 512^2 (one step: one frame
rendered, its loss and gradients, Adam, densification's bookkeeping; it does not depend on the number of frames).
Reading and projecting the frames before the first step took 1.3-1.8 s + 3-4.5 s for 60 frames (256^2 and 512^2):
about 30 s for 255 frames at 256^2 and 60 s at 512^2. A whole ``--preset quick`` run at 1400 steps on that clip
took 310 CPU seconds (304 user + 6.5 system; 11.4 minutes of wall time at load 11; training PSNR 10.5 dB at the
first step, 27.8 dB over the last 50; 32k Gaussians from step 281 on): 0.22 s a step. Hence the iteration counts,
sized so that even **one** core's CPU time fits the budget (two idle cores do better; the issue measured ~0.15 s a
step at 512^2 and 26k Gaussians on a quiet moment of this machine):

* quick: 1200 x ~0.20 s (~31k Gaussians on average) + ~30 s to read 255 frames = ~4.5 minutes;
* default: 3600 x ~0.43 s (~45k on average) + ~60 s = ~27 minutes.

Measured again once the silhouette cover (hair and neck Gaussians, :mod:`.coverage`) joined the initialisation (load
average 7): 26.6k Gaussians at the start at 256^2, 0.152 CPU seconds a step; 28.5k at 512^2, 0.292 s. A whole
``--preset quick`` run (1200 steps) on the 60 training frames of that clip then took 247 CPU seconds (246 user +
0.8 system; 7.8 minutes of wall time at load 6-7; 32k Gaussians from the first refinements on; training PSNR 28.2 dB
over the last 50 steps; ``avatar3d avatar eval``: held-out PSNR 22.7 dB, SSIM 0.873, face 28.4 dB at 256^2), i.e.
about 4.4 minutes of one core with the 255 frames of a 300-frame video.

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
    Preset("quick", resolution=256, iterations=1200, max_gaussians=32_000, minutes=5),
    Preset("default", resolution=512, iterations=3600, max_gaussians=50_000, minutes=30),
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
    model = AvatarOptions().densify  # the model's thresholds (None: it trains without densification)
    densify = densify_schedule(p, n, base=model) if model is not None else None
    return AvatarOptions(resolution=res, iterations=n, densify=densify, preset=p.name, **run)


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
