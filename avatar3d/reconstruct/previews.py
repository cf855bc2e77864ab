"""The previews of a reconstruct run, in ``DIR/previews/``:

* ``heldout.mp4``: the video beside the avatar on the held-out frames (the left half of the evaluation's panels,
  ``AVATAR_DIR/heldout/*.png``); ``heldout.png``: the middle held-out frame's whole panel (video | avatar | textured-mesh
  baseline | the avatar's error);
* ``turntable_<env>.mp4`` and ``turntable_<env>.png`` (six stills side by side, -45 to +45 degrees) for the generated
  environments studio, sunset and overcast, each exposed to a mean radiance of 1: the neutral head swinging 45 degrees
  either way (a frontal video never sees the back of the head). A relightable avatar is rendered relit (``appearance.set_environment``); otherwise the tracked head mesh
  with its appearance maps is shaded under each map by :func:`avatar3d.render.pbr.render_pbr`, and the note says so;
* ``expressions.png``: the avatar with hand-set expressions (:data:`EXPRESSIONS`, through the drive's ``settings``,
  as ``avatar3d avatar render --set``), labelled.

Every file is written atomically; shapes: H x W pixels, uint8 RGB.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np
import torch

from ..data.atomic import png_bytes, write_all
from .settings import Plan

__all__ = ["ENVIRONMENTS", "EXPRESSIONS", "expected_files", "write_previews", "write_turntables", "turntable_angles",
           "strip_frames", "exposed_environment"]

ENVIRONMENTS = ("studio", "sunset", "overcast")
#: (label, {expression: value}) of the expression sheet; names a model lacks are tried with Left/Right, else skipped
EXPRESSIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen", {"jawOpen": 0.8}),
    ("smile", {"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    ("blink", {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    ("browInnerUp", {"browInnerUp": 1.0}),
    ("pucker", {"mouthPucker": 1.0}),
    ("frown", {"mouthFrownLeft": 1.0, "mouthFrownRight": 1.0, "browDownLeft": 0.8, "browDownRight": 0.8}),
    ("eyeWide", {"eyeWideLeft": 1.0, "eyeWideRight": 1.0}),
)
STRIP_STILLS = 6
SWING_DEG = 45.0  #: degrees either way: a frontal video shows little more of the head (at 70 the sides come apart)
WHITE = (1.0, 1.0, 1.0)


def expected_files(environments: Iterable[str] = ENVIRONMENTS) -> list[str]:
    """The previews' file names."""
    names = ["heldout.mp4", "heldout.png", "expressions.png"]
    for env in environments:
        names += [f"turntable_{env}.mp4", f"turntable_{env}.png"]
    return names


def turntable_angles(frames: int) -> list[float]:
    """Yaw in degrees of each frame: one smooth swing to +SWING_DEG, back through 0 to -SWING_DEG and home."""
    return [SWING_DEG * math.sin(2 * math.pi * k / frames) for k in range(frames)]


def _even(x: int) -> int:
    return max(2, x - x % 2)


# ---------------------------------------------------------------------------------------------- held-out
def _heldout(avatar_dir: Path, out: Path, fps: float) -> list[Path]:
    """heldout.mp4 (video | avatar) and heldout.png (the whole panel of the middle frame) from the evaluation's panels."""
    import cv2

    from ..errors import BadInputError
    from ..tracking.outputs import write_overlay

    panels = sorted((avatar_dir / "heldout").glob("*.png"))
    if not panels:
        raise BadInputError(f"{avatar_dir / 'heldout'} holds no comparison images; the evaluation stage did not write them")
    first = cv2.imread(str(panels[0]))
    h, w4 = first.shape[:2]
    w = _even(w4 // 2)

    def frames() -> Iterator[np.ndarray]:
        for p in panels:
            yield np.ascontiguousarray(cv2.imread(str(p))[: _even(h), :w, ::-1])

    video = write_overlay(out / "heldout.mp4", frames(), fps, w, _even(h), total=len(panels), progress=False)
    still = cv2.imread(str(panels[len(panels) // 2]))[..., ::-1]
    write_all({out / "heldout.png": png_bytes(still)})
    return [video, out / "heldout.png"]


# ---------------------------------------------------------------------------------------------- turntables
def strip_frames(angles: list[float]) -> list[int]:
    """The frames whose yaw is nearest to STRIP_STILLS angles evenly spaced from -SWING_DEG to +SWING_DEG."""
    a = np.asarray(angles)
    return [int(np.argmin(np.abs(a - t))) for t in np.linspace(-SWING_DEG, SWING_DEG, STRIP_STILLS)]


def _write_turntable(out: Path, env: str, frames: list[np.ndarray], angles: list[float], fps: float) -> list[Path]:
    from ..tracking.outputs import write_overlay

    h, w = frames[0].shape[:2]
    video = write_overlay(out / f"turntable_{env}.mp4", iter(frames), fps, w, h, total=len(frames), progress=False)
    write_all({out / f"turntable_{env}.png": png_bytes(np.concatenate([frames[i] for i in strip_frames(angles)], 1))})
    return [video, out / f"turntable_{env}.png"]


def exposed_environment(name: str, width: int = 256):
    """Generated environment ``name`` scaled to a mean radiance of 1 (over the sphere and the three channels): each
    preview is exposed for its light, as a camera would be, so a dim map shows its colour rather than a dark head."""
    from ..render.lighting import EnvironmentMap

    env = EnvironmentMap.generated(name, width=width)
    w = env.solid_angles()[..., None]
    mean = float(((env.pixels * w).sum((0, 1)) / w.sum()).mean())
    return EnvironmentMap((env.pixels / max(mean, 1e-6)).astype(np.float32))


def _relit_frames(src, drive, env) -> list[np.ndarray]:
    from ..avatar.render import render_frames

    src.avatar.appearance.set_environment(env)
    try:
        return list(render_frames(src.avatar, drive, WHITE))
    finally:
        src.avatar.appearance.set_environment(None)


@torch.no_grad()
def _mesh_frames(src, drive, material, light) -> list[np.ndarray]:
    """The tracked head mesh (the avatar's identity) with the appearance maps, shaded by render_pbr, over white."""
    from ..render.color import srgb_encode
    from ..render.pbr import SeamMesh, render_pbr

    model = src.avatar.head_model
    mesh = SeamMesh.of(model)
    out = []
    for b in range(len(drive)):
        r = slice(b, b + 1)
        verts = model(src.avatar.shape[None], drive.expression[r], drive.pose[r], drive.transl[r]).vertices[0].float()
        img = render_pbr(mesh, verts, drive.K[b], drive.world_to_cam[b], drive.width, drive.height, material, light)
        rgb = srgb_encode(img.rgb).clamp(0, 1)
        a = img.alpha[..., None]
        out.append((rgb * a + (1 - a)).mul(255).add(0.5).to(torch.uint8).numpy())
    return out


def write_turntables(src, appearance_dir: Path, out: Path, plan: Plan, relit: Optional[bool] = None) -> tuple[list[Path], str]:
    """The three turntables of the avatar ``src`` (:func:`avatar3d.avatar.drive.open_avatar`): relit when ``relit``
    (default: when the avatar is relightable), else the head mesh with the maps of ``appearance_dir``; and the note."""
    from ..avatar.drive import DriveRequest, build_drive

    angles = turntable_angles(plan.turntable_frames)
    drive = build_drive(src, DriveRequest(neutral=True, resolution=_even(plan.preview_width), yaw=angles))
    fps = 12.0
    files: list[Path] = []
    if relit is None:
        relit = bool(getattr(src.avatar.appearance, "relightable", False))
    if relit:
        for env in ENVIRONMENTS:
            files += _write_turntable(out, env, _relit_frames(src, drive, exposed_environment(env)), angles, fps)
        return files, "turntables: the relightable avatar relit under each environment (exposed to its mean radiance)"
    from ..appearance.maps import AppearanceMaps
    from ..render.pbr import PBRLight, PBRMaterial

    maps = AppearanceMaps.load(appearance_dir)
    material = PBRMaterial.of(maps.albedo, maps.specular, maps.roughness, maps.normal)
    for env in ENVIRONMENTS:
        light = PBRLight.of(exposed_environment(env), width=64)
        files += _write_turntable(out, env, _mesh_frames(src, drive, material, light), angles, fps)
    return files, ("turntables: the avatar is not relightable, so they show the tracked head mesh with its appearance maps "
                   "shaded under each environment (render/pbr.py)")


# ---------------------------------------------------------------------------------------------- expressions
def _settable(settings: dict[str, float], names: set[str]) -> dict[str, float]:
    """``settings`` in the model's names: a name it lacks as its Left/Right pair, else left out."""
    out: dict[str, float] = {}
    for k, v in settings.items():
        if k in names:
            out[k] = v
        else:
            out.update({s: v for s in (k + "Left", k + "Right") if s in names})
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    band = np.full((max(18, img.shape[0] // 10), img.shape[1], 3), 255, np.uint8)
    scale = band.shape[0] / 40.0
    cv2.putText(band, text, (4, int(band.shape[0] * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([img, band], 0)


def _expressions(src, out: Path, plan: Plan) -> Path:
    from ..avatar.drive import DriveRequest, build_drive
    from ..avatar.render import render_frames

    names = set(src.avatar.head_model.expression_names)
    tiles = []
    for label, settings in EXPRESSIONS:
        s = _settable(settings, names)
        if settings and not s:
            continue
        drive = build_drive(src, DriveRequest(neutral=True, settings=s, resolution=_even(plan.preview_width)))
        tiles.append(_label(next(render_frames(src.avatar, drive, WHITE)), label))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    write_all({out / "expressions.png": png_bytes(np.concatenate(rows, 0))})
    return out / "expressions.png"


def write_previews(avatar_dir: Path, appearance_dir: Path, out: Path, plan: Plan, progress: bool = False) -> tuple[list[Path], str]:
    """Every preview into ``out``; returns the files and a note on how the turntables were made."""
    from ..avatar.drive import open_avatar

    out.mkdir(parents=True, exist_ok=True)
    src = open_avatar(avatar_dir)
    files = _heldout(Path(avatar_dir), out, _track_fps(src))
    turn, note = write_turntables(src, Path(appearance_dir), out, plan)
    files += turn
    files.append(_expressions(src, out, plan))
    return files, note


def _track_fps(src) -> float:
    from ..data.sequence import TrackedSequence
    from ..errors import Avatar3DError

    try:
        return float(TrackedSequence.load(src.track_dir).fps or 10.0)
    except (Avatar3DError, OSError, ValueError):  # it only times the video: the stages that need the track report problems
        return 10.0
