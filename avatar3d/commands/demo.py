"""``avatar3d demo``: the main job on built-in defaults (see :mod:`avatar3d.demo`)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    report = run_demo(args.out, model_spec=args.model, size=args.size)
    print(f"wrote {len(report['images'])} images and report.md to {args.out} "
          f"({report['model']['name']} head, {report['model']['vertices']} vertices, "
          f"render {report['timings_s']['per_image'] * 1000:.0f} ms/image)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the built-in head, render it with expressions, write a report")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--model", default="builtin", help="head model: builtin, ict[=PATH], flame=PATH")
    p.add_argument("--size", type=int, default=384, help="image size in pixels")
    p.set_defaults(func=run)
