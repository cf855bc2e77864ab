"""``avatar3d reconstruct VIDEO --out DIR``: phone video in, avatar out: every stage in one resumable run
(:func:`avatar3d.reconstruct.pipeline.reconstruct`)."""

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
    from ..reconstruct.pipeline import ReconstructStopped, reconstruct
    from ..reconstruct.settings import ReconstructOptions

    options = ReconstructOptions(model=args.model, preset=args.preset, relightable=args.relightable, resume=args.resume,
                                 restart=args.restart, progress=not args.quiet)
    try:
        r = reconstruct(args.video, args.out, options)
    except ReconstructStopped as e:
        print(f"avatar3d reconstruct: {e}; run the same command again to continue where it stopped", file=sys.stderr)
        return STOPPED
    print(_summary(r))
    return 0


def _summary(r) -> str:
    """Where everything is, the held-out score, and what to open."""
    stages = r.record.data["stages"]
    lines = []
    if r.reused and not r.ran:
        lines.append(f"{r.path} already holds this finished run (every stage reused; --restart redoes it)")
    for name, rec in stages.items():
        status = rec.get("status")
        text = rec.get("note") or rec.get("error") or ""
        lines.append(f"  {name:<10} {status:<7} {rec.get('seconds', 0.0):7.1f} s  {text}")
    report = r.output("report.html")
    lines.append(f"wrote {r.path}: head.glb, avatar.ply, avatar/, track/, previews/ in {r.seconds / 60:.1f} min")
    lines.append(f"report: {report}" if report else "report: not produced by this build (see reconstruct.json)")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    from ..reconstruct.settings import DEFAULT_PRESET, PLANS

    p = sub.add_parser("reconstruct", help="video of a head in, avatar out: track, appearance maps, Gaussian avatar, evaluation, "
                                           "GLB/PLY exports, previews and a report, in one resumable run",
                       description="Run every stage on VIDEO into DIR: track/ (with appearance/), avatar/, head.glb, avatar.ply, "
                                   "previews/, report.html and reconstruct.json. Ctrl-C stops it; the same command continues "
                                   "where it stopped, and reuses what a finished run made.")
    p.add_argument("video", metavar="VIDEO", help="a video of one head (mp4, mov, webm), e.g. from a phone")
    p.add_argument("--out", required=True, metavar="DIR", help="the run's folder (new, or one an earlier reconstruct run wrote)")
    p.add_argument("--model", default="builtin", help="head model: builtin, ict[=PATH], flame=PATH (default: builtin)")
    p.add_argument("--preset", choices=sorted(PLANS), default=DEFAULT_PRESET,
                   help=f"speed against quality (default {DEFAULT_PRESET}); quick: the demo clip in under 10 minutes on two cores")
    p.add_argument("--relightable", action=argparse.BooleanOptionalAction, default=None,
                   help="train the relightable avatar (previews relit under each environment; about twice the training time); "
                        "default: on where this build has it")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in DIR with the settings it recorded")
    again.add_argument("--restart", action="store_true", help="redo every stage of the run in DIR (with these settings)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=run)
