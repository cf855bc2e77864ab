"""Tracking speed on this machine, one table: detection, the two landmark fits, the photometric refinement.

Usage::

    python benchmarks/bench_tracking_speed.py [--video d13] [--frames 90] [--fps 10] [--photometric-frames 20] [--repeat 2]

(about a minute on an idle two-core machine; ``OMP_WAIT_POLICY=PASSIVE`` changes nothing here, every stage runs on one thread)

Every figure is measured on ONE torch thread and printed with the CPU model (``lscpu``'s "Model name") and, as the
reference measured in the same run, a fixed single-thread workload (float32 512x512 matrix products, GFLOP/s),
before and after the stages: on a shared or throttled machine the absolute figures move with the load, the ratio
of a stage to the reference much less. The issue's figures (#17: decode + detection 48 frames/s, built-in fit 23,
ICT 35, photometric 0.40 s/frame for ICT) were measured on an idle two-core AMD EPYC (AVX2).

Rows: decode only (the detection row's reference), decode + detection + 478 landmarks, the built-in head's and
ICT's landmark fits (with the focal search, and its share), the photometric refinement (ICT, s/frame).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.capture.stage import detect_landmarks, run_capture  # noqa: E402
from avatar3d.capture.video import open_source  # noqa: E402
from avatar3d.models import load_head_model  # noqa: E402
from avatar3d.paths import shared_data_dir  # noqa: E402
from avatar3d.tracking.fitting import CropCameras, default_config, fit_landmarks  # noqa: E402
from avatar3d.tracking.metrics import nme  # noqa: E402
from avatar3d.tracking.pipeline import focal_gauge  # noqa: E402


def lscpu_model() -> str:
    """``lscpu``'s "Model name" (the issue asks for it with every figure), else /proc/cpuinfo's."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return machine.cpu_model()


def reference_gflops(seconds: float = 1.0) -> float:
    """Single-thread float32 512x512 matrix products per second, in GFLOP/s (the named reference)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return n * 2 * 512**3 / (time.perf_counter() - t0) / 1e9


def cpu_seconds(fn):
    """(result, process CPU seconds, wall seconds) of ``fn()`` (one thread: CPU time is what the work cost, whatever
    else the machine runs)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default="d13")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--photometric-frames", type=int, default=20, help="0: skip the photometric row")
    ap.add_argument("--repeat", type=int, default=2, help="landmark fits per model (the least CPU time is reported)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = shared_data_dir()
    if data is None:
        print("real data not found (../shared/data); nothing to benchmark")
        return 1
    video = data / "videos" / f"{args.video}.mp4"
    print(machine.describe())
    print(f"CPU (lscpu Model name): {lscpu_model()}; every figure below on 1 torch thread")
    ref0 = reference_gflops()

    rows = []
    src = open_source(video, fps=args.fps, max_frames=args.frames)
    n_dec, dec_cpu, dec_wall = cpu_seconds(lambda: sum(1 for _ in src))
    rows.append(("decode only (reference for detection)", f"{n_dec / dec_cpu:.1f} frames/s", ""))
    (lm, valid, *_), det_cpu, det_wall = cpu_seconds(lambda: detect_landmarks(src, progress=False))
    rows.append(("decode + detection + 478 landmarks", f"{n_dec / det_cpu:.1f} frames/s (wall {n_dec / det_wall:.1f})",
                 f"{det_cpu / dec_cpu:.1f}x decoding"))

    import tempfile

    work = Path(tempfile.mkdtemp(prefix="bench_tracking_speed_"))
    cap = run_capture(video, work / "cap", fps=args.fps, max_frames=args.frames, progress=False)
    cams = CropCameras(cap.boxes, cap.source_size, cap.resolution)
    fits = {}
    for name in ("builtin", "ict"):
        m = load_head_model("builtin" if name == "builtin" else f"ict={data / 'ict-facekit-light.tar.xz'}")
        cfg = default_config(m, cap.fps)  # what `avatar3d track` fits with
        fit_landmarks(m, cap.landmarks[:4], cap.valid[:4], cams.subset(np.arange(4)), cfg, progress=False)  # warm up
        best = None
        for _ in range(args.repeat):  # the least CPU of the repeats: a loaded machine only ever adds to it
            res, c, w = cpu_seconds(lambda: fit_landmarks(m, cap.landmarks, cap.valid, cams, cfg, progress=False,
                                                          focal_model=focal_gauge(m)))
            best = (res, c, w) if best is None or c < best[1] else best
        res, c, w = best
        share = res.timings["focal_search"] / res.timings["total"]
        fits[name] = (m, res)
        rows.append((f"landmark fit, {name} ({cap.num_frames} frames, focal search included)",
                     f"{cap.num_frames / c:.1f} frames/s = {1e3 * c / cap.num_frames:.1f} CPU ms/frame (wall {cap.num_frames / w:.1f})",
                     f"focal search {share:.0%} of it; NME {nme(res.landmarks, cap.landmarks, cap.valid):.2%}, focal "
                     f"{res.focal / cams.default_focal:.3f}x the long side; {cap.num_frames / c / ref0:.2f} frames/s per reference GFLOP/s"))

    if args.photometric_frames:
        import cv2

        from avatar3d.tracking.photometric import PhotometricConfig, refine_photometric

        m, res = fits["ict"]
        k = min(args.photometric_frames, cap.num_frames)
        imgs = np.stack([cv2.imread(str(work / "cap" / "images" / f"{n}.png"))[..., ::-1] for n in cap.names[:k]])
        masks = np.stack([cv2.imread(str(work / "cap" / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) for n in cap.names[:k]])
        pr, c, w = cpu_seconds(lambda: refine_photometric(m, imgs, masks, cap.landmarks[:k], cap.valid[:k], res.shape,
                                                          res.expression[:k], res.pose[:k], res.transl[:k], res.K[:k],
                                                          res.world_to_cam, PhotometricConfig()))
        rows.append((f"photometric refinement, ict ({k} frames, fair baseline included)", f"{c / k:.2f} s/frame (wall {w / k:.2f})",
                     f"{c / k * ref0:.1f} s x GFLOP/s"))
    ref1 = reference_gflops()
    print(f"\n## Tracking speed, {args.video} at {args.fps:g} fps, {n_dec} frames (CPU seconds of this process, 1 thread)\n")
    print("| stage | speed | against the reference |\n|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"| reference: float32 512x512 matmul, 1 thread | {ref0:.1f} GFLOP/s before, {ref1:.1f} after | |")
    print(f"\n(load average at the end: {machine.describe().split('load average ')[1].split(',')[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
