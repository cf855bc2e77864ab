"""Rendering a Gaussian head avatar to images or a video: ``avatar3d avatar render`` (:func:`render_avatar`).

Each frame of a :class:`~avatar3d.avatar.drive.Drive` is rendered by :meth:`GaussianHead.forward` over a plain
background (white unless asked otherwise) and written as ``DIR/<frame name>.png`` (the tracked frames' names
are kept, so a render lines up with the tracking directory's ``images/``) or, with ``video``, as
``DIR/render.mp4``.

**Relighting** (:class:`Relight`): a relightable avatar (``appearance.relightable``) is lit by an environment
(:func:`~avatar3d.render.lighting.environment_from_spec`: studio, sunset, overcast, capture or a ``.hdr``/``.exr``
file), turned about the vertical by a fixed angle or, over the frames, from one angle to another (a rotating
light), with an optional directional light ``AZ,EL,INTENSITY[,R,G,B]`` added (or alone). Directions are the
avatar's world frame: the tracking camera looks at the face from +Z, +Y is up, +X the head's left (the right of
the picture). An avatar that bakes its capture's light in is refused in one sentence before anything is written.

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
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..data.atomic import png_bytes, write_all
from ..data.rundir import RunDirectory
from ..errors import Avatar3DError, BadInputError, os_error_sentence
from ..render.lighting import CAPTURE, SPEC_WIDTH, EnvironmentMap, directional_light, environment_from_spec, parse_light, rotate_environment
from ..train.report import Progress
from .drive import AvatarDir, Drive, DriveRequest, build_drive, open_avatar
from .model import GaussianHead

__all__ = ["RenderResult", "render_frames", "render_avatar", "STAGE", "VIDEO_FILE", "parse_background", "Relight", "parse_rotation",
           "frame_lights", "capture_light"]

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


def parse_rotation(text: str) -> tuple[float, float]:
    """``"DEG"`` (every frame) or ``"FROM:TO"`` (the first frame to the last, evenly) -> (from, to) degrees."""
    parts = str(text).split(":")
    try:
        if len(parts) not in (1, 2):
            raise ValueError
        a, b = float(parts[0]), float(parts[-1])
    except ValueError:
        raise BadInputError(f"--env-rotation expects degrees (e.g. 90) or FROM:TO over the frames (e.g. 0:360), got {text!r}") from None
    if not (np.isfinite(a) and np.isfinite(b)) or max(abs(a), abs(b)) > 3600:
        raise BadInputError(f"--env-rotation {text}: the angles must be degrees between -3600 and 3600")
    return a, b


@dataclass(frozen=True)
class Relight:
    """The light of a relit render (module docstring); the default lights nothing anew (the capture's own light).

    Attributes:
        env: an environment spec (``studio``, ``sunset``, ``overcast``, ``capture``, a ``.hdr``/``.exr`` path), or None.
        rotation: (first, last) frame's rotation about +Y, degrees (equal: a fixed rotation).
        light: a directional light ``AZ,EL,INTENSITY[,R,G,B]`` added to ``env`` (alone without one), or None.
    """

    env: Optional[str] = None
    rotation: tuple[float, float] = (0.0, 0.0)
    light: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.env is not None or self.light is not None or self.rotation != (0.0, 0.0)

    def settings(self) -> dict:
        """What the render's manifest records."""
        return {"environment": self.env, "env_rotation": list(self.rotation), "light": self.light} if self.active else {}


def capture_light(avatar: GaussianHead) -> Optional[EnvironmentMap]:
    """The capture's light as the avatar's appearance estimated it (None when it does not offer one)."""
    get = getattr(avatar.appearance, "capture_environment", None)
    return get() if callable(get) else None


def frame_lights(relight: Relight, frames: int, capture: Optional[EnvironmentMap] = None) -> Callable[[int], Optional[EnvironmentMap]]:
    """Frame number -> the environment of that frame (None: the capture's own light) for ``frames`` frames.

    Every spec is read and checked here, once (one sentence per problem). The unturned light (the map plus the
    directional light) is made once; each frame's is that one turned (:func:`rotate_environment`), which records
    its source, so the appearance prefilters the source once and turns the result per frame.
    """
    a, b = relight.rotation
    angle = (lambda i: a) if frames < 2 or a == b else (lambda i: a + (b - a) * i / (frames - 1))  # noqa: E731
    if relight.env is None and relight.light is None:
        relight = Relight(CAPTURE, relight.rotation)
    if relight.env == CAPTURE and relight.light is None and a == b == 0.0:
        return lambda i: None  # the capture's own light, as the appearance holds it
    base = environment_from_spec(relight.env, 0.0, capture) if relight.env is not None else None
    if relight.light is not None:
        width = max(SPEC_WIDTH, base.shape[1] if base is not None else 0)
        az, el, intensity, rgb = parse_light(relight.light)
        lamp = directional_light(az, el, intensity, rgb, width=width)
        base = lamp if base is None else EnvironmentMap(rotate_environment(base, 0.0, width).pixels + lamp.pixels)

    memo: dict[float, EnvironmentMap] = {}  # the last frame's: a fixed rotation makes one map for every frame

    def light(i: int) -> EnvironmentMap:
        rot = float(angle(i))
        if rot not in memo:
            memo.clear()
            memo[rot] = rotate_environment(base, rot)
        return memo[rot]

    return light


@torch.no_grad()
def render_frames(avatar: GaussianHead, drive: Drive, background: Sequence[float] = (1.0, 1.0, 1.0), backend: str = "auto",
                  lights: Optional[Callable[[int], Optional[EnvironmentMap]]] = None) -> Iterator[np.ndarray]:
    """Each frame of ``drive`` rendered: (H, W, 3) uint8 RGB, one at a time (memory does not grow with B).

    ``lights``: frame number -> its environment (:func:`frame_lights`), set on the avatar's appearance when it
    changes; None: the appearance as it is.
    """
    bg = torch.tensor([float(c) for c in background], dtype=torch.float32)
    current: object = ()  # nothing set yet
    for b in range(len(drive)):
        rows = slice(b, b + 1)
        if lights is not None:
            env = lights(b)
            if env is not current:
                avatar.appearance.set_environment(env)
                current = env
        img = avatar(drive.expression[rows], drive.pose[rows], drive.transl[rows], drive.camera(rows), background=bg,
                     backend=backend).image[0]
        yield img.clamp_(0, 1).mul_(255).add_(0.5).to(torch.uint8).numpy()  # in place: the frame's image is ours


def render_avatar(avatar_dir: str | Path | AvatarDir, out: str | Path, request: DriveRequest = DriveRequest(), video: bool = False,
                  background: Sequence[float] = (1.0, 1.0, 1.0), progress: bool = False, backend: str = "auto",
                  relight: Relight = Relight()) -> RenderResult:
    """Render the avatar of ``avatar_dir`` as ``request`` asks (:mod:`.drive`) into the folder ``out``.

    Args:
        avatar_dir: an avatar directory (``avatar.pt``), or one already read by :func:`~.drive.open_avatar`.
        out: the output folder: ``<frame name>.png`` per frame, or ``render.mp4`` with ``video``.
        background: (3,) colour in [0, 1] behind the head.
        progress: a progress bar on stderr.
        relight: the light of the frames (:class:`Relight`; the avatar must be relightable).
    Raises:
        BadInputError: one sentence per problem (not an avatar, bad frames or settings, a foreign driver, a bad
            environment or light, an avatar that cannot be relit).
    """
    t0 = time.perf_counter()
    src = avatar_dir if isinstance(avatar_dir, AvatarDir) else open_avatar(avatar_dir)
    drive = build_drive(src, request)  # every input checked before the output folder is touched
    lights = None
    if relight.active:
        if not src.avatar.appearance.relightable:
            src.avatar.appearance.set_environment(None)  # its one sentence (the contract's): train with --relightable
        lights = frame_lights(relight, len(drive), capture_light(src.avatar))
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
        settings = {"frames": len(drive), "width": drive.width, "height": drive.height, "video": bool(video), **relight.settings()}
        frames = render_frames(src.avatar, drive, background, backend, lights)
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
