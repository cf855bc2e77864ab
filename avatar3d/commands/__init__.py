"""CLI subcommands; each module exposes ``register(subparsers)`` (see ``avatar3d.cli``)."""

from __future__ import annotations

import argparse
import importlib


def register_modules(sub: argparse._SubParsersAction, modules: list[str]) -> None:
    """Call ``register(sub)`` of each module named in ``modules`` (full dotted names); a module missing from this
    build is skipped (its command is simply absent), any other import error is raised."""
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # command not part of this build
            raise
        mod.register(sub)
