"""Write a set of files all-or-nothing: temporary names first, renamed only when every write succeeded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

Payload = Union[bytes, Callable[[Path], None]]


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
    try:
        for path, payload in zip(paths, files.values()):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmps.append((tmp, path))
            if isinstance(payload, (bytes, bytearray)):
                tmp.write_bytes(payload)
            else:
                payload(tmp)
        for tmp, path in tmps:
            backup = None
            if path.exists():
                backup = path.with_name(f".{path.name}.{os.getpid()}.bak")
                os.replace(path, backup)
            done.append((path, backup))
            os.replace(tmp, path)
    except BaseException:
        for path, backup in reversed(done):
            path.unlink(missing_ok=True)
            if backup is not None:
                os.replace(backup, path)
        for tmp, _ in tmps:
            tmp.unlink(missing_ok=True)
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
