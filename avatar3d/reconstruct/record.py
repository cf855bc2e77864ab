"""``DIR/reconstruct.json``: what a reconstruct run is (video, settings, versions) and how far it got (each stage's
status, seconds and outputs), rewritten atomically after every stage.

Format::

    {"format": "avatar3d-reconstruct", "version": 1, "video": "/abs/clip.mp4", "video_sha256": "...",
     "settings": {"model": ..., "preset": ..., "relightable": ..., "plan": {...}},
     "versions": {"avatar3d": ..., "torch": ..., "mediapipe": ..., "numpy": ..., "python": ...},
     "stages": {"track": {"status": "done", "seconds": 12.3, "outputs": ["track"], "note": "..."}, ...}}

``status`` is ``done``, ``failed`` (with ``error``: the sentence) or ``pending`` (not run yet, or interrupted:
``note`` says so); ``seconds`` (wall) and ``cpu_seconds`` (the process's, all threads) add up over resumed parts;
``outputs`` are paths relative to ``DIR``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Iterable, Optional

from ..data.atomic import write_text

__all__ = ["RECORD_FILE", "FORMAT", "RunRecord", "package_versions"]

RECORD_FILE = "reconstruct.json"
FORMAT = "avatar3d-reconstruct"
STATUSES = ("done", "failed", "pending")


def package_versions() -> dict[str, Optional[str]]:
    """The versions that decide a run's numbers: avatar3d, torch, mediapipe, numpy, python (None: not installed)."""
    from importlib import metadata

    from .. import __version__

    out: dict[str, Optional[str]] = {"avatar3d": __version__}
    for name in ("torch", "mediapipe", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


class RunRecord:
    """The record of the run in ``directory`` (read when it exists; :meth:`save` writes it atomically)."""

    def __init__(self, directory: Path, data: dict[str, Any]):
        self.directory, self.data = Path(directory), data

    @property
    def path(self) -> Path:
        return self.directory / RECORD_FILE

    @classmethod
    def read(cls, directory: Path) -> Optional["RunRecord"]:
        """The record in ``directory``, or None when there is none (or it is not a reconstruct record)."""
        p = Path(directory) / RECORD_FILE
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("stages"), dict):
            return None
        return cls(Path(directory), data)

    @classmethod
    def new(cls, directory: Path, video: Path, digest: str, settings: dict[str, Any], stages: Iterable[str]) -> "RunRecord":
        data = {"format": FORMAT, "version": 1, "video": str(video.resolve()), "video_sha256": digest, "settings": settings,
                "versions": package_versions(), "stages": {s: {"status": "pending", "seconds": 0.0, "outputs": []} for s in stages}}
        return cls(Path(directory), data)

    @property
    def settings(self) -> dict[str, Any]:
        return self.data.get("settings", {})

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"status": "pending", "seconds": 0.0, "outputs": []})

    def status(self, name: str) -> str:
        return self.stage(name).get("status", "pending")

    def set_stage(self, name: str, status: str, seconds: float, outputs: Iterable[str] = (), **extra: Any) -> None:
        """Record stage ``name`` (``seconds`` of this part are added to earlier parts' of an unfinished stage) and save."""
        assert status in STATUSES, status
        old = self.stage(name)
        resumed = old.get("status") != "done"  # an unfinished stage's earlier parts count too
        before, cpu = (float(old.get("seconds", 0.0)), float(old.get("cpu_seconds", 0.0))) if resumed else (0.0, 0.0)
        rec = {"status": status, "seconds": round(before + float(seconds), 3), "outputs": sorted(set(outputs))}
        if "cpu_seconds" in extra:
            extra["cpu_seconds"] = round(cpu + float(extra["cpu_seconds"]), 3)
        rec.update({k: v for k, v in extra.items() if v is not None})
        self.data["stages"][name] = rec
        self.save()

    def reset(self, stages: Iterable[str], settings: dict[str, Any], video: Path, digest: str) -> None:
        """Start over (``--restart``): every stage pending, the new settings and versions."""
        self.data.update(settings=settings, video=str(video.resolve()), video_sha256=digest, versions=package_versions(),
                         stages={s: {"status": "pending", "seconds": 0.0, "outputs": []} for s in stages})
        self.save()

    def save(self) -> None:
        self.data["versions"] = self.data.get("versions") or package_versions()
        write_text(self.path, json.dumps(self.data, indent=1, allow_nan=False) + "\n")
