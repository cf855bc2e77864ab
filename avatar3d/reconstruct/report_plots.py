"""The report's charts (:mod:`.report`), drawn with matplotlib's Agg canvas into PNG bytes.

Each function takes plain arrays read from a run directory and returns the PNG's bytes, ready for a data URI.
No pyplot (its global state is not thread-safe and wants a display); fixed margins instead of ``tight_layout``
(which costs about half a second a figure). The figures are 8 inches wide at 100 dpi: sharp at the report's
column width and some 30-60 kB each.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np

from ..avatar.plot import running_mean

__all__ = ["nme_plot", "training_plot", "heldout_plot", "figure_png"]

_BLUE, _RED, _GREY, _GREEN = "#2563eb", "#dc2626", "#6b7280", "#059669"


def _figure(height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style(ax) -> None:
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend(ax) -> None:
    """A one-row legend above the axes, where it never covers a curve."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False, fontsize=9, borderaxespad=0.2)


def figure_png(fig) -> bytes:
    """The figure's PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def nme_plot(nme: np.ndarray, valid: np.ndarray, fps: Optional[float] = None) -> bytes:
    """Landmark error over the video.

    Args:
        nme: (N,) per-frame normalised mean error (landmark distance / inter-ocular distance, unitless).
        valid: (N,) bool, the face detector found the frame's landmarks (others are marked on the axis).
        fps: frames per second of the tracked frames; the x axis is then seconds, else the frame number.
    """
    nme = np.asarray(nme, np.float64)
    valid = np.asarray(valid, bool)
    x = np.arange(len(nme), dtype=np.float64) / fps if fps else np.arange(len(nme), dtype=np.float64)
    fig = _figure(3.0)
    ax = fig.add_subplot(1, 1, 1)
    y = np.where(valid, nme, np.nan) * 100  # per cent of the inter-ocular distance reads better than 0.016
    ax.plot(x, y, color=_BLUE, linewidth=1.4, label="NME per frame")
    if np.isfinite(y).any():
        ax.axhline(float(np.nanmean(y)), color=_GREY, linestyle="--", linewidth=1, label=f"mean {np.nanmean(y):.2f} %")
        ax.set_ylim(0, max(1e-3, float(np.nanmax(y))) * 1.15)
    if (~valid).any():
        ax.plot(x[~valid], np.zeros(int((~valid).sum())), "x", color=_RED, markersize=7, clip_on=False, label="no detection")
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.set_ylabel("NME (% inter-ocular)")
    _legend(ax)
    _style(ax)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.88)
    return figure_png(fig)


def training_plot(seconds: np.ndarray, loss: np.ndarray, psnr: np.ndarray) -> bytes:
    """Training loss (log scale) and PSNR (dB) of the trained frames against wall minutes, side by side.

    Args:
        seconds, loss, psnr: (n,) per logged step: wall time since training began (s), the step's loss, the PSNR
            of the step's frames. Steps jump from frame to frame, so the raw values are drawn faintly and their
            running mean (over a fiftieth of the run) boldly.
    """
    minutes = np.asarray(seconds, np.float64) / 60.0
    window = max(1, len(minutes) // 50)
    fig = _figure(3.2)
    for i, (vals, colour, label) in enumerate(((loss, _BLUE, "loss"), (psnr, _RED, "PSNR (dB)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        v = np.asarray(vals, np.float64)
        ax.plot(minutes, v, color=colour, alpha=0.25, linewidth=0.6)
        ax.plot(minutes, running_mean(v, window), color=colour, linewidth=1.8)
        ok = v[np.isfinite(v)]
        if label == "loss" and ok.size and ok.min() > 0 and ok.max() > 10 * ok.min():  # log only over a decade and more
            ax.set_yscale("log")
        ax.set_xlabel("wall time (minutes)")
        ax.set_title(label, fontsize=11, loc="left")
        _style(ax)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.9, wspace=0.28)
    return figure_png(fig)


def heldout_plot(avatar_psnr: Sequence[Optional[float]], baseline_psnr: Optional[Sequence[Optional[float]]],
                 labels: Sequence[str]) -> bytes:
    """PSNR (dB) of each held-out frame, the avatar's beside the textured-mesh baseline's (None: no value)."""
    f = lambda s: np.asarray([np.nan if v is None else v for v in s], np.float64)  # noqa: E731
    a = f(avatar_psnr)
    x = np.arange(len(a))
    fig = _figure(2.8)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, a, "o-", color=_GREEN, linewidth=1.4, markersize=3, label="avatar")
    if baseline_psnr is not None:
        ax.plot(x, f(baseline_psnr), "s-", color=_GREY, linewidth=1.2, markersize=3, label="textured-mesh baseline")
    step = max(1, len(x) // 10)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(s) for s in list(labels)[::step]], fontsize=8)
    ax.set_xlabel("held-out frame")
    ax.set_ylabel("PSNR (dB)")
    _legend(ax)
    _style(ax)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.19, top=0.87)
    return figure_png(fig)
