"""The Gaussian avatar on the real videos: held-out PSNR / SSIM against the issue's targets and the textured-mesh baseline.

Usage::

    python benchmarks/bench_avatar_real.py [--videos d3,d6,d12,d13,d14] [--preset default] [--iterations N]
                                           [--resolution R] [--stages 1] [--fps 10] [--out DIR]

Per video: the whole video tracked at ``--fps`` with ``--photometric`` (cached under the avatar3d cache folder,
``bench/avatar_real/<video>_builtin_<fps>fps``), an avatar trained with the preset (``--iterations`` /
``--resolution`` override it) and scored by the evaluation protocol (:func:`avatar3d.avatar.evaluate.evaluate_run`:
the last 15% of the frames, at least 30, never trained on, driven by their tracked parameters, full crop over
white). The named reference, measured in the same run on the same frames, is the **textured-mesh baseline**
(the tracked mesh with the tracking directory's best texture); the table gives the avatar's PSNR minus the
baseline's (target >= 3 dB), and the issue's targets (mean PSNR >= 30 dB, SSIM >= 0.95).

PSNR against wall time: with ``--stages S`` the run is trained in S equal stages, each resuming the last with a
larger iteration count (the schedule stretched, as ``--resume --iterations`` does), and scored after each one and
before the first step (``step 0``: the Gaussians from the UV texels, colours from the frames, the silhouette cover).

``--out`` (default ``bench_avatar_real/``) keeps each avatar directory (``<video>/``, with ``metrics.json`` and the
held-out comparison images of the last stage) and ``bench_avatar_real.json``.

Measured 2026-12-07 (Intel Xeon, 2 cores shared with other jobs, load average 4-6; ``--preset default --iterations
800``: 512^2, densification capped at 60k Gaussians, reached by step ~300; only d3 finished in the time available):

=====  =================  ====  =====  =======  ===========  =====  ======  =========  ========  ===================
video  frames / held out  res   steps  train s  PSNR step 0  PSNR   SSIM    face PSNR  baseline  avatar - baseline
=====  =================  ====  =====  =======  ===========  =====  ======  =========  ========  ===================
d3     118 / 30           512   800    1388     16.75        20.89  0.8800  24.08      11.81     +9.08 dB
d12    74 / 30            512   800    183      16.49        17.50  0.8462  23.41      9.33      +8.17 dB
=====  =================  ====  =====  =======  ===========  =====  ======  =========  ========  ===================

(d12 ran later on the otherwise idle machine, load average 0.3: hence 183 s for the same 800 steps.) The whole
``--preset default`` (3600 steps) on d12, idle machine: 765 s, held-out PSNR 17.54 dB, SSIM 0.8349, face 23.05 dB,
+8.22 dB over the baseline: more steps fit the 44 training frames better (training PSNR ~22-24 dB per step), not the
held-out ones.

Far from the issue's 30 dB: the held-out error sits on the hair's silhouette (the hair moves and the mask's edge
with it, while its Gaussians follow the nearest scalp triangle rigidly) and inside an open mouth that no training
frame showed open as wide.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.avatar.dataset import load_frames  # noqa: E402
from avatar3d.avatar.evaluate import evaluate_avatar, evaluate_run  # noqa: E402
from avatar3d.avatar.presets import preset_options, resume_options  # noqa: E402
from avatar3d.avatar.train import train_avatar  # noqa: E402
from avatar3d.data.frames import TrackedFrames  # noqa: E402
from avatar3d.paths import cache_dir, shared_data_dir  # noqa: E402

TARGET_PSNR, TARGET_SSIM, TARGET_GAIN = 30.0, 0.95, 3.0


def tracked(video: Path, fps: float) -> Path:
    """A photometric track of the whole video, cached (the tracker resumes / no-ops when it is complete)."""
    from avatar3d.tracking.pipeline import TrackOptions, track

    out = cache_dir(f"bench/avatar_real/{video.stem}_builtin_{fps:g}fps")
    if not (out / "albedo.png").is_file():
        track(video, out, TrackOptions(fps=fps, photometric=True, overlay=False, progress=False))
    return out


def step0_psnr(track_dir: Path, out: Path, options) -> float:
    """Held-out PSNR of the avatar training starts from (one step: the initial Gaussians, as good as unchanged)."""
    from dataclasses import replace

    res = train_avatar(track_dir, out.with_name(out.name + "_step0"), replace(options, iterations=1), restart=True)
    frames = TrackedFrames(track_dir, options.resolution)
    scores = evaluate_avatar(res.avatar, load_frames(frames, frames.split().test, "held-out"))
    return float(np.mean(scores["psnr_frames"]))


def run_video(video: str, data: Path, a: argparse.Namespace) -> dict:
    td = tracked(data / "videos" / f"{video}.mp4", a.fps)
    n = len(TrackedFrames(td))
    options = preset_options(a.preset, a.resolution, a.iterations)
    out = a.out / video
    curve = [{"step": 0, "seconds": 0.0, "psnr": step0_psnr(td, out, options)}]
    seconds = 0.0
    for s in range(1, a.stages + 1):
        iterations = max(1, round(options.iterations * s / a.stages))
        opts = resume_options(options, iterations=iterations)  # the preset's schedule fitted to this stage's length
        t0 = time.perf_counter()
        train_avatar(td, out, opts, resume=s > 1, restart=s == 1)
        seconds += time.perf_counter() - t0
        last = s == a.stages
        ev = evaluate_run(out, save_images=last)
        rows = ev.rows()
        curve.append({"step": iterations, "seconds": seconds, "psnr": rows["avatar"]["psnr"], "ssim": rows["avatar"]["ssim"]})
        print(f"  {video}: step {iterations}, {seconds:.0f} s: held-out PSNR {rows['avatar']['psnr']:.2f} dB, "
              f"SSIM {rows['avatar']['ssim']:.4f}", flush=True)
    return {"video": video, "frames": n, "held_out": len(ev.frames), "resolution": ev.resolution, "iterations": options.iterations,
            "seconds": seconds, "rows": rows, "baseline_source": ev.baseline_source, "curve": curve}


def fmt(x, spec: str = ".2f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default="d3,d6,d12,d13,d14")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--stages", type=int, default=1)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench_avatar_real"))
    a = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        print("skipped: ../shared/data (the real videos) is absent")
        return 0
    torch.set_num_threads(a.threads)
    print(machine.describe())
    a.out.mkdir(parents=True, exist_ok=True)
    records, rows = [], []
    for v in a.videos.split(","):
        r = run_video(v, data, a)
        records.append(r)
        av, base, diff = r["rows"]["avatar"], r["rows"]["baseline"] or {}, r["rows"]["difference"] or {}
        rows.append(f"| {v} | {r['frames']} / {r['held_out']} | {r['resolution']} | {r['iterations']} | {r['seconds']:.0f} | "
                    f"{r['curve'][0]['psnr']:.2f} | {fmt(av['psnr'])} | {fmt(av['ssim'], '.4f')} | {fmt(av['face_psnr'])} | "
                    f"{fmt(base.get('psnr'))} | {fmt(diff.get('psnr'))} | {'yes' if (diff.get('psnr') or -1) >= TARGET_GAIN else 'no'} |")
        print(rows[-1], flush=True)
    mean = lambda k: float(np.mean([r["rows"]["avatar"][k] for r in records]))  # noqa: E731
    print("\n| video | frames / held out | res | steps | train s | PSNR step 0 | PSNR | SSIM | face PSNR | baseline PSNR "
          "| avatar - baseline (dB) | >= 3 dB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nmean held-out PSNR {mean('psnr'):.2f} dB (target {TARGET_PSNR:g}), SSIM {mean('ssim'):.4f} (target {TARGET_SSIM:g})")
    print("\nPSNR against wall time (train seconds: held-out dB)")
    for r in records:
        print(f"  {r['video']}: " + ", ".join(f"{c['seconds']:.0f} s: {c['psnr']:.2f}" for c in r["curve"]))
    (a.out / "bench_avatar_real.json").write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
