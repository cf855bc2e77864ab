"""Where avatar3d keeps caches and finds optional data, and whether an output path can be written."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout (for ../shared/data beside it)
ASSETS = Path(__file__).resolve().parent / "assets"  # small generated data the runtime reads (installed with the package)


def cache_dir(sub: str = "") -> Path:
    """Per-user cache (``$AVATAR3D_CACHE`` or ``~/.cache/avatar3d``), created on demand."""
    base = Path(os.environ.get("AVATAR3D_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avatar3d"))
    d = base / sub if sub else base
    d.mkdir(parents=True, exist_ok=True)
    return d


def shared_data_dir() -> Optional[Path]:
    """The real test data folder (``$AVATAR3D_SHARED_DATA`` or ``../shared/data`` beside the checkout)."""
    env = os.environ.get("AVATAR3D_SHARED_DATA")
    cands = [Path(env)] if env else []
    cands.append(REPO_ROOT.parent / "shared" / "data")
    for c in cands:
        if c.is_dir():
            return c
    return None


def check_output_path(path: str | Path, what: str) -> Path:
    """Fail early, in one sentence naming ``path``, when ``what`` (e.g. "the screenshot") cannot be written
    there: a parent that is a file, or the nearest existing folder not writable. Creates nothing, so an
    error leaves no empty folder behind."""
    from .errors import BadInputError

    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"cannot write {what} {path}: it is a folder")
    existing = next(p for p in path.absolute().parents if p.exists())
    if not existing.is_dir():
        raise BadInputError(f"cannot write {what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write {what} {path}: {existing} is not writable (read-only or no permission)")
    return path
