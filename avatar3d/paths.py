"""Where avatar3d keeps caches and finds optional data."""

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
