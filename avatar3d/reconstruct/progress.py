"""One progress display for a whole reconstruct run: a line as each stage starts (stage k of n, its estimate, the time
left for the run) and as it ends; the stages' own bars (tracking, maps, training steps) show progress inside a stage.

The estimates (:func:`stage_estimates`) are seconds on two idle CPU cores, linear in what each stage does (frames,
texels, training steps, rendered frames). Once stages have run, the remaining ones are scaled by how fast this machine
was so far (measured seconds over estimated seconds of the stages run in this call), so the time left follows the machine.

Cost model (seconds on two idle cores): the demo clip under ``--preset quick`` (120 frames of 512 px video; 512 px
crops and maps, 1200 relightable steps at 256 px) measured in CPU seconds of one thread (``OMP_NUM_THREADS=1``, on a
machine shared with other jobs, load 6-11, so wall times were 2-3x longer), divided by 1.4 for two cores:

==========  ===============  =====================================================
stage       CPU s, 1 thread  constants below
==========  ===============  =====================================================
track       15.5             2 s + 0.08 s a frame at 512 px
appearance  43.1             8 s + 0.75 s a frame per megatexel (at least 1/16)
avatar      310.1            10 s + 0.1 s a training frame + 0.18 s a step (256 px,
                             relightable; half that for the plain colour avatar)
eval        15.0             3 s + 0.3 s a held-out frame at 256 px
export      6.2              5 s
previews    9.7              5 s + 0.02 s a rendered frame at 256 px
report      1.3              2 s
==========  ===============  =====================================================
"""

from __future__ import annotations

import sys
import time
from typing import Optional

from .settings import Plan

__all__ = ["RunProgress", "stage_estimates"]

# Seconds per unit on two idle cores (see the module docstring).
TRACK_FIXED_S, TRACK_PER_FRAME_S, PHOTOMETRIC_PER_FRAME_S = 2.0, 0.04, 0.4
APPEARANCE_FIXED_S, APPEARANCE_PER_FRAME_MEGATEXEL_S = 8.0, 0.75
AVATAR_FIXED_S, AVATAR_PER_FRAME_S = 10.0, 0.1
AVATAR_STEP_S = {256: 0.09, 512: 0.17}  #: per step of the plain colour avatar at this width (about 30k Gaussians)
RELIGHTABLE_STEP_FACTOR = 2.0  #: measured 0.28 against 0.14 CPU seconds a step (256 px, one thread)
EVAL_PER_FRAME_S = 0.3
EXPORT_S = 5.0
RENDER_PER_FRAME_S = 0.02  #: a preview frame at 256 px (scales with its pixel count)
REPORT_S = 2.0


def _step_seconds(width: int) -> float:
    lo, hi = AVATAR_STEP_S[256], AVATAR_STEP_S[512]
    return lo + (hi - lo) * (width - 256) / 256.0


def stage_estimates(plan: Plan, frames: int, iterations: int, avatar_width: int, relightable: bool = False) -> dict[str, float]:
    """Estimated seconds of each stage for a video of ``frames`` tracked frames (two idle cores)."""
    from ..data.split import holdout_count

    held = holdout_count(frames)
    texels = (plan.appearance_resolution / 1024.0) ** 2
    previews = held + 3 * plan.turntable_frames + 8
    return {
        "track": TRACK_FIXED_S + frames * (TRACK_PER_FRAME_S * (plan.track_resolution / 512.0) ** 2 + TRACK_PER_FRAME_S
                                           + (PHOTOMETRIC_PER_FRAME_S if plan.photometric else 0.0)),
        "appearance": APPEARANCE_FIXED_S + frames * APPEARANCE_PER_FRAME_MEGATEXEL_S * max(texels, 0.0625),
        "avatar": AVATAR_FIXED_S + (frames - held) * AVATAR_PER_FRAME_S
        + iterations * _step_seconds(avatar_width) * (RELIGHTABLE_STEP_FACTOR if relightable else 1.0),
        "eval": 3.0 + held * EVAL_PER_FRAME_S * (avatar_width / 256.0) ** 2,
        "export": EXPORT_S,
        "previews": 5.0 + previews * RENDER_PER_FRAME_S * (plan.preview_width / 256.0) ** 2,
        "report": REPORT_S,
    }


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"


class RunProgress:
    """Stage lines with the time left (``enabled=False``: silent). ``estimates``: seconds per stage, in run order."""

    def __init__(self, estimates: dict[str, float], enabled: bool = True, stream=None):
        self.estimates, self.enabled = dict(estimates), enabled
        self.stream = stream if stream is not None else sys.stderr
        self.names = list(estimates)
        self.t0 = time.perf_counter()
        self._measured, self._estimated = 0.0, 0.0
        self._finished: set[str] = set()

    def _speed(self) -> float:
        """Measured over estimated seconds so far (1 before anything ran); clamped so one odd stage cannot swing it wildly."""
        if self._estimated < 1.0:
            return 1.0
        return min(4.0, max(0.25, self._measured / self._estimated))

    def left(self, current: Optional[str] = None) -> float:
        """Estimated seconds left: the stages not finished (``current`` included), scaled by :meth:`_speed`."""
        return self._speed() * sum(v for k, v in self.estimates.items() if k not in self._finished)

    def _say(self, text: str) -> None:
        if self.enabled:
            from tqdm import tqdm

            tqdm.write(text, file=self.stream)

    def begin(self, name: str) -> None:
        k = self.names.index(name) + 1
        elapsed = time.perf_counter() - self.t0
        self._say(f"[{k}/{len(self.names)}] {name}: about {_clock(self._speed() * self.estimates[name])} "
                  f"(elapsed {_clock(elapsed)}, about {_clock(self.left(name))} left in all)")

    def reused(self, name: str) -> None:
        k = self.names.index(name) + 1
        self._finished.add(name)
        self._say(f"[{k}/{len(self.names)}] {name}: done in an earlier run, reused")

    def end(self, name: str, seconds: float, note: str = "") -> None:
        self._finished.add(name)
        self._measured += seconds
        self._estimated += self.estimates[name]
        self._say(f"      {name} finished in {_clock(seconds)}{': ' + note if note else ''}")
