"""Focal length and landmark NME on the shared videos, both models, this checkout against a reference checkout.

Usage::

    python benchmarks/bench_tracking_focal.py [--videos d0,d3,...] [--reference /work/main] [--fps 10] [--max-frames 90]

Each video's capture (MediaPipe landmarks, 10 fps, 90 frames; the appearance benchmark's cache when
there) is fitted as ``avatar3d track`` fits it (:func:`~avatar3d.tracking.pipeline.focal_gauge`: ICT
takes the built-in head's focal search) with the built-in head and with ICT, by the code of this
checkout ("after") and of ``--reference`` ("before"), each in a subprocess. Printed per video:
the focal length over the image's long side for each model and their ratio (issue #17: within 15%),
whether the search called it a bound, and the NME (% of the inter-ocular distance) of each fit.
Fits are cached per code revision, as in ``bench_tracking_expressions.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_tracking_expressions import CACHE, capture_for, model_spec, revision  # noqa: E402


def worker(capture: Path, spec: str, out: Path) -> None:
    """Fit one capture as the track command does, with the ``avatar3d`` on ``sys.path``, and save focal and NME."""
    import torch

    from avatar3d.capture.stage import CaptureResult
    from avatar3d.models import load_head_model
    from avatar3d.tracking.fitting import CropCameras, default_config, fit_landmarks
    from avatar3d.tracking.metrics import nme
    from avatar3d.tracking.pipeline import focal_gauge

    torch.set_num_threads(1)
    cap = CaptureResult.load(capture)
    model = load_head_model(spec)
    res = fit_landmarks(model, cap.landmarks, cap.valid, CropCameras(cap.boxes, cap.source_size, cap.resolution),
                        default_config(model, cap.fps), progress=False, focal_model=focal_gauge(model))
    est = res.focal_estimate
    np.savez(out, focal=res.focal, long_side=float(max(cap.source_size)), at_bound=bool(est.at_bound),
             nme=100 * nme(res.landmarks, cap.landmarks[..., :2], cap.valid))


def run_worker(code_root: Path, capture: Path, spec: str, out: Path) -> dict:
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(capture), spec, str(out)], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(code_root))
    with np.load(out) as z:
        return {k: float(z[k]) for k in z.files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default="d0,d3,d6,d12,d13,d14")
    ap.add_argument("--reference", type=Path, default=Path("/work/main"), help="checkout of the code to compare with")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--max-frames", type=int, default=90)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], Path(args.worker[2]))
        return
    import machine

    sys.path.insert(0, str(ROOT))
    from avatar3d.paths import shared_data_dir

    data = shared_data_dir()
    if data is None:
        sys.exit("no shared data (set AVATAR3D_SHARED_DATA)")
    print(f"machine: {machine.describe() if hasattr(machine, 'describe') else ''}")
    print(f"before: {args.reference} ; after: {ROOT}")
    print("| video | code | focal / long side built-in | ICT | ratio | at a bound | NME % built-in | NME % ICT |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for video in args.videos.split(","):
            cap = capture_for(video, data, args.fps, args.max_frames, Path(tmp))
            for which, root in (("before", args.reference), ("after", ROOT)):
                r = {m: run_worker(root, cap, model_spec(m, data), CACHE.parent / "focal" / revision(root) /
                                   f"{video}_{m}_{args.fps:g}fps_{args.max_frames}.npz") for m in ("builtin", "ict")}
                b, i = (r[m]["focal"] / r[m]["long_side"] for m in ("builtin", "ict"))
                bound = "yes" if r["builtin"]["at_bound"] or r["ict"]["at_bound"] else "no"
                print(f"| {video} | {which} | {b:.3f} | {i:.3f} | {max(b, i) / min(b, i):.3f} | {bound} | "
                      f"{r['builtin']['nme']:.3f} | {r['ict']['nme']:.3f} |", flush=True)
                results.append(dict(video=video, code=which, **{f"{m}_{k}": v for m in r for k, v in r[m].items()}))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
