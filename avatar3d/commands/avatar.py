"""``avatar3d avatar train | render | eval | export``: the Gaussian head avatar (:mod:`avatar3d.avatar`).

Each subcommand lives in ``avatar3d/commands/avatar_<name>.py`` and exposes ``register(subparsers)``, as the
top-level commands do (:mod:`avatar3d.cli`); a build without one of them simply lacks that subcommand.
"""

from __future__ import annotations

import argparse

from . import register_modules

SUBCOMMANDS = ("train", "render", "eval", "export")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("avatar", help="the Gaussian head avatar: train it on a tracked video, render, score and export it")
    inner = p.add_subparsers(dest="avatar_command", metavar="SUBCOMMAND")
    register_modules(inner, [f"avatar3d.commands.avatar_{name}" for name in SUBCOMMANDS])
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])
