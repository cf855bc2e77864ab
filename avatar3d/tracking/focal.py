"""The source camera's focal length from landmark detections: a bracketed search over short non-rigid fits.

A face seen by one camera fixes its focal length only through perspective: the nearer parts (nose tip)
grow relative to the farther ones (ears, jaw) as the lens gets wider and the head nearer. A rigid PnP
of the mean head mistakes an identity's or an expression's proportions for perspective, so each
candidate focal is scored by the landmark residual of a short fit of identity, expression and pose
on a few frames spread over the video (:func:`~avatar3d.tracking.fitting.fit_landmarks` passes that
scoring function in). The residual is a smooth, single-minimum function of log focal on the shared
videos, flat near a near-orthographic view (a distant face, a long lens).

Search (:func:`search_focal`), in units of the image's long side L (L is a 50 mm-equivalent lens):

1. a coarse log-spaced bracket (:attr:`FocalSearch.coarse`, 0.3-6 L), all candidates in one batched fit;
2. while the best candidate is at an end of what was tried, more candidates beyond it, up to the
   hard limits (:attr:`FocalSearch.limits`, 0.12-16 L: a 6 mm and a 800 mm equivalent lens);
3. three candidates closely around the parabola vertex of the best and its neighbours, fitted on more
   frames (one or two more beyond them while their best is at an end), then the vertex of the parabola
   through the best of those and its two neighbours.

The result sits at a limit only when the residual still falls there (``at_bound`` then says so, with
``why``): the data, not the search, put it there.

Why this replaced a PnP guess refined over 0.5-2x of it: the guess, bounded at 4 L, sat at that bound
on videos with little head motion (d3, d14), and the refinement then returned its lower bound (2.00 L
exactly) although the non-rigid residual has its minimum at ~1.9 L there.

What the estimate can and cannot know (measured 2026-12-07, rendered truth of the built-in head, 24
frames, the face the same size in the frame at every lens, i.e. the camera distance scaled with the lens):

=====================  =====  =====  =====  =====  =====
true focal / L          0.48   0.69   1.03   1.72   2.76
perfect landmarks       0.98   1.00     -    1.07   1.12   (estimate / truth; projected mesh points + 0.5 px noise)
MediaPipe, this fit     1.58   1.02   0.68   0.42   0.26   (built-in head with its detector-response table)
... 2026-12-08          1.61   1.017  0.67   0.41     -    (the same, MediaPipe's neutral depth kept; below)
MediaPipe, plain mesh   1.57   1.17   0.88   0.66   0.33   (the mesh's own landmark points)
=====================  =====  =====  =====  =====  =====

The search recovers the focal from landmarks that carry perspective, but MediaPipe's landmarks barely
do: it draws every face with about the perspective of a phone held at arm's length, so the estimate
stays at 0.70-0.76 L whatever the lens, and it is right at the phone's lens (where the built-in head's
detector-response table was measured) and wrong elsewhere. A user who knows the lens passes it
(``avatar3d track --focal-35mm``). A second identity gave the same (1.05 and 0.41 at 0.69 and 1.72 L;
1.023 at 0.69 L on 2026-12-08). Recalibrating the detector response at several lenses cannot change
this: the response is one model-space view of MediaPipe, and MediaPipe's landmarks are nearly the
same whatever the lens, so no calibration can read the lens from them; it only chooses the lens at
which the estimate is right (the phone's, where most videos come from).

What sets the estimate at the phone lens is the depth of the face the fit compares with MediaPipe:
perspective scales with depth over distance, so a model face deeper than MediaPipe's is fitted
from farther away, i.e. with a longer lens. The built-in head's response gives MediaPipe's flatter
neutral face (``avatar3d.calibration.detector_response.fold_neutral_depth``); while the fit dropped
that depth (2026-12-07, the detector correction anchored at the neutral face) the rendered truth read
1.077x, with it 1.017x (2026-12-08). Search schedule and fit priors moved it by under 0.1%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

__all__ = ["FocalSearch", "FocalEstimate", "search_focal", "assumed_focal"]

#: residuals(focals (G,) source px, (rigid, full) iterations, frames) -> (G,) landmark residual of a short fit of
#: that many frames (spread over the video) at each focal
Residuals = Callable[[np.ndarray, tuple[int, int], int], np.ndarray]


@dataclass(frozen=True)
class FocalSearch:
    """Schedule of :func:`search_focal`; focal lengths in units of the image's long side."""

    coarse: tuple[float, float, int] = (0.3, 6.0, 8)  #: first bracket: lowest, highest, candidates (log-spaced)
    limits: tuple[float, float] = (0.12, 16.0)  #: never searched beyond these
    extend: int = 2  #: candidates added per step beyond an end of the bracket
    fine_step: float = 1.1  #: ratio between the three final candidates
    #: (rigid, full) iterations of the short fits of the bracket and of the final three. Fewer in the bracket
    #: (25, 100) with 6 candidates cut the search's cost by a third but moved the built-in head's focal 10-15%
    #: longer on d0, d3, d6 and raised their NME by 0.015-0.02 points; more iterations move the minimum too
    #: (d13 built-in 0.62 L at 175, 0.72 L at 500), as the residual is flat near it.
    coarse_iters: tuple[int, int] = (35, 140)
    fine_iters: tuple[int, int] = (35, 140)
    #: frames of the bracket's short fits (it only has to find the basin) and of the final three. 4 frames in the
    #: bracket (was 8) cut the search by a third; the rendered truth stayed at 1.02x (a second identity 1.03x), the
    #: NME of the twelve video/model fits moved by -0.03 to +0.01 points
    coarse_frames: int = 4
    fine_frames: int = 8


@dataclass
class FocalEstimate:
    """A focal length and how it was found (``metrics.json`` "focal")."""

    px: float  #: source-image focal length, pixels
    long_side: float  #: the image's long side, pixels
    at_bound: bool = False  #: the residual was still falling at a search limit
    why: Optional[str] = None  #: a sentence when at_bound or when the focal was assumed, not measured
    gauge: Optional[str] = None  #: head model whose landmark residual was minimised
    tried: list = field(default_factory=list)  #: [(focal / long side, residual)] of the bracket's candidates, sorted
    fine: list = field(default_factory=list)  #: ... of the three final, longer fits (their residuals are lower)

    def to_json(self) -> dict:
        return {"px": self.px, "relative_to_long_side": self.px / self.long_side, "at_bound": self.at_bound, "why": self.why,
                "gauge": self.gauge, "tried": [[round(r, 4), float(f"{e:.6g}")] for r, e in self.tried],
                "fine": [[round(r, 4), float(f"{e:.6g}")] for r, e in self.fine]}


def assumed_focal(long_side: float, why: str, px: Optional[float] = None) -> FocalEstimate:
    """A focal length that was given or assumed rather than estimated (``why`` says which)."""
    return FocalEstimate(px=float(long_side if px is None else px), long_side=float(long_side), why=why)


def _vertex(x: np.ndarray, y: np.ndarray) -> float:
    """Abscissa of the minimum of the parabola through three points (x sorted), clipped to [x0, x2]."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    if not a > 0:  # flat or concave: no interior minimum, keep the best point
        return float(x[int(np.argmin(y))])
    return float(np.clip(-b / (2 * a), x0, x2))


class _Tried:
    """Every candidate scored so far (log focal / long side -> residual)."""

    def __init__(self, residuals: Residuals, long_side: float, frames: int):
        self.residuals, self.L, self.frames = residuals, long_side, frames
        self.x, self.y = np.zeros(0), np.zeros(0)

    def score(self, logs: np.ndarray, iters: tuple[int, int]) -> None:
        logs = np.unique(np.round(np.asarray(logs, np.float64), 6))  # candidates clipped to a limit coincide
        logs = np.asarray([v for v in logs if not np.isclose(self.x, v, atol=1e-4).any()])
        if len(logs):
            self.x = np.concatenate([self.x, logs])
            self.y = np.concatenate([self.y, np.asarray(self.residuals(self.L * np.exp(logs), iters, self.frames), np.float64)])
            order = np.argsort(self.x)
            self.x, self.y = self.x[order], self.y[order]

    def best(self) -> int:
        return int(np.argmin(self.y))

    def vertex(self) -> float:
        """Log focal at the parabola vertex of the best candidate and its neighbours (the best itself at an end)."""
        k = self.best()
        if 0 < k < len(self.x) - 1:
            return _vertex(self.x[k - 1:k + 2], self.y[k - 1:k + 2])
        return float(self.x[k])


def search_focal(residuals: Residuals, long_side: float, schedule: FocalSearch = FocalSearch(), gauge: Optional[str] = None) -> FocalEstimate:
    """Minimise ``residuals`` over log focal length (module docstring).

    Args:
        residuals: scores candidate focals (G,) in source pixels, one batched fit per call.
        long_side: the source image's long side in pixels (the unit of the schedule).
        gauge: name of the head model the residuals come from (reported only).
    Returns:
        :class:`FocalEstimate` (px, and at_bound / why when the residual still fell at a limit).
    """
    lo_lim, hi_lim = np.log(schedule.limits)
    t = _Tried(residuals, float(long_side), schedule.coarse_frames)
    lo, hi, n = schedule.coarse
    t.score(np.linspace(np.log(lo), np.log(hi), n), schedule.coarse_iters)
    step = (np.log(hi) - np.log(lo)) / max(n - 1, 1)
    while True:  # the best at an end of what was tried: look beyond it, up to the limits
        k = t.best()
        if k == 0 and t.x[0] > lo_lim + 1e-6:
            t.score(np.maximum(t.x[0] - step * np.arange(1, schedule.extend + 1), lo_lim), schedule.coarse_iters)
        elif k == len(t.x) - 1 and t.x[-1] < hi_lim - 1e-6:
            t.score(np.minimum(t.x[-1] + step * np.arange(1, schedule.extend + 1), hi_lim), schedule.coarse_iters)
        else:
            break
    k = t.best()
    at_low, at_high = k == 0, k == len(t.x) - 1
    # residuals comparable with the bracket's (same fits): pooled
    same = schedule.fine_iters == schedule.coarse_iters and schedule.fine_frames == schedule.coarse_frames
    fine = t if same else _Tried(residuals, float(long_side), schedule.fine_frames)
    x, three = t.vertex(), np.zeros(0)
    if not (at_low or at_high):
        d = np.log(schedule.fine_step)
        three = np.array([x - d, x, x + d])
        fine.score(three, schedule.fine_iters)
        for _ in range(2):  # the longer fits' best at an end of the three: one step further (twice at most)
            k = fine.best()
            if 0 < k < len(fine.x) - 1:
                break
            fine.score(np.array([fine.x[0] - d if k == 0 else fine.x[-1] + d]), schedule.fine_iters)
            three = np.append(three, fine.x[0] if k == 0 else fine.x[-1])
        x = fine.vertex()  # around the best of the longer fits (of all, when pooled)
    is_three = np.isclose(t.x[:, None], three[None], atol=1e-4).any(1) if len(three) else np.zeros(len(t.x), bool)
    bracket = [(float(np.exp(a)), float(b)) for a, b, f in zip(t.x, t.y, is_three) if not (same and f)]
    finals = [(float(np.exp(a)), float(b)) for a, b in zip(fine.x, fine.y)] if not same else \
        [(float(np.exp(a)), float(b)) for a, b, f in zip(t.x, t.y, is_three) if f]
    est = FocalEstimate(px=float(long_side * np.exp(x)), long_side=float(long_side), gauge=gauge,
                        tried=bracket, fine=finals)
    if at_low or at_high:
        est.at_bound = True
        est.why = (f"the landmark residual still fell at the {'shortest' if at_low else 'longest'} focal length tried "
                   f"({np.exp(x):.2f}x the image's long side): "
                   + ("an unusually wide lens or a face very near the camera" if at_low else
                      "the face shows too little perspective (far away, or a long lens) to fix the focal length, which is then "
                      "a lower bound; the fit is nearly orthographic"))
    return est
