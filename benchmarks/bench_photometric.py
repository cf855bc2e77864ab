"""Photometric refinement on the shared videos: fair before/after image error, landmarks, jitter, speed.

Usage::

    python benchmarks/bench_photometric.py [--videos d0,d3,...] [--models builtin,ict] [--frames 40] [--fps 10]
                                           [--out DIR] [--reference GIT_REV]

For every video and model: capture a clip (``--frames`` frames sampled at ``--fps``), fit landmarks,
then run :func:`avatar3d.tracking.photometric.refine_photometric` with its fair baseline (the same
albedo + SH optimisation, same batches and iterations, geometry frozen at the landmark fit). Prints
one table row per video x model:

* masked image error (grey levels 0..255 at the refinement's render size, face-region pixels
  inside the person mask) of the landmark-only fit and of the refined fit, and the share of frames
  where the refined fit is better;
* landmark NME (% inter-ocular distance) and jitter (px/frame²) before and after;
* seconds per frame of the refinement alone and with the baseline, wall and process CPU time (one
  torch thread, so CPU time is the wall time on an idle core: the shared machine inflates wall
  time), next to the landmark fit's seconds per frame on the same clip (the named reference, same run).

``--reference GIT_REV`` (e.g. ``HEAD~1``) also runs the refinement of that revision of this
repository (``git archive`` into a temporary folder, run in a subprocess) on the same clip and
landmark fit, alternating with the current code, and prints a second table: seconds per frame
all-in (with the fair baseline, what the user waits for) and refinement-only, wall and CPU, current
vs reference with their ratio, and both image-error reductions.

``--out`` keeps the clips and writes ``before_after_<video>_<model>.png`` (crop | landmark-only
render | refined render | error maps x4) and ``bench_photometric.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d._tensor import f32  # noqa: E402
from avatar3d.capture.stage import run_capture  # noqa: E402
from avatar3d.models import load_head_model  # noqa: E402
from avatar3d.paths import shared_data_dir  # noqa: E402
from avatar3d.render.backends import mesh_cpu_extension  # noqa: E402
from avatar3d.render.head import HeadRenderer  # noqa: E402
from avatar3d.tracking.fitting import (  # noqa: E402
    CropCameras,
    fit_landmarks,
    project_landmarks,  # noqa: E402
)
from avatar3d.tracking.metrics import jitter, nme  # noqa: E402
from avatar3d.tracking.photometric import PhotometricConfig, refine_photometric  # noqa: E402

#: Runs one refinement with the ``avatar3d`` of another source tree (argv: tree, inputs .npz, model spec, output .json).
_REF_SCRIPT = """
import json, sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
from avatar3d.models import load_head_model
from avatar3d.render.mesh import rasterize
from avatar3d.tracking.photometric import PhotometricConfig, refine_photometric
rasterize(torch.zeros(1, 3, 4), torch.zeros(1, 3, dtype=torch.int32), (8, 8))  # load the extension before timing
a = np.load(sys.argv[2])
model = load_head_model(sys.argv[3])
pr = refine_photometric(model, a["images"], a["masks"], a["landmarks"], a["valid"], a["shape"], a["expression"], a["pose"],
                        a["transl"], a["K"], a["world_to_cam"], PhotometricConfig())
json.dump(dict(timings=pr.timings, error_landmark_only=pr.error_landmark_only, error_refined=pr.error_refined),
          open(sys.argv[4], "w"))
"""


def reference_tree(rev: str, dest: Path) -> Path:
    """Export revision ``rev`` of this repository into ``dest`` (``git archive``) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=arch, check=True)
    return dest


def per_frame(timings: dict, n: int) -> tuple[float, float, float, float]:
    """(wall all-in, wall refinement-only, CPU all-in, CPU refinement-only) seconds per frame."""
    return (timings["total"] / n, (timings["total"] - timings.get("baseline", 0.0)) / n, timings["cpu_total"] / n,
            (timings["cpu_total"] - timings.get("cpu_baseline", 0.0)) / n)


def before_after_png(path: Path, model, imgs: np.ndarray, masks: np.ndarray, fit, pr, size: int = 192, rows: int = 3) -> None:
    """Write crop | landmark-only render | refined render | |error| x4 (landmark-only, refined) for a few frames."""
    import cv2

    idx = np.linspace(0, len(imgs) - 1, rows).astype(int)
    rend = HeadRenderer(model, f32(fit.K), f32(fit.world_to_cam), imgs.shape[1], size)
    with torch.no_grad():
        def render(e, p, t, alb, sh):
            v = model(f32(fit.shape)[None].expand(len(idx), -1), f32(e[idx]), f32(p[idx]), f32(t[idx])).vertices
            ras = rend.raster(v, idx)
            return rend.shade(ras, f32(alb), f32(sh))[0].numpy(), ras["region"].numpy()

        base, rb = render(fit.expression, fit.pose, fit.transl, pr.baseline_albedo, pr.baseline_sh)
        ref, ra = render(pr.expression, pr.pose, pr.transl, pr.albedo, pr.sh)
    out = []
    for k, i in enumerate(idx):
        im = cv2.resize(imgs[i], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        m = cv2.resize(masks[i], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255
        w = (np.maximum(ra[k], rb[k]) > 0.5) & (m > 0.5)
        cols = [im]
        for r in (base[k], ref[k]):
            cols.append(np.where(w, r, im * 0.4))
        for r in (base[k], ref[k]):
            cols.append(np.repeat(np.abs(r - im).mean(-1, keepdims=True) * w * 4, 3, -1))
        out.append(np.concatenate(cols, 1))
    cv2.imwrite(str(path), (np.clip(np.concatenate(out, 0), 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", default="d0,d3,d6,d12,d13,d14")
    ap.add_argument("--models", default="builtin,ict")
    ap.add_argument("--frames", type=int, default=40, help="frames per clip")
    ap.add_argument("--fps", type=float, default=10.0, help="sampling rate of the clip (spreads it over the video)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--reference", default=None, help="git revision whose refinement to time alongside (e.g. HEAD~1)")
    args = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    data = shared_data_dir()
    if data is None:
        print("real data not found (../shared/data); nothing to benchmark")
        return 1
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_photometric_"))
    work.mkdir(parents=True, exist_ok=True)
    specs = {"builtin": "builtin", "ict": f"ict={data / 'ict-facekit-light.tar.xz'}"}
    models = {m: load_head_model(specs.get(m, m)) for m in args.models.split(",") if m}
    cfg = PhotometricConfig()
    mesh_cpu_extension()  # build/load the C++ extension before timing
    ref_dir = reference_tree(args.reference, work / "reference_tree") if args.reference else None
    ref_rows = []
    load = os.getloadavg()[0]
    print(f"\n## Photometric refinement ({cfg.resolution} px render of 512 px crops, {cfg.epochs} joint passes x "
          f"{cfg.iters_per_batch} steps, batches of {cfg.batch} frames; clips of {args.frames} frames at {args.fps:g} fps; "
          f"load average {load:.1f} on {os.cpu_count()} cores)\n")
    print("| video | model | frames | image error landmark-only -> refined (grey levels) | frames better | NME % before -> after "
          "| jitter px before -> after | wall s/frame refine (with baseline) | CPU s/frame refine (with baseline) "
          "| landmark fit wall s/frame (reference, ratio) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for v in [x for x in args.videos.split(",") if x]:
        clip = work / v
        cap = run_capture(data / "videos" / f"{v}.mp4", clip, fps=args.fps, max_frames=args.frames, progress=False)
        imgs = np.stack([cv2.imread(str(clip / "images" / f"{n}.png"))[..., ::-1] for n in cap.names])
        masks = np.stack([cv2.imread(str(clip / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) for n in cap.names])
        for mname, model in models.items():
            t0 = time.perf_counter()
            fit = fit_landmarks(model, cap.landmarks, cap.valid, CropCameras(cap.boxes, cap.source_size, cap.resolution), progress=False)
            t_fit = (time.perf_counter() - t0) / cap.num_frames
            ref = None
            if ref_dir is not None:  # the reference first, then the current code, on the same inputs
                inp, res = work / f"inputs_{v}_{mname}.npz", work / f"reference_{v}_{mname}.json"
                np.savez(inp, images=imgs, masks=masks, landmarks=cap.landmarks, valid=cap.valid, shape=fit.shape,
                         expression=fit.expression, pose=fit.pose, transl=fit.transl, K=fit.K, world_to_cam=fit.world_to_cam)
                subprocess.run([sys.executable, "-c", _REF_SCRIPT, str(ref_dir), str(inp), specs.get(mname, mname), str(res)], check=True)
                ref = json.loads(res.read_text())
            pr = refine_photometric(model, imgs, masks, cap.landmarks, cap.valid, fit.shape, fit.expression, fit.pose, fit.transl,
                                    fit.K, fit.world_to_cam, cfg)
            n = cap.num_frames
            if ref is not None:
                new, old = per_frame(pr.timings, n), per_frame(ref["timings"], n)
                red = lambda a, b: 100 * (b / a - 1)  # noqa: E731
                ref_rows.append(f"| {v} | {mname} | " + " | ".join(f"{a:.3f} / {b:.3f} ({a / b:.2f})" for a, b in zip(new, old))
                                + f" | {red(pr.error_landmark_only, pr.error_refined):+.2f}% / "
                                  f"{red(ref['error_landmark_only'], ref['error_refined']):+.2f}% |")
            lm = project_landmarks(model, fit.shape, pr.expression, pr.pose, pr.transl, fit.K, fit.world_to_cam)
            n0, n1 = nme(fit.landmarks, cap.landmarks, cap.valid), nme(lm, cap.landmarks, cap.valid)
            j0, j1 = jitter(fit.landmarks), jitter(lm)
            t_all = pr.timings["total"] / n
            t_ref = (pr.timings["total"] - pr.timings.get("baseline", 0.0)) / n
            c_all = pr.timings["cpu_total"] / n
            c_ref = (pr.timings["cpu_total"] - pr.timings.get("cpu_baseline", 0.0)) / n
            better = float(np.mean(pr.errors_refined < pr.errors_landmark_only))
            print(f"| {v} | {mname} | {n} | {pr.error_landmark_only:.3f} -> {pr.error_refined:.3f} "
                  f"({100 * (pr.error_refined / pr.error_landmark_only - 1):+.1f}%) | {100 * better:.0f}% | {100 * n0:.2f} -> {100 * n1:.2f} "
                  f"| {j0:.2f} -> {j1:.2f} | {t_ref:.2f} ({t_all:.2f}) | {c_ref:.2f} ({c_all:.2f}) | {t_fit:.3f} ({t_ref / t_fit:.0f}x) |",
                  flush=True)
            summary[f"{v}/{mname}"] = dict(frames=n, error_landmark_only=pr.error_landmark_only, error_refined=pr.error_refined,
                                           frames_better=better, nme_before=n0, nme_after=n1, jitter_before=j0, jitter_after=j1,
                                           s_per_frame=t_ref, s_per_frame_with_baseline=t_all, cpu_s_per_frame=c_ref,
                                           cpu_s_per_frame_with_baseline=c_all, fit_s_per_frame=t_fit)
            before_after_png(work / f"before_after_{v}_{mname}.png", model, imgs, masks, fit, pr)
    if ref_rows:
        print(f"\n## Current code / reference {args.reference} (same clips and landmark fits, run alternately; "
              f"load average now {os.getloadavg()[0]:.1f})\n")
        print("| video | model | wall s/frame all-in: current / reference (ratio) | wall refine-only | CPU all-in | CPU refine-only "
              "| image error change vs fair baseline: current / reference |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(ref_rows))
    (work / "bench_photometric.json").write_text(json.dumps(summary, indent=1))
    print(f"\n(results and before/after PNGs in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
