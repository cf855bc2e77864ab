"""Gaussian head avatars in the viewer (``avatar3d view AVATAR_DIR``): the avatar drawn by our own CPU rasterizer.

An avatar directory (``avatar.pt``, written by ``avatar3d avatar train``) is shown as its Gaussians splatted
by :meth:`avatar3d.avatar.model.GaussianHead.forward` (:func:`avatar3d.render.gaussians.rasterize_gaussians`),
never by Filament: the picture is what ``avatar3d avatar render`` writes, so the window, the headless
screenshots and the renders agree pixel for pixel. The pieces:

* :func:`open_avatar`: the avatar, its head model (the sliders) and, while the tracking directory it was
  trained on still exists (``avatar.pt``'s ``track_dir``), that sequence's frames (the timeline, the
  tracking cameras and the video beside the render);
* :func:`start_camera`: the :class:`~.orbit.OrbitCamera` a session starts from (a tracking or frontal camera,
  turned about the head's centre);
* :class:`AvatarRenderer`: parameters + camera -> picture (on white, the background avatars are trained on);
* :class:`AvatarLight` and :func:`avatar_environment`: the light of a relightable avatar (environment, rotation,
  intensity: the mesh viewer's Relight controls, ``--env``/``--env-rotation``/``--env-intensity``), set on the
  renderer with :meth:`AvatarRenderer.set_environment`;
* :func:`render_avatar_view`: one headless screenshot from :class:`~.shot.ViewOptions` (``--screenshot``).

The window (:mod:`.avatar_app`) uses the same three objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..avatar.model import GaussianHead
from ..avatar.render import capture_light
from ..avatar.train import AVATAR_FILE, read_avatar
from ..data.frames import TrackedFrames
from ..data.sequence import PARAMS_FILE
from ..errors import BadInputError
from ..render.camera import Camera
from ..render.camera_builders import frontal
from ..render.gaussians import rasterize_gaussians
from ..render.lighting import CAPTURE, ENVIRONMENTS, EnvironmentMap, environment_from_spec, rotate_environment
from .orbit import OrbitCamera
from .params import HeadParams
from .shot import ViewOptions, initial_params
from .source import ViewerSource

__all__ = ["AvatarSource", "AvatarRenderer", "avatar_dir", "open_avatar", "start_camera", "avatar_params", "render_avatar_view", "check_avatar_options",
           "BACKGROUND", "AvatarLight", "avatar_environment", "avatar_environment_names"]

#: background of avatar pictures: white, what avatars are trained and rendered over (their edges blend into it)
BACKGROUND = (1.0, 1.0, 1.0)


def avatar_dir(spec: str | Path) -> Optional[Path]:
    """The avatar directory ``spec`` names (a folder holding ``avatar.pt``, or that file itself), else None."""
    p = Path(str(spec))
    if p.is_file() and p.name == AVATAR_FILE:
        return p.parent
    return p if p.is_dir() and (p / AVATAR_FILE).is_file() else None


@dataclass
class AvatarSource:
    """An avatar to view: the Gaussians, plus a :class:`ViewerSource` of its head model (sliders) and, when its
    tracking directory is still there, that sequence's frames (timeline, cameras, video)."""

    avatar: GaussianHead
    source: ViewerSource
    directory: Path  #: the avatar directory
    recorded_track: Optional[str] = None  #: the tracking directory ``avatar.pt`` names (None: it names none)


def open_avatar(directory: str | Path) -> AvatarSource:
    """The avatar of ``directory`` (``avatar.pt``); one sentence when it is corrupt, foreign or its head model cannot be loaded."""
    directory = Path(directory)
    rec = read_avatar(directory)
    avatar = rec.avatar.eval()
    model = avatar.head_model
    track = str(rec.track_dir) if rec.track_dir is not None else None
    frames = None
    if track is not None and (Path(track) / PARAMS_FILE).is_file():
        frames = TrackedFrames(track)
        seq = frames.sequence
        if seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
            frames = None  # a different head model's tracking now sits there: show the avatar without it
    return AvatarSource(avatar, ViewerSource(model, str(directory), frames), directory, track)


@torch.no_grad()
def head_box(avatar: GaussianHead, params: HeadParams) -> np.ndarray:
    """(2, 3) lower and upper corners (metres) of the avatar's posed Gaussian centres for ``params``."""
    g, _ = avatar.pose(*_tensors(avatar, params))
    m = g.means[0].numpy()
    return np.stack([m.min(0), m.max(0)])


def _tensors(avatar: GaussianHead, p: HeadParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``params`` as the (1, E), (1, J, 3), (1, 3) float32 tensors :meth:`GaussianHead.forward` takes."""
    hm = avatar.head_model
    e = torch.zeros(1, hm.num_expression)
    e[0, : min(len(p.expression), hm.num_expression)] = torch.as_tensor(p.expression[: hm.num_expression])
    j = torch.zeros(1, hm.num_joints, 3)
    j[0, : min(len(p.pose), hm.num_joints)] = torch.as_tensor(p.pose[: hm.num_joints])
    return e, j, torch.as_tensor(p.transl, dtype=torch.float32).reshape(1, 3)


@dataclass(frozen=True)
class AvatarLight:
    """The light of a relightable avatar's pictures: ``environment`` (a name of :func:`avatar_environment_names` or a
    ``.hdr``/``.exr`` file; :data:`~avatar3d.render.lighting.CAPTURE` or None: the capture's own light), turned
    ``rotation`` degrees about the vertical (+: a light in front moves to the head's left, the picture's right) and
    scaled by ``intensity``."""

    environment: Optional[str] = None
    rotation: float = 0.0
    intensity: float = 1.0

    @property
    def own(self) -> bool:
        """The capture's own light, as trained (nothing to relight)."""
        return self.environment in (None, CAPTURE) and self.rotation % 360.0 == 0.0 and self.intensity == 1.0


def avatar_environment_names() -> tuple[str, ...]:
    """What the avatar window's environment list offers: the capture's own light first, then the generated maps."""
    return (CAPTURE, *ENVIRONMENTS)


def avatar_environment(avatar: GaussianHead, light: AvatarLight) -> Optional[EnvironmentMap]:
    """The environment map ``light`` names for ``avatar`` (None: its capture's own light, nothing to relight).

    Raises:
        BadInputError: one sentence: the avatar cannot be relit (it bakes its capture's light in), or the
            environment is unknown or unreadable (:func:`~avatar3d.render.lighting.environment_from_spec`).
    """
    if light.own:
        return None
    if not avatar.appearance.relightable:
        avatar.appearance.set_environment(None)  # the contract's one sentence: train it with --relightable
    if not 0.0 <= light.intensity <= 100.0:
        raise BadInputError(f"--env-intensity expects a factor between 0 and 100, got {light.intensity:g}")
    env = environment_from_spec(light.environment or CAPTURE, 0.0, capture_light(avatar))
    if light.intensity != 1.0:
        env = EnvironmentMap(env.pixels * np.float32(light.intensity))
    # Turned last: the map records its unturned source, so a rotation slider prefilters the source once and then only turns it.
    return rotate_environment(env, light.rotation)


class AvatarRenderer:
    """Pictures of one avatar: (parameters, camera, size) -> (H, W, 3) uint8 on :data:`BACKGROUND` and (H, W) coverage.

    The picture is :meth:`GaussianHead.forward`'s (tests hold it to that), computed as its two halves so that the
    posed Gaussians are kept while only the camera moves (a mouse turn re-splats, it does not re-pose: posing is
    about a third of a small picture's time).
    """

    def __init__(self, avatar: GaussianHead, background: tuple[float, float, float] = BACKGROUND, backend: str = "auto"):
        self.avatar = avatar.eval()
        self.background = torch.tensor(background, dtype=torch.float32)
        self.backend = backend
        self._key: Optional[bytes] = None
        self._posed = None  # the PosedHead (one frame) of the parameters in _key

    def set_environment(self, environment: Optional[EnvironmentMap]) -> None:
        """Light later pictures with ``environment`` (None: the capture's own light); the avatar must be relightable."""
        self.avatar.appearance.set_environment(environment)

    def _pose(self, params: HeadParams):
        e, j, t = _tensors(self.avatar, params)
        key = b"".join(x.numpy().tobytes() for x in (e, j, t))
        if key != self._key:
            self._posed, self._key = self.avatar.posed_head(e, j, t), key
        return self._posed

    @torch.no_grad()
    def render(self, params: HeadParams, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """The avatar posed by ``params`` (its own identity: ``params.shape`` is not used) through the OpenCV camera
        ``K`` (3, 3) / ``world_to_cam`` (4, 4) in a ``width`` x ``height`` picture: (image uint8, coverage float32 in [0, 1])."""
        a = self.avatar
        posed = self._pose(params)
        g, opac = posed.gaussians, posed.opacity
        cam = Camera(torch.as_tensor(np.asarray(K, np.float32)), torch.as_tensor(np.asarray(world_to_cam, np.float32)), int(width), int(height))
        colours = a.colours(posed, cam.centre)
        img, alpha, _, _, _ = rasterize_gaussians(g.means[0], g.quats[0], g.scales[0], opac, colours[0], cam.world_to_cam[None], cam.raster_K[None],
                                                  cam.width, cam.height, backgrounds=self.background, depth_mode="none",
                                                  backend=self.backend)
        return (img[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy(), alpha[0, ..., 0].numpy()


def start_camera(av: AvatarSource, frame: Optional[int], size: tuple[int, int]) -> OrbitCamera:
    """The view a session starts from, turning about the middle of the head's box at frame ``frame`` as tracked
    (or neutral): that frame's tracking camera (crop size) for an avatar with its sequence, else a frontal camera
    framing the neutral head at ``size`` (width, height). Expressions and joints set by hand never move it."""
    src = av.source
    base = src.frame_params(frame or 0) if src.sequence is not None else HeadParams.neutral(src.model)
    lo, hi = head_box(av.avatar, base)
    if src.sequence is not None:
        K, w2c, w, h = src.frame_camera(frame or 0)
        return OrbitCamera(K, w2c, (w, h), (lo + hi) / 2)
    cam = frontal(np.stack([lo, hi]), size[0], size[1])
    return OrbitCamera(cam.K.numpy(), cam.world_to_cam.numpy(), size, (lo + hi) / 2)


def check_avatar_options(opts: ViewOptions) -> None:
    """Refuse, in one sentence, display options that belong to meshes."""
    mesh_only = [name for name, on in (("--wireframe", opts.wireframe), ("--landmarks", opts.landmarks),
                                       (f"--display {opts.mode}", opts.mode != "shaded")) if on]
    if mesh_only:
        raise BadInputError(f"{', '.join(mesh_only)} draws the head mesh; a Gaussian avatar is shown as its Gaussians only "
                            "(view the tracking directory for the mesh)")


def avatar_params(av: AvatarSource, opts: ViewOptions) -> HeadParams:
    """The parameters a session starts from (:func:`~.shot.initial_params`: the frame, parameter file, ``--set``);
    one sentence when ``--frame`` asks for a frame of a tracking directory that is gone."""
    if opts.frame is not None and av.source.sequence is None:
        where = f"its tracking directory {av.recorded_track} is no longer there" if av.recorded_track else "it records no tracking directory"
        raise BadInputError(f"--frame picks a frame of the tracked sequence {av.directory} was trained on, but {where}")
    return initial_params(av.source, opts)


def render_avatar_view(av: AvatarSource, opts: ViewOptions, renderer: Optional[AvatarRenderer] = None,
                       light: AvatarLight = AvatarLight()) -> np.ndarray:
    """One headless screenshot: (H, W, 3) uint8 of the avatar at ``opts`` (frame, parameter file, ``--set``; the
    tracking camera at crop size for an avatar with its sequence, else a frontal one at ``opts.width`` x
    ``opts.height``), the camera turned ``opts.yaw`` degrees about the head (:class:`~.orbit.OrbitCamera`); ``opts.beside`` /
    ``opts.overlay`` put the video frame beside or under it; a relightable avatar lit by ``light``."""
    check_avatar_options(opts)
    if not 0.0 <= opts.overlay <= 1.0:
        raise BadInputError(f"--overlay expects an opacity between 0 and 1, got {opts.overlay}")
    env = avatar_environment(av.avatar, light)  # checked before any rendering
    renderer = renderer or AvatarRenderer(av.avatar)
    if not light.own:
        renderer.set_environment(env)
    params = avatar_params(av, opts)
    orbit = start_camera(av, opts.frame, (opts.width, opts.height))
    orbit.yaw = float(opts.yaw)
    w, h = orbit.size
    K, w2c = orbit.matrices()
    img, alpha = renderer.render(params, K, w2c, w, h)
    if (opts.beside or opts.overlay > 0) and av.source.sequence is not None:
        frame = av.source.frame_image(opts.frame or 0)
        if frame is not None:
            if frame.shape[:2] != img.shape[:2]:
                from PIL import Image

                frame = np.asarray(Image.fromarray(frame).resize((img.shape[1], img.shape[0])))
            render = img
            if opts.overlay > 0:  # the avatar over the video by its coverage: how well does it sit?
                a = alpha[..., None]
                own = img - (1 - a) * 255.0 * np.asarray(BACKGROUND)  # the Gaussians' own (premultiplied) colour
                render = np.clip(frame * (1 - opts.overlay * a) + opts.overlay * own + 0.5, 0, 255).astype(np.uint8)
            img = np.concatenate([frame, render], 1) if opts.beside else render
    return img
