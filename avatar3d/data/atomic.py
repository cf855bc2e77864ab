"""Atomic writes: a file appears complete or not at all, under a temporary name that no other run shares.

Every temporary file is created by :func:`temp_path` (``tempfile.mkstemp`` in the target's folder), so two
processes writing the same target never write into one temporary file, and the final ``os.replace`` stays
on one file system (atomic on POSIX).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

__all__ = ["file_sha256", "temp_path", "atomic_path", "write_text", "write_all", "png_bytes"]

Payload = Union[bytes, Callable[[Path], None]]

# mkstemp creates files 0600; a written file should get the permissions plain open() would give it.
_UMASK = os.umask(0)
os.umask(_UMASK)


def temp_path(path: str | Path, kind: str = "tmp") -> Path:
    """A new, empty, uniquely named file beside ``path``: ``.NAME.RANDOM.tmp.SUFFIX``.

    The suffix is kept because writers pick the format from it (``np.savez`` appends ``.npz`` to any
    other name, PyAV and OpenCV choose the container/codec by extension).
    """
    p = Path(path)
    fd, name = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=f".{kind}{p.suffix}")
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a unique temporary path to write; on success it replaces ``path``, on error it is removed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_all(files: dict[Path, Payload]) -> list[Path]:
    """Write ``{path: bytes or writer(tmp_path)}``; on any error leave the folder as it was and re-raise.

    A reader never sees a half-written export: each file appears complete via ``os.replace``, and if a
    later rename fails the earlier ones are undone (previous files at those paths are restored).
    """
    paths = [Path(p) for p in files]
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"cannot write {p}: a directory has that name")
    tmps: list[tuple[Path, Path]] = []
    done: list[tuple[Path, Path | None]] = []  # (written path, backup of what was there)
    made: list[Path] = []  # folders this call created, outermost first (removed again on failure)
    try:
        for path, payload in zip(paths, files.values()):
            made += reversed([p for p in path.absolute().parents if not p.exists()])
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(path)
            tmps.append((tmp, path))
            if isinstance(payload, (bytes, bytearray)):
                tmp.write_bytes(payload)
            else:
                payload(tmp)
        for tmp, path in tmps:
            backup = None
            if path.exists():
                backup = temp_path(path, "bak")
                try:
                    os.replace(path, backup)
                except BaseException:
                    backup.unlink(missing_ok=True)
                    raise
            done.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(done):
            path.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, path)
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
        for d in reversed(made):  # no empty output folder left behind
            try:
                d.rmdir()
            except OSError:
                pass
        raise
    for _, backup in done:
        if backup is not None:
            backup.unlink(missing_ok=True)
    return paths


def png_bytes(image) -> bytes:
    """PNG encoding of an (H, W, 3) uint8 image."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def file_sha256(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks (ties a record to a file's content, not its name)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
