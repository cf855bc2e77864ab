"""The relightable Gaussian avatar against the path tracer, and what relightability costs (issue #15's targets).

Usage::

    [OMP_WAIT_POLICY=PASSIVE] python benchmarks/bench_avatar_relight.py [--iterations 200] [--uv 128]
        [--starts light,appearance,grey] [--threads 2] [--res 512] [--out DIR]

The synthetic capture (:func:`avatar3d.synthetic.mitsuba_capture.small_spec`: the built-in head with known maps,
24 frames at 192^2 path traced under ``studio`` through a head turn, 16 spp; its TRUE parameters as the tracking,
frames interleaved so that the held-out half are poses between trained ones) trains, at its full 192^2 and the
same settings (``--iterations`` steps, a ``--uv`` UV grid of Gaussians, no densification):

* **SH**: the avatar without relighting (degree-1 SH colour), the named reference;
* **PBR, light start**: the relightable avatar whose capture light starts from ``TRACK_DIR/appearance/environment.hdr``,
  here the capture's true light (the appearance stage's estimate at its best);
* **PBR, appearance start**: the appearance stage run on the capture first (maps, light estimate): what a user gets;
* **PBR, grey start**: no estimate: the light starts grey (the albedo takes the capture's exposure, see
  :mod:`avatar3d.avatar.relight`).

Scores: held-out PSNR under the capture's light (full frame over white, :func:`avatar3d.avatar.evaluate.evaluate_avatar`),
relit PSNR (linear, face pixels and all head pixels, :func:`avatar3d.avatar.relight_score.relit_scores`) on held-out
poses under held-out environments B, C, D against Mitsuba (64 spp), albedo PSNR after one per-channel gain, training
seconds; and rendering speed at ``--res`` (the capture's camera scaled) on ``--threads`` threads, frames per second
(median wall) and CPU ms per frame, relit PBR against the SH avatar in the same run.

Results, 2026-12-07, Intel Xeon (Sapphire Rapids class VM), 2 cores shared with 6 other jobs (load average 6-11: wall
times are inflated, CPU ms less so; every ratio is measured in the same run), ``OMP_WAIT_POLICY=PASSIVE``, 200 steps,
UV 128 (25,989 Gaussians), relit PSNR linear RGB after 2 x 2 averaging, 4 held-out poses, 64 spp truth:

================  ========  =====  ================  ================  ================  ==================  =======  ======  =====  ======  =====
avatar            held-out  vs SH  relit studio@120  relit sunset      relit overcast    albedo dB (gain)    train s  vs SH   FPS    CPU ms  vs SH
                  dB                face / head dB    face / head dB    face / head dB                                         512^2
================  ========  =====  ================  ================  ================  ==================  =======  ======  =====  ======  =====
SH                28.12     +0.00  -                 -                 -                 -                   59       1.00x   10.7   47      1.00x
PBR, light start  29.17     +1.05  26.02 / 25.33     24.53 / 23.87     31.86 / 30.23     24.87 (0.98 grey)   78       1.33x   6.2    65      0.58x
PBR, grey start   28.88     +0.77  20.23 / 20.10     18.55 / 18.55     25.49 / 25.36     18.41 (1.00-1.06)   70       1.19x   5.0    60      0.47x
================  ========  =====  ================  ================  ================  ==================  =======  ======  =====  ======  =====

Against the issue's targets: relightability costs nothing under the capture's own light (+1.05 dB over SH: the
physically shaded colour generalises to held-out poses better than degree-1 SH) and training takes 1.33x (<= 1.5x).
Relit on held-out poses under held-out light, 30 dB over the face is reached under ``overcast`` only (31.9), not
under ``studio`` turned 120 degrees (26.0) or ``sunset`` (24.5), even with the capture light started at the truth:
the remaining error is the band-limited (9 SH coefficients) self-shadowing of a key light and a low sun (soft where
Mitsuba's are sharp), and the 16-spp capture noise baked into the albedo (24.9 dB against the true albedo after a
near-grey gain of 0.97-0.98: the light's colour is not in it). Without any estimate of the capture light (grey
start) the light drifts and the albedo keeps shading: 18.5-25.5 dB. The relit 512^2 frame: 65 ms of CPU against
the SH avatar's 47 (1.40x); at the SH avatar's 18.3 FPS on two idle cores (bench_avatar_render.py) that is ~13 FPS
by CPU time (>= 10), but the wall-clock ratio on this loaded box was 0.58x (6.2 against 10.7 FPS), i.e. ~10.6 FPS
idle: at the target, without margin. Re-measured later on the saved avatars at load average 4.2 (two rounds, 2
threads, 512^2): SH 11.7 / 10.7 FPS (46 / 51 CPU ms), the relightable one relit under ``sunset`` 7.8 / 8.4 FPS
(66 / 61 CPU ms), under its capture light 8.0 / 7.9 FPS: ~0.75x the SH frame rate, +15-19 ms of CPU a frame for
the shading (normals, SH irradiance, split-sum lookups, self-shadowing, sRGB), about 13-14 FPS idle by that ratio.

The product's path, ``--starts appearance`` (a second run: its own SH reference, the same 28.12 dB; 64 s, 8.3 FPS,
48 CPU ms): the appearance stage (``avatar3d appearance``, 128^2 maps) run on the capture first, the avatar's albedo
and prior from its maps and its capture light from its ``environment.hdr``:

=====================  ========  =====  ================  ================  ================  ===================  =======  =====  =====  ======  =====
avatar                 held-out  vs SH  relit studio@120  relit sunset      relit overcast    albedo dB (gain)     train s  vs SH  FPS    CPU ms  vs SH
=====================  ========  =====  ================  ================  ================  ===================  =======  =====  =====  ======  =====
PBR, appearance start  29.46     +1.35  25.71 / 25.14     26.87 / 26.51     27.42 / 26.34     27.20 (0.85 / 0.82   69       1.08x  7.9    63      0.95x
                                                                                              / 0.81)
=====================  ========  =====  ================  ================  ================  ===================  =======  =====  =====  ======  =====

Its albedo is the closest to the truth's (the maps' prior) but ~20 % too bright by a nearly grey factor, the
appearance stage's own albedo/light scale (its README row: 0.85 / 0.83 / 0.83), which the fixed mean of the light
carries into every relit frame: 25.7-27.4 dB, short of 30. The tracker's parameters instead of the true ones were
not measured here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d._tensor import torch_threads  # noqa: E402
from avatar3d.avatar.dataset import load_frames  # noqa: E402
from avatar3d.avatar.evaluate import evaluate_avatar  # noqa: E402
from avatar3d.avatar.model import HeadInit  # noqa: E402
from avatar3d.avatar.relight_score import albedo_score, capture_camera, frame_parameters, relit_pictures, relit_scores  # noqa: E402
from avatar3d.avatar.train import AvatarOptions, train_avatar  # noqa: E402
from avatar3d.data.frames import TrackedFrames  # noqa: E402
from avatar3d.render.lighting import EnvironmentMap  # noqa: E402
from avatar3d.synthetic.mitsuba_capture import render_capture, small_spec  # noqa: E402
from avatar3d.synthetic.relight_truth import held_out_truth, truth_directory  # noqa: E402

FRAMES = (1, 7, 13, 19)
TARGET_DB, TARGET_FPS, MAX_COST_DB, MAX_TRAIN_RATIO = 30.0, 10.0, 0.5, 1.5


def _tracks(capture, root: Path, starts: list[str]) -> dict[str, Path]:
    """The capture as tracking directories: plain (``grey``), with the capture light where the appearance stage puts
    it (``light``), and through the appearance stage itself (``appearance``: its maps and light estimate, 128^2,
    the path-traced background used as a light probe as in tests/test_appearance_reflectance.py)."""
    plain, lit, app = root / "track", root / "track_light", root / "track_appearance"
    if not plain.exists():
        truth_directory(capture, plain, list(range(0, 24, 2)) + list(range(1, 24, 2)))
    if "light" in starts and not lit.exists():
        shutil.copytree(plain, lit)
        (lit / "appearance").mkdir()
        capture.environment().write(lit / "appearance" / "environment.hdr")
    if "appearance" in starts and not (app / "appearance" / "material.json").is_file():
        from avatar3d.appearance.estimate import AppearanceOptions
        from avatar3d.appearance.pipeline import run_appearance
        from avatar3d.appearance.reflectance import ReflectanceOptions

        shutil.rmtree(app, ignore_errors=True)
        shutil.copytree(plain, app)
        run_appearance(app, options=AppearanceOptions(resolution=128, working_resolution=128,
                                                      reflectance=ReflectanceOptions(background=True)))
    return {"grey": plain, "light": lit, "appearance": app}


def _speed(avatar, capture, res: int, threads: int, env) -> tuple[float, float]:
    """(FPS from the median wall time, median CPU ms) of frames at ``res`` pixels under ``env`` (None: own light)."""
    P = capture.parameters()
    cam = capture_camera(P, capture.spec.width, capture.spec.height).scale(res, res)
    if env is not None:
        avatar.appearance.set_environment(env)
    walls, cpus = [], []
    try:
        with torch.no_grad(), torch_threads(threads):
            for k in range(3 * len(FRAMES)):
                args = frame_parameters(P, FRAMES[k % len(FRAMES)])
                w, c = time.perf_counter(), time.process_time()
                avatar(*args, cam)
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
    finally:
        if env is not None:
            avatar.appearance.set_environment(None)
    walls, cpus = walls[2:], cpus[2:]  # the first frames warm caches up
    return 1.0 / statistics.median(walls), 1000 * statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--uv", type=int, default=128)
    ap.add_argument("--starts", default="light,appearance,grey", help="capture-light starts to train: light, appearance, grey")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("bench_avatar_relight"))
    a = ap.parse_args()
    print(machine.describe())
    a.out.mkdir(parents=True, exist_ok=True)
    capture = render_capture(small_spec())
    truth = held_out_truth(capture, frames=FRAMES)
    tracks = _tracks(capture, a.out, a.starts.split(","))
    frames = TrackedFrames(tracks["grey"])
    test = load_frames(frames, frames.split().test, "test")
    rows = {}
    runs = [("SH", "grey", False)] + [(f"PBR, {s} start", s, True) for s in a.starts.split(",")]
    for name, start, relight in runs:
        opts = AvatarOptions(iterations=a.iterations, densify=None, init=HeadInit(uv_resolution=a.uv), relightable=relight)
        out = a.out / name.replace(", ", "_").replace(" ", "_").lower()
        shutil.rmtree(out, ignore_errors=True)
        with torch_threads(1):
            res = train_avatar(tracks[start], out, opts)
            row = {"train_s": res.seconds, "heldout_psnr": evaluate_avatar(res.avatar, test)["psnr"], "gaussians": res.avatar.num_gaussians}
            env = truth.environments[1] if relight else None
            row["fps"], row["cpu_ms"] = _speed(res.avatar, capture, a.res, a.threads, env)
            if relight:
                row["relit"] = relit_scores(res.avatar, capture, truth)
                psnr, gain = albedo_score(res.avatar, capture, FRAMES, save=a.out / f"{out.name}_albedo.png")
                row["albedo_psnr"], row["albedo_gain"] = psnr, gain.tolist()
                relit_pictures(res.avatar, capture, truth, a.out / f"{out.name}_relit.png",
                               extra=[EnvironmentMap.generated("studio", 256, 180.0)])
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    (a.out / f"bench_avatar_relight_{'_'.join(a.starts.split(','))}.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


def table(rows: dict) -> str:
    """The results as an RST table, ratios against the SH avatar of the same run."""
    sh = rows["SH"]
    envs = next((list(r["relit"]) for r in rows.values() if "relit" in r), [])
    head = ["avatar", "held-out dB (capture light)", "vs SH", *[f"relit {e} face / head dB" for e in envs], "albedo dB (gain)",
            "train s", "train / SH", "FPS 512^2", "CPU ms", "FPS / SH"]
    lines = []
    for name, r in rows.items():
        relit = [f"{r['relit'][e]['face']:.2f} / {r['relit'][e]['head']:.2f}" if "relit" in r else "-" for e in envs]
        alb = f"{r['albedo_psnr']:.2f} ({', '.join(f'{g:.2f}' for g in r['albedo_gain'])})" if "albedo_psnr" in r else "-"
        lines.append([name, f"{r['heldout_psnr']:.2f}", f"{r['heldout_psnr'] - sh['heldout_psnr']:+.2f}", *relit, alb,
                      f"{r['train_s']:.0f}", f"{r['train_s'] / sh['train_s']:.2f}x", f"{r['fps']:.1f}", f"{r['cpu_ms']:.0f}",
                      f"{r['fps'] / sh['fps']:.2f}x"])
    widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(head)]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    targets = (f"targets: relit >= {TARGET_DB:g} dB face pixels per map; <= {MAX_COST_DB} dB below SH under the capture light; "
               f"training <= {MAX_TRAIN_RATIO}x SH; >= {TARGET_FPS:g} FPS relit at 512^2 on two cores")
    return "\n".join([rule, fmt(head), rule, *(fmt(l) for l in lines), rule, targets])


if __name__ == "__main__":
    main()
