"""``avatar3d`` command line: a thin layer over the library.

Each subcommand lives in ``avatar3d/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors meant for users (missing files, bad
input) print one sentence; a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .commands import register_modules
from .errors import Avatar3DError, os_error_sentence

COMMANDS = ("info", "models", "demo", "reconstruct", "track", "appearance", "avatar", "export", "view")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar3d", description="Phone video of a head -> drivable, relightable 3D avatar.")
    p.add_argument("--version", action="version", version=f"avatar3d {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    register_modules(sub, [f"avatar3d.commands.{name}" for name in COMMANDS])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    debug = args.debug or bool(os.environ.get("AVATAR3D_DEBUG"))
    name = " ".join(n for n in (args.command, getattr(args, "avatar_command", None)) if n)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("avatar3d: interrupted", file=sys.stderr)
        return 130
    except (Avatar3DError, ValueError, FileNotFoundError, KeyError, OSError) as e:
        if debug:
            raise
        if isinstance(e, OSError) and not isinstance(e, Avatar3DError):
            msg = os_error_sentence(e)  # the path, not "[Errno 30] Read-only file system: '...'"
        else:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"avatar3d {name}: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:  # unexpected: still one line, with how to get more
        if debug:
            raise
        print(f"avatar3d {name}: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
