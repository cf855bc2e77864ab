"""What drives an avatar: per-frame head-model parameters and cameras from what a user asks for.

A :class:`Drive` is B frames of (expression, pose, transl) for the avatar's head model and a camera per
frame, with a file name per frame. :func:`build_drive` makes one from a :class:`DriveRequest`:

* **own track** (default): the frames of the tracking directory the avatar was trained on (``avatar.pt``
  records it), all of them or a slice, with their own parameters and cameras;
* **cross-reenactment** (``drive``: another tracking directory or a ``.npz``): the driver's expression, jaw,
  eyes and head rotation; the avatar keeps its identity, its camera and its mean head position, and the
  driver's translation is applied relative to the driver's mean (a driver that moved 2 cm left moves the
  avatar 2 cm left). Rotations and translations are carried over as seen from the driver's camera, so a
  driver filmed with another camera still turns the avatar the way it turned in its own video;
* **neutral** (``neutral``): one frame at zero expression and pose, at the avatar's mean head position;
* **settings** (``settings``: ``{name: value}``) on top of every frame: the head model's expression names
  (``jawOpen``) and ``<joint>_pitch|yaw|roll`` in degrees (``head_yaw``, ``jaw_pitch``), the names the
  viewer's sliders and ``avatar3d view --set`` use (:mod:`avatar3d.viewer.params`);
* **yaw sweep** (``yaw``: degrees): the first frame turned about the vertical (world +Y, the model's up:
  ``head_yaw``'s axis) by each angle, one frame per angle.

The avatar's camera (for cross-reenactment, neutral and sweeps) is that of its tracked frame nearest its
mean head position. Shapes: B frames, E expressions, J joints.
"""

from __future__ import annotations

import difflib
import math
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..data.sequence import PARAMS_FILE, TrackedSequence
from ..errors import BadInputError
from ..geometry import axis_angle_to_matrix_np, matrix_to_axis_angle_np
from ..models.base import HeadModel
from ..render.camera import Camera
from ..viewer.params import SliderSpec, check_value, slider_specs
from .model import GaussianHead
from .train import AVATAR_FILE, read_avatar

__all__ = ["AvatarDir", "open_avatar", "Drive", "DriveRequest", "Driver", "load_driver", "build_drive", "parse_frames",
           "parse_yaw", "yaw_sweep", "apply_settings", "DEFAULT_YAW_STEP", "DEFAULT_FPS"]

#: degrees between two frames of a yaw sweep given without a step count
DEFAULT_YAW_STEP = 5.0
#: frames per second of a video without a source frame rate (neutral, sweeps of a neutral head)
DEFAULT_FPS = 10.0


# ---------------------------------------------------------------------------------------------- the avatar
class AvatarDir(NamedTuple):
    """An avatar directory, read: the avatar and what ``avatar.pt`` records about its training."""

    path: Path
    avatar: GaussianHead
    track_dir: Optional[Path]  #: the tracking directory it was trained on (None when not recorded)
    resolution: Optional[int]  #: the width it was trained at, pixels (None when not recorded)


def open_avatar(avatar_dir: str | Path) -> AvatarDir:
    """Read ``AVATAR_DIR/avatar.pt`` (one sentence when the folder is not an avatar or the file is unreadable)."""
    d = Path(avatar_dir)
    if not d.is_dir():
        raise BadInputError(f"{d} is not an avatar directory (no such folder); train one with `avatar3d avatar train TRACK_DIR --out {d}`")
    if not (d / AVATAR_FILE).is_file():
        raise BadInputError(f"{d} is not an avatar directory (no {AVATAR_FILE}); train one with `avatar3d avatar train TRACK_DIR --out {d}`")
    rec = read_avatar(d)
    return AvatarDir(d, rec.avatar, rec.track_dir, rec.resolution)


# ---------------------------------------------------------------------------------------------- a drive
@dataclass(frozen=True)
class Drive:
    """B frames of parameters and cameras for one avatar (``len(drive)`` is B)."""

    names: list[str]  #: B file stems
    expression: Tensor  #: (B, E) float32
    pose: Tensor  #: (B, J, 3) float32 axis-angle, radians
    transl: Tensor  #: (B, 3) float32 metres
    K: Tensor  #: (B, 3, 3) float32 intrinsics, pixel centres at integers
    world_to_cam: Tensor  #: (B, 4, 4) float32 OpenCV extrinsics
    width: int
    height: int
    fps: float

    def __len__(self) -> int:
        return len(self.names)

    def camera(self, rows: Tensor | slice) -> Camera:
        """The cameras of frames ``rows``."""
        return Camera(self.K[rows], self.world_to_cam[rows], self.width, self.height)


@dataclass
class DriveRequest:
    """What to render (see the module docstring); every field optional.

    Attributes:
        drive: a tracking directory or ``.npz`` of another sequence (cross-reenactment); None: the avatar's own track.
        frames: a slice of the driving sequence's frame numbers (None: all).
        neutral: start from zero expression and pose instead of tracked frames.
        settings: ``{name: value}`` set on every frame (expression names; ``<joint>_pitch|yaw|roll`` in degrees).
        yaw: degrees of a head-yaw sweep around the first frame (None: no sweep).
        resolution: image width in pixels (None: the avatar's training resolution).
    """

    drive: Optional[str | Path] = None
    frames: Optional[slice] = None
    neutral: bool = False
    settings: Mapping[str, float] = field(default_factory=dict)
    yaw: Optional[Sequence[float]] = None
    resolution: Optional[int] = None


# ---------------------------------------------------------------------------------------------- parsing
def parse_frames(text: str) -> slice:
    """``"a:b"`` (frames a .. b-1, either end optional, Python style), ``"a:b:step"`` or ``"a"`` (one frame)."""
    parts = str(text).split(":")
    try:
        if len(parts) == 1:
            a = int(parts[0])
            return slice(a, a + 1 if a != -1 else None)
        if len(parts) > 3:
            raise ValueError
        a, b, *s = (int(p) if p.strip() else None for p in parts)
        step = s[0] if s else None
    except ValueError:
        raise BadInputError(f"--frames expects FIRST:END (e.g. 0:30, frames 0 to 29), FIRST:END:STEP or one frame number, got {text!r}") from None
    if step is not None and step <= 0:
        raise BadInputError(f"--frames {text}: the step must be a positive number of frames")
    return slice(a, b, step)


def parse_yaw(text: str) -> list[float]:
    """``"-45:45"`` (every :data:`DEFAULT_YAW_STEP` degrees) or ``"-45:45:STEPS"`` -> the sweep's angles in degrees."""
    parts = str(text).split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        lo, hi = float(parts[0]), float(parts[1])
        steps = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise BadInputError(f"--yaw expects FROM:TO[:STEPS] in degrees (e.g. -45:45 or -45:45:19), got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(abs(lo), abs(hi)) > 180:
        raise BadInputError(f"--yaw {text}: the angles must be degrees between -180 and 180")
    if steps is None:
        steps = int(round(abs(hi - lo) / DEFAULT_YAW_STEP)) + 1
    if not 1 <= steps <= 721:
        raise BadInputError(f"--yaw {text}: the number of steps must be between 1 and 721")
    return [lo] if steps == 1 else [float(v) for v in np.linspace(lo, hi, steps)]


def _select(n: int, frames: Optional[slice], what: str) -> list[int]:
    """Frame numbers of ``frames`` in a sequence of ``n``; one sentence when it reaches outside or selects nothing."""
    if frames is None:
        return list(range(n))
    for end in (frames.start, frames.stop):
        if end is not None and not -n <= end <= n:
            raise BadInputError(f"frames {_show(frames)} are outside {what}, which has {n} frames (0..{n - 1})")
    rows = list(range(n))[frames]
    if not rows:
        raise BadInputError(f"frames {_show(frames)} select no frame of {what} ({n} frames, 0..{n - 1})")
    return rows


def _show(s: slice) -> str:
    a, b = "" if s.start is None else s.start, "" if s.stop is None else s.stop
    return f"{a}:{b}" + (f":{s.step}" if s.step not in (None, 1) else "")


# ---------------------------------------------------------------------------------------------- drivers
@dataclass
class Driver:
    """Another sequence's parameters (n frames), for cross-reenactment."""

    path: Path
    model: str  #: the head model it was tracked with ("" when the file does not say)
    expression: np.ndarray  #: (n, E)
    pose: np.ndarray  #: (n, J, 3)
    transl: np.ndarray  #: (n, 3)
    world_to_cam: Optional[np.ndarray]  #: (n, 4, 4) or None (then taken to be the avatar's camera)
    names: list[str]
    fps: float
    expression_names: list[str] = field(default_factory=list)
    joint_names: list[str] = field(default_factory=list)


def load_driver(path: str | Path) -> Driver:
    """A tracking directory, its ``params.npz``, or an ``.npz`` with ``expression`` (n, E) and optionally ``pose``
    (n, J, 3) and ``transl`` (n, 3)."""
    p = Path(path)
    if p.is_dir() or p.name == PARAMS_FILE:
        seq = TrackedSequence.load(p if p.is_dir() else p.parent)
        names = [Path(n).stem for n in seq.frame_names] if len(seq.frame_names) == seq.num_frames else [f"{i:06d}" for i in range(seq.num_frames)]
        return Driver(p, seq.model, seq.expression, seq.pose, seq.transl, seq.world_to_cam, names, float(seq.fps or DEFAULT_FPS),
                      list(seq.expression_names), list(seq.joint_names))
    if not p.is_file():
        raise BadInputError(f"{p} does not exist; --drive takes a tracking directory (avatar3d track --out) or a params .npz")
    return _plain_driver(p)


def _plain_driver(p: Path) -> Driver:
    try:
        z = np.load(p, allow_pickle=False)
        arrays = {k: np.asarray(z[k], np.float32) for k in ("expression", "pose", "transl") if k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise BadInputError(f"{p} is not a readable .npz of driving parameters ({type(e).__name__})") from None
    e = arrays.get("expression")
    if e is None or e.ndim != 2:
        raise BadInputError(f"{p} holds no 'expression' array of shape (frames, expressions) to drive an avatar with")
    n = e.shape[0]
    pose = arrays.get("pose", np.zeros((n, 1, 3), np.float32))
    transl = arrays.get("transl", np.zeros((n, 3), np.float32))
    if pose.ndim != 3 or pose.shape[0] != n or pose.shape[2] != 3 or transl.shape != (n, 3):
        raise BadInputError(f"{p}: 'pose' must be (frames, joints, 3) and 'transl' (frames, 3) for its {n} frames")
    if not all(np.isfinite(a).all() for a in (e, pose, transl)):
        raise BadInputError(f"{p} holds NaN or infinite parameters")
    return Driver(p, "", e, pose, transl, None, [f"{i:06d}" for i in range(n)], DEFAULT_FPS)


def _check_driver(driver: Driver, model: HeadModel) -> None:
    """One sentence when the driver was tracked with another head model than the avatar's."""
    E, J = driver.expression.shape[1], driver.pose.shape[1]
    names_ok = not driver.expression_names or driver.expression_names == list(model.expression_names)
    joints_ok = not driver.joint_names or driver.joint_names == list(model.joint_names)
    plain = not driver.joint_names and J == 1  # a plain .npz without pose: only the expression must fit
    if names_ok and joints_ok and E == model.num_expression and (plain or J == model.num_joints):
        return
    which = f"the head model {driver.model!r}" if driver.model else "another head model"
    raise BadInputError(f"{driver.path} was tracked with {which} ({E} expressions, {J} joints), but this avatar is bound to "
                        f"{model.name!r} ({model.num_expression} expressions, {model.num_joints} joints); drive it with a "
                        f"sequence tracked with the same model (avatar3d track --model {model.name})")


# ---------------------------------------------------------------------------------------------- building
def _f32(a) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


class _Home(NamedTuple):
    """The avatar's own framing: its mean head position and the camera of its frame nearest to it."""

    transl: np.ndarray  #: (3,)
    K: np.ndarray  #: (3, 3) at the drive's resolution
    world_to_cam: np.ndarray  #: (4, 4)
    fps: float


def _home(track: TrackedFrames) -> _Home:
    seq = track.sequence
    mean = seq.transl.mean(0)
    ref = int(np.argmin(np.linalg.norm(seq.transl - mean, axis=1)))
    return _Home(mean.astype(np.float32), np.asarray(track.K[ref], np.float32), seq.world_to_cam[ref].astype(np.float32),
                 float(seq.fps or DEFAULT_FPS))


def _own_track(src: AvatarDir, resolution: Optional[int]) -> TrackedFrames:
    if src.track_dir is None:
        raise BadInputError(f"{src.path / AVATAR_FILE} does not record the tracking directory it was trained on; retrain it")
    if not (src.track_dir / PARAMS_FILE).is_file():
        raise BadInputError(f"the tracking directory this avatar was trained on ({src.track_dir}) is gone: its camera and frames "
                            f"are needed to render it; restore it or retrain the avatar")
    track = TrackedFrames(src.track_dir, resolution)
    model = src.avatar.head_model
    seq = track.sequence
    if seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
        raise BadInputError(f"{src.track_dir} no longer fits the avatar's head model {model.name!r}; retrain the avatar")
    return track


def _tracked(track: TrackedFrames, rows: list[int]) -> Drive:
    seq = track.sequence
    names = [track.name(i) for i in rows]
    return Drive(names, _f32(seq.expression[rows]), _f32(seq.pose[rows]), _f32(seq.transl[rows]), _f32(track.K[rows]),
                 _f32(seq.world_to_cam[rows]), track.width, track.height, float(seq.fps or DEFAULT_FPS))


def _neutral(model: HeadModel, home: _Home, width: int, height: int) -> Drive:
    return Drive(["neutral"], torch.zeros(1, model.num_expression), torch.zeros(1, model.num_joints, 3), _f32(home.transl[None]),
                 _f32(home.K[None]), _f32(home.world_to_cam[None]), width, height, home.fps)


def _reenact(driver: Driver, rows: list[int], model: HeadModel, home: _Home, width: int, height: int) -> Drive:
    """The driver's frames ``rows`` on the avatar (see the module docstring)."""
    n = len(rows)
    R_av = home.world_to_cam[:3, :3].astype(np.float64)
    if driver.world_to_cam is None:
        M = np.broadcast_to(np.eye(3), (n, 3, 3))
    else:  # driver world -> its camera -> the avatar's camera -> avatar world
        M = R_av.T[None] @ driver.world_to_cam[rows, :3, :3].astype(np.float64)
    pose = np.zeros((n, model.num_joints, 3), np.float32)
    pose[:, : driver.pose.shape[1]] = driver.pose[rows]
    pose[:, 0] = matrix_to_axis_angle_np(M @ axis_angle_to_matrix_np(driver.pose[rows, 0]))
    rel = driver.transl[rows].astype(np.float64) - driver.transl.astype(np.float64).mean(0)
    transl = home.transl[None] + (M @ rel[..., None])[..., 0]
    return Drive([driver.names[i] for i in rows], _f32(driver.expression[rows]), _f32(pose), _f32(transl),
                 _f32(np.broadcast_to(home.K, (n, 3, 3))), _f32(np.broadcast_to(home.world_to_cam, (n, 4, 4))), width, height,
                 driver.fps)


def _specs(model: HeadModel) -> dict[str, SliderSpec]:
    """The settable names: expressions and joint angles (not identity: the avatar keeps its own)."""
    return {s.name: s for s in slider_specs(model) if s.kind in ("expression", "pose")}


def apply_settings(drive: Drive, model: HeadModel, settings: Mapping[str, float]) -> Drive:
    """``drive`` with ``settings`` (``{name: value}``, see the module docstring) set on every frame."""
    if not settings:
        return drive
    specs = _specs(model)
    expression, pose = drive.expression.clone(), drive.pose.clone()
    for name, value in settings.items():
        spec = specs.get(name)
        if spec is None:
            raise BadInputError(_unknown(name, model, list(specs)))
        check_value(spec, float(value))
        if spec.kind == "expression":
            expression[:, spec.index] = float(value)
        else:
            pose[:, spec.index, spec.axis] = math.radians(float(value))
    return replace(drive, expression=expression, pose=pose)


def _unknown(name: str, model: HeadModel, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    expr = [n for n in valid if n in model.expression_names]
    joints = [n for n in valid if n not in model.expression_names]
    return (f"{name!r} is not an expression or joint of the {model.name!r} head model; {hint}valid names include "
            f"{', '.join(expr[:5])} ... ({len(expr)} expressions) and {', '.join(joints[:3])} ... (degrees)")


def yaw_sweep(drive: Drive, degrees: Sequence[float]) -> Drive:
    """The first frame of ``drive`` turned about world +Y by each of ``degrees`` (one frame per angle)."""
    n = len(degrees)
    base = drive.pose[0, 0].double().numpy()
    turns = axis_angle_to_matrix_np(np.array([[0.0, math.radians(d), 0.0] for d in degrees]))
    root = matrix_to_axis_angle_np(turns @ axis_angle_to_matrix_np(base)[None])
    pose = drive.pose[:1].repeat(n, 1, 1)
    pose[:, 0] = _f32(root)
    names = [f"yaw{i:03d}_{d:+.1f}deg" for i, d in enumerate(degrees)]
    rep = lambda t: t[:1].expand(n, *t.shape[1:]).clone()  # noqa: E731
    return Drive(names, rep(drive.expression), pose, rep(drive.transl), rep(drive.K), rep(drive.world_to_cam), drive.width,
                 drive.height, drive.fps)


def build_drive(src: AvatarDir, request: DriveRequest = DriveRequest()) -> Drive:
    """The frames ``request`` asks for (see the module docstring); one sentence per problem."""
    model = src.avatar.head_model
    res = request.resolution if request.resolution is not None else src.resolution
    if res is not None and not 8 <= int(res) <= 8192:
        raise BadInputError(f"the resolution must be between 8 and 8192 pixels, got {res}")
    if request.neutral and (request.drive is not None or request.frames is not None):
        raise BadInputError("a neutral render takes no driving sequence or frames: give --neutral or --drive/--frames, not both")
    track = _own_track(src, res)
    if request.neutral:
        drive = _neutral(model, _home(track), track.width, track.height)
    elif request.drive is not None:
        driver = load_driver(request.drive)
        _check_driver(driver, model)
        rows = _select(len(driver.names), request.frames, f"the driving sequence {driver.path}")
        drive = _reenact(driver, rows, model, _home(track), track.width, track.height)
    else:
        drive = _tracked(track, _select(len(track), request.frames, f"the avatar's tracked sequence {track.directory}"))
    drive = apply_settings(drive, model, request.settings)
    if request.yaw is not None:
        drive = yaw_sweep(drive, list(request.yaw))
    return drive
