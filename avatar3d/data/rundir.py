"""A run directory: the output folder of a stage (``avatar3d track --out DIR`` and the stages after it).

Three guarantees, for every stage that writes into one:

* **one owner at a time**: :meth:`RunDirectory.lock` takes an exclusive ``fcntl.flock`` on ``DIR/.lock``
  (released by the kernel when the process dies, so a killed run never leaves a stale lock); a second
  run gets :class:`RunDirectoryBusyError`, one sentence naming the other process's pid and command line;
* **no stale files**: ``DIR/manifest.json`` records, per stage, the files it wrote and its settings;
  :meth:`RunDirectory.replace_stage` removes what a stage wrote before, when the stage is redone (a rerun
  with fewer frames or without the overlay leaves nothing of the old run behind);
* **no half-written or shared temporary files**: writers go through :mod:`avatar3d.data.atomic`
  (unique temporary names, atomic rename).

Manifest format (``manifest.json``)::

    {"format": "avatar3d-run", "version": 1,
     "stages": {"capture": {"files": ["capture.npz", "images/000000.png", ...],
                            "dirs": ["images", "masks"], "settings": {...}, "complete": true}, ...}}

``files`` are relative to ``DIR``; ``dirs`` are folders the stage owns entirely (emptied when it is
redone, which also clears what an interrupted run wrote before it could record its files); a stage that
was started but not finished has ``"complete": false``.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Iterable, Optional

from ..errors import Avatar3DError
from .atomic import write_text

__all__ = ["RunDirectory", "RunDirectoryBusyError", "MANIFEST_FILE", "LOCK_FILE"]

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".lock"
_FORMAT = "avatar3d-run"


class RunDirectoryBusyError(Avatar3DError):
    """Another process holds the run directory's lock."""


def _command_line() -> str:
    """This process's command line as a user typed it (``avatar3d track ...`` rather than ``.../__main__.py``)."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name in ("__main__.py", "avatar3d"):
        argv[0] = "avatar3d"
    return " ".join(shlex.quote(a) for a in argv)


class RunDirectory:
    """The output directory ``path`` of a run: its lock and its manifest.

    Use as a context manager (``with RunDirectory(out) as run:``) to hold the lock for the run's duration;
    the manifest methods work without the lock too (a stage called on its own, e.g. from a test).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock_fd: Optional[int] = None
        self._created = False  #: :meth:`lock` made the directory (removed again if the run fails before writing)

    # ------------------------------------------------------------------ lock
    def lock(self) -> "RunDirectory":
        """Create the directory if needed and take its lock; raise :class:`RunDirectoryBusyError` if held."""
        import fcntl

        if self.path.exists() and not self.path.is_dir():
            raise Avatar3DError(f"{self.path} is a file; the output must be a directory")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_FILE
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode("utf-8", "replace")
                os.close(fd)
                raise RunDirectoryBusyError(f"{self.path} is in use by another avatar3d run ({self._describe(holder)}); "
                                            f"wait for it to finish or choose another output directory") from None
            except BaseException:
                os.close(fd)
                raise
            if self._is_current(fd, lock):
                break
            os.close(fd)  # the previous owner removed this lock file (and maybe the folder) as we opened it: again
            self.path.mkdir(parents=True, exist_ok=True)
        os.ftruncate(fd, 0)  # who holds it, for the message a second run prints
        os.write(fd, json.dumps({"pid": os.getpid(), "command": _command_line()}).encode())
        self._lock_fd = fd
        self._remove_leftover_temporaries()
        return self

    def _remove_leftover_temporaries(self) -> None:
        """Temporary files of a killed run (``.NAME.RANDOM.tmp.SUFFIX``): with the lock held, nobody is writing them."""
        for p in self.path.glob(".*.tmp*"):
            if p.is_file():
                p.unlink(missing_ok=True)

    @staticmethod
    def _is_current(fd: int, lock: Path) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            return False

    @staticmethod
    def _describe(holder: str) -> str:
        try:
            info = json.loads(holder)
            return f"process {int(info['pid'])}: {info['command']}"
        except (ValueError, KeyError, TypeError):
            return "a process that is still starting"

    def unlock(self) -> None:
        """Release the lock (the lock file stays: removing it would let two runs lock different files)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def __enter__(self) -> "RunDirectory":
        return self.lock()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self._created:
            self._remove_if_empty()
        self.unlock()

    def _remove_if_empty(self) -> None:
        """Undo :meth:`lock`'s folder when the run failed before writing anything (e.g. a missing input file)."""
        try:
            if {p.name for p in self.path.iterdir()} == {LOCK_FILE}:
                (self.path / LOCK_FILE).unlink()  # still locked: a run that opened it retries on a new file
                self.path.rmdir()
        except OSError:
            pass

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def manifest(self) -> dict:
        """The manifest as a dict (an empty one when the file is missing or unreadable)."""
        try:
            m = json.loads(self.manifest_path.read_text())
            if isinstance(m, dict) and m.get("format") == _FORMAT and isinstance(m.get("stages"), dict):
                return m
        except (OSError, ValueError):
            pass
        return {"format": _FORMAT, "version": 1, "stages": {}}

    def stage(self, name: str) -> Optional[dict]:
        """The manifest record of stage ``name`` (``files``, ``dirs``, ``settings``, ``complete``), or None."""
        return self.manifest()["stages"].get(name)

    def _save(self, manifest: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.manifest_path, json.dumps(manifest, indent=1))

    def replace_stage(self, name: str, dirs: Iterable[str] = (), settings: Optional[dict] = None, files: Iterable[str] = ()) -> None:
        """Start redoing stage ``name``: remove the files it wrote before and empty the folders it owns.

        Args:
            dirs: folders the stage owns entirely (emptied now and whenever it is redone).
            settings: recorded with the stage.
            files: the stage's fixed file names, removed even when the manifest does not list them (a
                folder written before manifests existed, or a run killed before it recorded its files).
        A file another stage also lists (e.g. ``params.npz``, written by fitting and rewritten by the
        photometric stage) is kept; redo stages latest first to remove such a file. The stage is then
        recorded as started (``complete: false``) with ``dirs``, so an interrupted run's files are found.
        """
        m = self.manifest()
        old = m["stages"].pop(name, None) or {}
        others = {f for rec in m["stages"].values() for f in rec.get("files", [])}
        for rel in {*old.get("files", []), *files}:
            if rel not in others:
                self._remove(rel)
        for rel in {*old.get("dirs", []), *dirs}:
            d = self._inside(rel)
            if d is not None and d.is_dir():
                for f in d.iterdir():
                    if f.is_file() or f.is_symlink():
                        f.unlink()
        m["stages"][name] = {"files": [], "dirs": sorted(set(dirs)), "settings": settings or {}, "complete": False}
        self._save(m)

    def record_stage(self, name: str, files: Iterable[str | Path], settings: Optional[dict] = None) -> None:
        """Record that stage ``name`` finished and wrote ``files`` (paths in the directory or relative to it)."""
        m = self.manifest()
        rec = m["stages"].setdefault(name, {"files": [], "dirs": [], "settings": {}})
        rec["files"] = sorted({self._relative(f) for f in files})
        if settings is not None:
            rec["settings"] = settings
        rec["complete"] = True
        self._save(m)

    def drop_stage(self, name: str, files: Iterable[str] = ()) -> None:
        """Remove stage ``name``'s files (as :meth:`replace_stage`) and its record, when it is not run this time."""
        self.replace_stage(name, files=files)
        m = self.manifest()
        m["stages"].pop(name, None)
        self._save(m)

    # ------------------------------------------------------------------ paths
    def _relative(self, f: str | Path) -> str:
        p = Path(f)
        if p.is_relative_to(self.path):  # DIR/images/x.png as the stages build it
            return p.relative_to(self.path).as_posix()
        if p.is_absolute():
            return p.resolve().relative_to(self.path.resolve()).as_posix()
        return p.as_posix()  # already relative to DIR

    def _inside(self, rel: str) -> Optional[Path]:
        """``DIR/rel`` if it stays inside ``DIR`` (a hand-edited manifest must not delete elsewhere)."""
        p = self.path / rel
        root = self.path.resolve()
        return p if p.resolve().is_relative_to(root) and p.resolve() != root else None

    def _remove(self, rel: str) -> None:
        p = self._inside(rel)
        if p is not None and (p.is_file() or p.is_symlink()):
            p.unlink()
