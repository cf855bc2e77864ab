"""Rendering a Gaussian head avatar to images or a video: ``avatar3d avatar render`` (:func:`render_avatar`).

Each frame of a :class:`~avatar3d.avatar.drive.Drive` is rendered by :meth:`GaussianHead.forward` over a plain
background (white unless asked otherwise) and written as ``DIR/<frame name>.png`` (the tracked frames' names
are kept, so a render lines up with the tracking directory's ``images/``) or, with ``video``, as
``DIR/render.mp4``.

The output folder is a :class:`~avatar3d.data.rundir.RunDirectory` (one run at a time; its manifest records
stage ``avatar_render``): PNGs are rendered into memory and written together at the end
(:func:`~avatar3d.data.atomic.write_all`), the mp4 under a temporary name, so a failed or interrupted run
leaves an earlier render as it was; files of an earlier render that this one did not write are removed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..data.atomic import png_bytes, write_all
from ..data.rundir import RunDirectory
from ..errors import Avatar3DError, BadInputError, os_error_sentence
from ..train.report import Progress
from .drive import AvatarDir, Drive, DriveRequest, build_drive, open_avatar
from .model import GaussianHead

__all__ = ["RenderResult", "render_frames", "render_avatar", "STAGE", "VIDEO_FILE", "parse_background"]

STAGE = "avatar_render"
VIDEO_FILE = "render.mp4"


@dataclass
class RenderResult:
    """What :func:`render_avatar` wrote."""

    out: Path  #: the output folder
    files: list[Path]  #: the PNGs, or the one mp4
    frames: int
    width: int
    height: int
    seconds: float  #: wall seconds of the whole call
    render_seconds: float  #: of which rendering (forward passes)


def parse_background(text: str) -> tuple[float, float, float]:
    """``"R,G,B"`` in 0..1 (``1,1,1`` white) or 0..255 (``255,255,255``) -> colours in [0, 1]."""
    try:
        v = [float(x) for x in str(text).split(",")]
    except ValueError:
        v = []
    if len(v) != 3 or not all(0 <= x <= 255 for x in v):
        raise BadInputError(f"--background expects R,G,B (e.g. 1,1,1 for white or 255,255,255), got {text!r}")
    scale = 255.0 if max(v) > 1 else 1.0
    return (v[0] / scale, v[1] / scale, v[2] / scale)


@torch.no_grad()
def render_frames(avatar: GaussianHead, drive: Drive, background: Sequence[float] = (1.0, 1.0, 1.0),
                  backend: str = "auto") -> Iterator[np.ndarray]:
    """Each frame of ``drive`` rendered: (H, W, 3) uint8 RGB, one at a time (memory does not grow with B)."""
    bg = torch.tensor([float(c) for c in background], dtype=torch.float32)
    for b in range(len(drive)):
        rows = slice(b, b + 1)
        img = avatar(drive.expression[rows], drive.pose[rows], drive.transl[rows], drive.camera(rows), background=bg,
                     backend=backend).image[0]
        yield img.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8).numpy()  # in place: the frame's image is ours


def render_avatar(avatar_dir: str | Path | AvatarDir, out: str | Path, request: DriveRequest = DriveRequest(), video: bool = False,
                  background: Sequence[float] = (1.0, 1.0, 1.0), progress: bool = False, backend: str = "auto") -> RenderResult:
    """Render the avatar of ``avatar_dir`` as ``request`` asks (:mod:`.drive`) into the folder ``out``.

    Args:
        avatar_dir: an avatar directory (``avatar.pt``), or one already read by :func:`~.drive.open_avatar`.
        out: the output folder: ``<frame name>.png`` per frame, or ``render.mp4`` with ``video``.
        background: (3,) colour in [0, 1] behind the head.
        progress: a progress bar on stderr.
    Raises:
        BadInputError: one sentence per problem (not an avatar, bad frames or settings, a foreign driver).
    """
    t0 = time.perf_counter()
    src = avatar_dir if isinstance(avatar_dir, AvatarDir) else open_avatar(avatar_dir)
    drive = build_drive(src, request)  # every input checked before the output folder is touched
    if video and (drive.width % 2 or drive.height % 2):
        raise BadInputError(f"an mp4 needs an even image size, got {drive.width}x{drive.height}; choose an even --resolution")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"cannot write the render into {out}: it is a file, not a folder")
    with ExitStack() as held:
        try:
            run = held.enter_context(RunDirectory(out))
        except OSError as e:
            if isinstance(e, Avatar3DError):
                raise
            raise Avatar3DError(f"cannot write the render: {os_error_sentence(e)}; choose another folder with --out") from None
        settings = {"frames": len(drive), "width": drive.width, "height": drive.height, "video": bool(video)}
        frames = render_frames(src.avatar, drive, background, backend)
        with Progress(len(drive), "render", progress, unit="frame", dynamic_ncols=True) as bar:
            timed = _Timed(frames, bar)
            files = _write_video(out, timed, drive) if video else _write_pngs(out, timed, drive)
        _record(run, files, settings)
    return RenderResult(out, files, len(drive), drive.width, drive.height, time.perf_counter() - t0, timed.seconds)


class _Timed:
    """Iterates frames, timing their production (the forward passes) and advancing a progress bar."""

    def __init__(self, frames: Iterator[np.ndarray], bar: Progress):
        self.frames, self.bar, self.seconds = frames, bar, 0.0

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            t = time.perf_counter()
            try:
                img = next(self.frames)
            except StopIteration:
                return
            self.seconds += time.perf_counter() - t
            self.bar.update()
            yield img


def _write_pngs(out: Path, frames: _Timed, drive: Drive) -> list[Path]:
    """Every frame PNG-encoded in memory, then written together (all or none)."""
    payload = {out / f"{name}.png": png_bytes(img) for name, img in zip(drive.names, frames)}
    return write_all(payload)


def _write_video(out: Path, frames: _Timed, drive: Drive) -> list[Path]:
    from ..tracking.outputs import write_overlay

    return [write_overlay(out / VIDEO_FILE, iter(frames), drive.fps, drive.width, drive.height, len(drive), progress=False)]


def _record(run: RunDirectory, files: list[Path], settings: dict) -> None:
    """Record the stage's files and remove those of an earlier render that this one did not write."""
    old = run.stage(STAGE) or {}
    run.record_stage(STAGE, files, settings)
    keep = {run.path / f for f in (run.stage(STAGE) or {}).get("files", [])}
    for rel in old.get("files", []):
        p = run.path / rel
        if p not in keep and p.parent.resolve() == run.path.resolve() and p.is_file():
            p.unlink()
