"""User-facing errors: one readable sentence each; the CLI prints them without a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class Avatar3DError(Exception):
    """An error whose message is meant for the user as is."""


class MissingFileError(Avatar3DError, FileNotFoundError):
    """A required input file is absent; the message names it and says how to obtain it."""

    def __init__(self, path, how: str):
        self.path = str(path)
        super().__init__(f"{self.path} not found. {how}")


class BadInputError(Avatar3DError, ValueError):
    """Input that exists but cannot be used (corrupt, wrong shape, wrong kind)."""



def os_error_sentence(e: OSError, writing: str = "") -> str:
    """One sentence naming the path of an ``OSError`` (not ``[Errno 20] Not a directory: '...'``).

    ``writing``: what the path was written as (e.g. "the screenshot"); empty when unknown. A path under
    an existing *file* (ENOTDIR, or EEXIST while creating folders) names that file: it is what to change.
    """
    reason = (e.strerror or str(e)).rstrip(".")
    reason = reason[:1].lower() + reason[1:]
    if e.filename is None:
        return f"cannot write {writing}: {reason}" if writing else reason
    path = Path(os.fsdecode(e.filename))
    subject = f"cannot write {writing} {path}" if writing else str(path)
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
        if blocker == path:
            return f"{subject}: it is a file, not a folder" if writing else f"{path} is a file, not a folder"
        if blocker is not None:
            return f"{subject}: {blocker} is a file, not a folder"
    if e.errno == errno.EISDIR:
        return f"{subject}: it is a folder" if writing else f"{path} is a folder"
    return f"{subject}: {reason}"
