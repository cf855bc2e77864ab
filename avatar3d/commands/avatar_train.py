"""``avatar3d avatar train TRACK_DIR --out AVATAR_DIR``: a Gaussian head avatar trained on a tracked video
(:func:`avatar3d.avatar.train.train_avatar`, sized by :mod:`avatar3d.avatar.presets`)."""

from __future__ import annotations

import argparse
import sys

#: exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)
STOPPED = 130


def run(args: argparse.Namespace) -> int:
    from .._openmp import prefer_passive_wait

    # before torch loads OpenMP: a spinning idle thread takes the core the working one needs whenever anything else
    # runs (measured: 2 threads at 10 s a step against 1 s on one thread under load); idle it costs ~6% a step
    prefer_passive_wait()
    from ..avatar.train import TrainingStopped, train_avatar

    options = _options(args)
    try:
        r = train_avatar(args.track_dir, args.out, options, resume=args.resume, restart=args.restart)
    except TrainingStopped as e:
        print(f"avatar3d avatar train: stopped at step {e.step} of {e.iterations}; run the same command with --resume to continue",
              file=sys.stderr)
        return STOPPED
    print(_summary(r, args.out))
    return 0


def _options(args: argparse.Namespace):
    """The run's options: a preset's with the flags given, or (``--resume``) the checkpoint's, so it continues exactly."""
    from ..avatar.presets import DEFAULT_PRESET, preset_options, resume_options
    from ..avatar.train import checkpoint_options
    from ..errors import BadInputError

    run = {"backend": args.backend, "progress": not args.quiet}
    previous = checkpoint_options(args.out) if args.resume else None
    if previous is not None:
        if args.relightable and not previous.relightable:
            raise BadInputError("this avatar was trained without --relightable, and --resume continues it so: leave out "
                                "--relightable, or pass --restart to train a relightable one")
        return resume_options(previous, args.preset, args.resolution, args.iterations, **run)
    return preset_options(args.preset or DEFAULT_PRESET, args.resolution, args.iterations, relightable=args.relightable, **run)


def _summary(r, out: str) -> str:
    """One line: what was trained, how well, where it is, and what to run next."""
    from ..avatar.train import AVATAR_FILE, CURVE_FILE, LOG_FILE

    new = r.steps - r.resumed_from
    if new == 0 and r.resumed_from > 0:
        return (f"{r.out} already holds the finished avatar of {r.steps} steps (training PSNR {r.psnr():.2f} dB, "
                f"{r.avatar.num_gaussians} Gaussians); pass a larger --iterations with --resume to train it further")
    part = f", {new} of them now" if r.resumed_from else ""
    preset = f"--preset {r.options.preset}, " if r.options is not None and r.options.preset else ""
    res = f"{r.options.resolution} px, " if r.options is not None and r.options.resolution else ""
    return (f"trained {r.steps} steps ({preset}{res}{r.minutes:.1f} min{part}): training PSNR {r.psnr():.2f} dB (last 50 steps), "
            f"{r.avatar.num_gaussians} Gaussians; wrote {r.out / AVATAR_FILE}, {LOG_FILE} and {CURVE_FILE}; next: "
            f"'avatar3d avatar eval {out}' (held-out scores), 'avatar3d avatar render {out} --out DIR'")


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {s}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    from ..avatar.presets import DEFAULT_PRESET, PRESETS

    presets = "; ".join(f"{p.name}: {p.resolution} px, {p.iterations} steps, about {p.minutes:g} min" for p in PRESETS.values())
    p = sub.add_parser("train", help="train a Gaussian head avatar on a tracked video",
                       description="Train a Gaussian head avatar on the training frames of a tracking directory (the last 15% of "
                                   "its frames, at least 30, are held out for 'avatar3d avatar eval'). Ctrl-C stops it at a "
                                   "checkpoint; --resume continues exactly where it stopped.")
    p.add_argument("track_dir", metavar="TRACK_DIR", help="a folder written by 'avatar3d track --out'")
    p.add_argument("--out", required=True, metavar="AVATAR_DIR", help="output folder: avatar.pt, checkpoint.pt, train_log.csv, "
                                                                      "train_curve.png")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"speed against quality, default {DEFAULT_PRESET} ({presets}; for a 300-frame video on two CPU cores)")
    p.add_argument("--resolution", type=_positive, default=None, metavar="PIXELS", help="train at this width (overrides the preset's)")
    p.add_argument("--iterations", type=_positive, default=None, metavar="N",
                   help="optimiser steps (overrides the preset's; with --resume, a larger N trains a finished avatar further)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda", "gsplat"), default="auto",
                   help="the Gaussian rasterizer (default auto: our CPU rasterizer)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in AVATAR_DIR from its checkpoint (with its settings)")
    again.add_argument("--restart", action="store_true", help="train a new avatar in place of the one in AVATAR_DIR (that one stays "
                                                              "until the new one is finished)")
    p.add_argument("--relightable", action="store_true",
                   help="train a relightable avatar (albedo, roughness, specular and normals under a trained capture light, "
                        "started from TRACK_DIR/appearance when present) that 'avatar3d avatar render --env' can relight")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
