"""Expression plausibility of the landmark fit on the shared videos, this checkout against a reference checkout.

Usage::

    python benchmarks/bench_tracking_expressions.py [--videos d0,d3,...] [--models builtin,ict]
                                                    [--reference /work/main] [--fps 10] [--max-frames 90]

Low landmark error is not enough: a neutral video fitted with coefficients at their bound plays back
as a grimace. For every video and model this fits the same capture (MediaPipe landmarks, 10 fps,
90 frames by default; reused from ``~/.cache/avatar3d/bench/appearance_real`` when there) with the
code of this checkout ("after") and of ``--reference`` ("before", e.g. the main branch), each in a
subprocess under the same conditions, and prints one table:

* NME (% of the inter-ocular distance), fitted vs detected;
* ``>0.9``: share of frames with any coefficient above 0.9;
* ``bound``: the coefficient most often at its upper bound and that share of frames (target <= 5%);
* ``neutral``: mean coefficient (over all expressions) on the frames the landmark test of
  :func:`avatar3d.tracking.expression_metrics.neutral_frames` calls neutral, with their count, and the
  expression with the largest mean there;
* the eyelid gap at the video's most closed frame, fitted vs detected (inter-ocular distances).

Fits are cached per code revision (commit + hash of the uncommitted diff), so the reference's are made once.
Timings are not the point here; the machine is named for the record (shared machines are slow).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "avatar3d" / "bench" / "appearance_real"


def model_spec(name: str, data: Path) -> str:
    return f"ict={data / 'ict-facekit-light.tar.xz'}" if name == "ict" else name


def capture_for(video: str, data: Path, fps: float, max_frames: int, work: Path) -> Path:
    """A capture.npz of ``video`` (the benchmark cache's when it matches, else made here)."""
    cached = CACHE / f"{video}_builtin_{fps:g}fps_{max_frames}" / "capture.npz"
    if cached.is_file():
        return cached
    sys.path.insert(0, str(ROOT))
    from avatar3d.capture.stage import run_capture

    out = work / f"capture_{video}"
    run_capture(data / "videos" / f"{video}.mp4", out, resolution=512, fps=fps, max_frames=max_frames, progress=False)
    return out / "capture.npz"


def worker(capture: Path, spec: str, out: Path) -> None:
    """Fit one capture with the ``avatar3d`` on ``sys.path`` (only APIs the reference also has) and save the result."""
    import torch

    from avatar3d.capture.stage import CaptureResult
    from avatar3d.models import load_head_model
    from avatar3d.tracking.fitting import CropCameras, fit_landmarks

    torch.set_num_threads(1)
    cap = CaptureResult.load(capture)
    model = load_head_model(spec)
    from avatar3d.tracking.fitting import default_config

    try:  # what `avatar3d track` uses at the capture's frame rate (a reference without that argument: its default)
        cfg = default_config(model, cap.fps)
    except TypeError:
        cfg = default_config(model)
    res = fit_landmarks(model, cap.landmarks, cap.valid, CropCameras(cap.boxes, cap.source_size, cap.resolution), cfg, progress=False)
    np.savez(out, expression=res.expression, landmarks=res.landmarks, detected=cap.landmarks[..., :2], valid=cap.valid,
             names=np.array(model.expression_names), bounds=np.array(model.expression_range, np.float64), focal=res.focal)


def revision(code_root: Path) -> str:
    """The checkout's commit plus a hash of its uncommitted changes (what a cached fit was made with)."""
    import hashlib

    head = subprocess.run(["git", "-C", str(code_root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    diff = subprocess.run(["git", "-C", str(code_root), "diff", "HEAD"], capture_output=True).stdout
    return f"{head[:12]}-{hashlib.sha1(diff).hexdigest()[:8]}"


def run_worker(code_root: Path, capture: Path, spec: str, out: Path) -> dict:
    if out.is_file():  # the same code on the same capture (the reference's fits are reused between runs)
        return dict(np.load(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", str(capture), spec, str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(code_root))
    return dict(np.load(out))


def summarise(r: dict) -> dict:
    """The table's numbers for one fit (with this checkout's measures, whatever code made the fit)."""
    from avatar3d.tracking.expression_metrics import expression_report, eyelid_gaps
    from avatar3d.tracking.metrics import nme

    names = [str(s) for s in r["names"]]
    rep = expression_report(r["expression"], names, tuple(r["bounds"]), r["detected"], r["valid"])
    det_gap, fit_gap = eyelid_gaps(r["detected"]), eyelid_gaps(r["landmarks"])
    i, side = np.unravel_index(np.argmin(np.where(r["valid"][:, None], det_gap, np.inf)), det_gap.shape)
    return dict(nme=100 * nme(r["landmarks"], r["detected"], r["valid"]), above=rep["frames_any_above"], bound=rep["most_at_bound"],
                neutral=rep["neutral_mean"], n_neutral=rep["neutral_frames"], neutral_max=rep["neutral_max_mean"],
                closed=(float(fit_gap[i, side]), float(det_gap[i, side])), focal=float(r["focal"]))


def row(video: str, model: str, which: str, s: dict) -> str:
    b = s["bound"]
    nm = s["neutral_max"]
    neutral = f"{s['neutral']:.3f} ({s['n_neutral']:2d}) {nm['name']} {nm['value']:.2f}" if s["neutral"] is not None else "- (0)"
    return (f"| {video:4s} | {model:7s} | {which:6s} | {s['nme']:5.2f} | {100 * s['above']:5.1f} | {b['name']} {100 * b['share']:.1f} | "
            f"{neutral} | {s['closed'][0]:.3f} / {s['closed'][1]:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default="d0,d3,d6,d12,d13,d14")
    ap.add_argument("--models", default="builtin,ict")
    ap.add_argument("--reference", type=Path, default=Path("/work/main"), help="checkout of the code to compare with")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--max-frames", type=int, default=90)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--code", default="before,after", help="which rows to run (fits are cached per revision under ~/.cache/avatar3d/bench/expressions)")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), args.worker[1], Path(args.worker[2]))
        return
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import machine

    from avatar3d.paths import shared_data_dir

    data = shared_data_dir()
    if data is None:
        sys.exit("no shared data (set AVATAR3D_SHARED_DATA)")
    print(f"machine: {machine.describe() if hasattr(machine, 'describe') else ''}")
    print(f"before: {args.reference} ; after: {ROOT}")
    print("| video | model | code | NME % | >0.9 % | most at bound % | neutral mean (frames) largest | closed eye gap fit / det |")
    print("|---|---|---|---|---|---|---|---|")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for video in args.videos.split(","):
            cap = capture_for(video, data, args.fps, args.max_frames, Path(tmp))
            for model in args.models.split(","):
                for which, root in (("before", args.reference), ("after", ROOT)):
                    if which not in args.code.split(","):
                        continue
                    out = CACHE.parent / "expressions" / revision(root) / f"{video}_{model}_{args.fps:g}fps_{args.max_frames}.npz"
                    r = run_worker(root, cap, model_spec(model, data), out)
                    s = summarise(r)
                    results.append(dict(video=video, model=model, code=which, **s))
                    print(row(video, model, which, s), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
