"""The training curve of an avatar run (``train_curve.png``): loss and PSNR of the trained frames against wall time.

Each step's loss and PSNR are of its own frame(s), so they jump from frame to frame; the plot draws them faintly and
their running mean (over about a fiftieth of the run) boldly. Matplotlib's Agg canvas draws it without a display
and without pyplot's global state; the PNG is written atomically (a viewer never sees half a file).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.atomic import atomic_path

__all__ = ["write_curve", "running_mean"]


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """(n,) mean of the last ``window`` finite values at each point (NaN where none); ``values`` (n,)."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    k = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(1, len(v) + 1)
    lo = np.maximum(i - max(1, window), 0)
    n = k[i] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (c[i] - c[lo]) / np.maximum(n, 1), np.nan)


def write_curve(history: Sequence[dict[str, float]], path: str | Path, title: str = "avatar training") -> Path:
    """Draw ``history`` (rows with ``seconds``, ``loss``, ``psnr``, ``gaussians``; :class:`~.train.TrainResult`'s)
    into the PNG ``path``: loss (log scale, left) and PSNR (dB, right) against wall minutes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    minutes = np.array([h.get("seconds", 0.0) for h in history], np.float64) / 60.0
    loss = np.array([h["loss"] for h in history], np.float64)
    psnr = np.array([h["psnr"] for h in history], np.float64)
    window = max(1, len(history) // 50)
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax2 = ax.twinx()
    if len(history):
        ax.plot(minutes, loss, color="tab:blue", alpha=0.25, linewidth=0.6)
        ax.plot(minutes, running_mean(loss, window), color="tab:blue", linewidth=1.6, label="loss")
        ax2.plot(minutes, psnr, color="tab:red", alpha=0.25, linewidth=0.6)
        ax2.plot(minutes, running_mean(psnr, window), color="tab:red", linewidth=1.6, label="PSNR")
        if np.isfinite(loss).any() and np.nanmin(loss) > 0:
            ax.set_yscale("log")
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("loss", color="tab:blue")
    ax2.set_ylabel("PSNR of the step's frames (dB)", color="tab:red")
    ax.grid(True, alpha=0.3)
    fig.suptitle(_title(title, history))
    fig.subplots_adjust(left=0.12, right=0.9, bottom=0.12, top=0.9)  # fixed margins: tight_layout costs half a second
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _title(title: str, history: Sequence[dict[str, float]]) -> str:
    if not history:
        return f"{title}: no steps yet"
    last = history[-1]
    psnr = [h["psnr"] for h in history[-50:] if math.isfinite(h["psnr"])]
    tail = f", PSNR {np.mean(psnr):.2f} dB (last {len(psnr)} steps)" if psnr else ""
    return f"{title}: {int(last['step'])} steps, {last.get('seconds', 0.0) / 60:.1f} min, {int(last['gaussians'])} Gaussians{tail}"
