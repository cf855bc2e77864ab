"""Gaussian avatar speed on the CPU: seconds per training step, where a step's time goes, and render FPS.

Usage::

    python benchmarks/bench_avatar_speed.py [--track TRACK_DIR] [--res 256,512] [--steps 20] [--frames 10] [--threads 2]

The avatar is the one training starts from on a real tracked clip (``--track``; default the 90-frame d3 clip of
``bench_appearance_real.py``, tracked on demand): Gaussians from the UV texels, colours from the frames, the
silhouette cover for hair (:mod:`avatar3d.avatar.coverage`). Per resolution:

* **step**: wall seconds of :meth:`AvatarTrainer.step` (batch 1, no densification), the median of ``--steps``
  after 3 warm-up steps (and the process's CPU seconds per step: on an idle machine with T threads the wall time
  is about CPU / T, a load-robust figure), against the budget the issue's default preset implies (30 minutes for a 300-frame video
  at 512^2 over the preset's iterations) as the named reference: ``budget / step`` >= 1 fits;
* **profile**: the share of the step's CPU time in the rasterizer's forward (projection + compositing) and
  backward, against everything else (posing the mesh and Gaussians, colours, loss, SSIM, Adam), from
  ``torch.profiler`` over ``--steps`` steps;
* **render**: forward-only frames per second (render one frame, no gradients) against the issue's 20 FPS target
  and against our pure-PyTorch rasterizer (``backend="torch"``, the C++ extension's twin), measured in the same run.

Timings depend on the load: the machine line says what else ran. Measured 2026-12-07 (Intel Xeon, 2 cores, AVX-512,
load average ~2, the d3 clip, the starting avatar, ``--steps 8 --frames 5 --reference-frames 1``):

====  =========  ======  ==========  =============  ==========  ==========  ====  ==========  ================
res   Gaussians  s/step  CPU s/step  budget / step  raster fwd  raster bwd  rest  render FPS  x torch reference
====  =========  ======  ==========  =============  ==========  ==========  ====  ==========  ================
256   26587      0.148   0.295       2.03           13%         17%         70%   19.5        105
512   28483      0.181   0.365       1.66           18%         20%         62%   14.1        18
====  =========  ======  ==========  =============  ==========  ==========  ====  ==========  ================

Where "rest" goes (``torch.profiler`` grouped by shape, 256^2): about half of it is the two (N, 16, 3) expression
blendshape fields (offset and colour): their einsum and its backward, the regulariser and their Adam updates cost as
much as the rasterizer's forward and backward together; posing the mesh and the Gaussians and SSIM are the rest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.avatar.presets import PRESETS  # noqa: E402
from avatar3d.avatar.train import AvatarOptions, AvatarTrainer, prepare, train_avatar  # noqa: E402
from avatar3d.paths import cache_dir, shared_data_dir  # noqa: E402

#: the issue's default preset: a 300-frame video at 512^2 in 30 minutes
BUDGET_S = 30 * 60
RENDER_FPS_TARGET = 20.0
RASTER_KEYS = ("_ProjectExt", "_RasterizeExt")


def default_track() -> Path:
    """The 90-frame d3 clip that ``bench_appearance_real.py`` tracks (tracked here when absent)."""
    out = cache_dir("bench/appearance_real/d3_builtin_10fps_90")
    if not (out / "params.npz").is_file():
        from avatar3d.tracking.pipeline import TrackOptions, track

        data = shared_data_dir()
        if data is None:
            raise SystemExit("skipped: ../shared/data (the real videos) is absent and no --track was given")
        track(data / "videos" / "d3.mp4", out, TrackOptions(fps=10, max_frames=90, photometric=True, overlay=False, progress=False))
    return out


def profile_shares(trainer: AvatarTrainer, steps: int) -> dict[str, float]:
    """Shares of the CPU time of ``steps`` steps: rasterizer forward, rasterizer backward, the rest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    fwd = sum(e.self_cpu_time_total for e in events if e.key in RASTER_KEYS)
    bwd = sum(e.self_cpu_time_total for e in events if any(e.key.startswith(k) and "Backward" in e.key for k in RASTER_KEYS))
    return {"raster_fwd": fwd / total, "raster_bwd": bwd / total, "rest": 1 - (fwd + bwd) / total}


@torch.no_grad()
def render_fps(avatar, frames, n: int, backend: str) -> float:
    """Frames per second of ``avatar`` rendering the first ``n`` of ``frames`` one by one (after one warm-up)."""
    render = lambda i: avatar(frames.expression[i:i + 1], frames.pose[i:i + 1], frames.transl[i:i + 1],  # noqa: E731
                              frames.camera(torch.tensor([i])), backend=backend)
    render(0)
    t0 = time.perf_counter()
    for i in range(n):
        render(i % len(frames))
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--track", type=Path, default=None)
    ap.add_argument("--res", default="256,512")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--frames", type=int, default=10, help="frames rendered per FPS measurement")
    ap.add_argument("--reference-frames", type=int, default=2, help="frames the slow PyTorch reference renders")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    track = a.track or default_track()
    print(machine.describe())
    iterations = PRESETS["default"].iterations
    budget = BUDGET_S / iterations
    print(f"track {track}; reference step budget {budget:.3f} s (30 min / {iterations} steps of the default preset)\n")
    rows = []
    for res in [int(r) for r in a.res.split(",")]:
        opts = AvatarOptions(resolution=res, iterations=10_000, densify=None)
        with tempfile.TemporaryDirectory() as tmp:
            avatar = train_avatar(track, tmp, AvatarOptions(resolution=res, iterations=1, densify=None)).avatar
        _, _, train = prepare(track, opts)
        trainer = AvatarTrainer(avatar, train, opts)
        for _ in range(3):
            trainer.step()
        times, c0 = [], time.process_time()
        for _ in range(a.steps):
            t0 = time.perf_counter()
            trainer.step()
            times.append(time.perf_counter() - t0)
        step, cpu = statistics.median(times), (time.process_time() - c0) / a.steps
        shares = profile_shares(trainer, max(3, a.steps // 4))
        fps = render_fps(trainer.avatar, train, a.frames, "auto")
        ref = render_fps(trainer.avatar, train, a.reference_frames, "torch")
        rows.append(f"| {res} | {avatar.num_gaussians} | {step:.3f} | {cpu:.3f} | {budget / step:.2f} | {shares['raster_fwd']:.0%} | "
                    f"{shares['raster_bwd']:.0%} | {shares['rest']:.0%} | {fps:.1f} | {fps / RENDER_FPS_TARGET:.2f} | "
                    f"{ref:.2f} | {fps / ref:.0f} |")
        print(rows[-1], flush=True)
    print("\n| res | Gaussians | s/step | CPU s/step | budget / step | raster fwd | raster bwd | rest | render FPS | / 20 FPS target "
          "| torch reference FPS | x reference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
