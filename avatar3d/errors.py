"""User-facing errors: one readable sentence each; the CLI prints them without a traceback."""

from __future__ import annotations


class Avatar3DError(Exception):
    """An error whose message is meant for the user as is."""


class MissingFileError(Avatar3DError, FileNotFoundError):
    """A required input file is absent; the message names it and says how to obtain it."""

    def __init__(self, path, how: str):
        self.path = str(path)
        super().__init__(f"{self.path} not found. {how}")


class BadInputError(Avatar3DError, ValueError):
    """Input that exists but cannot be used (corrupt, wrong shape, wrong kind)."""
