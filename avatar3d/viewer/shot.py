"""Headless screenshots: options (as ``avatar3d view --screenshot`` takes them) -> image file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInputError, os_error_sentence
from ..paths import check_output_path
from ..render.camera_builders import frontal
from .headless import HeadlessRenderer
from .mesh import HeadMesh
from .orbit import OrbitCamera
from .params import HeadParams, apply_settings, load_param_file
from .scene import Lighting
from .source import ViewerSource

__all__ = ["ViewOptions", "render_view", "save_image", "check_screenshot_path", "rest_camera", "initial_params"]


@dataclass
class ViewOptions:
    """Everything a headless render needs besides the source."""

    settings: dict[str, float] = field(default_factory=dict)  # slider name -> value (``--set``)
    param_file: Optional[str] = None
    frame: Optional[int] = None  # tracked sequences: which frame (default 0)
    lighting: Lighting = field(default_factory=Lighting)
    mode: str = "shaded"
    wireframe: bool = False
    landmarks: bool = False
    width: int = 512
    height: int = 512
    beside: bool = False  # tracked sequences: put the source frame left of the render
    overlay: float = 0.0  # tracked sequences: blend the render over the source frame with this opacity
    yaw: float = 0.0  # turn the camera about the head by this many degrees (:class:`.orbit.OrbitCamera`)


def initial_params(source: ViewerSource, opts: ViewOptions) -> HeadParams:
    """Params of the chosen frame (or neutral), then the parameter file, then ``--set`` values."""
    m = source.model
    if source.sequence is not None:
        p = source.frame_params(opts.frame or 0)
    elif opts.frame is not None:
        raise BadInputError(f"--frame needs a tracked sequence directory; {source.label} is a head model")
    else:
        p = HeadParams.neutral(m)
    if opts.param_file:
        p = load_param_file(opts.param_file, m, p)
    return apply_settings(m, p, opts.settings) if opts.settings else p


def rest_camera(mesh: HeadMesh, params: HeadParams, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Frontal camera framing the head at rest (this identity, no expression or pose), so changing
    an expression or a joint never moves the camera (screenshots stay comparable)."""
    rest = HeadParams.neutral(mesh.model)
    rest.shape[:] = params.shape
    verts, _, _ = mesh.pose(rest)
    cam = frontal(verts, width, height)
    return cam.K.numpy(), cam.world_to_cam.numpy()


def render_view(source: ViewerSource, opts: ViewOptions, renderer: Optional[HeadlessRenderer] = None) -> tuple[np.ndarray, HeadlessRenderer]:
    """Render the source once; returns the (H, W, 3) uint8 image and the renderer (for reuse)."""
    params = initial_params(source, opts)
    cam = None
    w, h = opts.width, opts.height
    if source.sequence is not None:
        K, w2c, w, h = source.frame_camera(opts.frame or 0)  # the tracking camera, at crop resolution
        cam = (K, w2c)
    if renderer is None:
        renderer = HeadlessRenderer(HeadMesh(source.model, source.maps), w, h)
    r = renderer
    if cam is None:
        cam = rest_camera(r.head.mesh, params, r.width, r.height)
    r.head.set_params(params)
    if opts.yaw:  # about the head as tracked (or at rest): expressions and joints set by hand never move the camera
        base = source.frame_params(opts.frame or 0) if source.sequence is not None else HeadParams.neutral(source.model)
        verts = r.head.mesh.pose(base)[0]
        orbit = OrbitCamera(cam[0], cam[1], (r.width, r.height), (verts.min(0) + verts.max(0)) / 2)
        orbit.yaw = opts.yaw
        cam = orbit.matrices()
    r.head.set_display(opts.mode, opts.wireframe, opts.landmarks)
    r.head.set_lighting(opts.lighting)
    r.set_camera(*cam)
    img = r.render()
    if not 0.0 <= opts.overlay <= 1.0:
        raise BadInputError(f"--overlay expects an opacity between 0 and 1, got {opts.overlay}")
    if (opts.beside or opts.overlay > 0) and source.sequence is not None:
        frame = source.frame_image(opts.frame or 0)
        if frame is not None:
            if frame.shape[:2] != img.shape[:2]:
                from PIL import Image

                frame = np.asarray(Image.fromarray(frame).resize((img.shape[1], img.shape[0])))
            render = img
            if opts.overlay > 0:  # the fitted head over the video: how well does the fit sit?
                sil = r.silhouette()[..., None]
                blend = frame * (1 - opts.overlay) + render * opts.overlay
                render = np.where(sil, blend, frame).astype(np.uint8)
            img = np.concatenate([frame, render], 1) if opts.beside else render
    return img, r


def check_screenshot_path(path: str | Path) -> Path:
    """A screenshot path that can be written (.png/.jpg, under folders or where folders can be made); else one sentence."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise BadInputError(f"screenshot path must end in .png or .jpg, got {path.name}")
    return check_output_path(path, "the screenshot")


def save_image(img: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = check_screenshot_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    except OSError as e:
        raise BadInputError(os_error_sentence(e, "the screenshot")) from None
    return path
