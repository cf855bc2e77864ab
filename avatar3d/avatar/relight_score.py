"""Scoring a relightable avatar against the path tracer: relit held-out poses and the recovered albedo.

The synthetic capture (:mod:`avatar3d.synthetic.mitsuba_capture`: the built-in head with known maps, path traced
under environment A through a head turn) is the avatar's training video; :func:`avatar3d.synthetic.relight_truth.held_out_truth`
path traces some of its frames (held-out poses: frames the avatar did not train on) under held-out environments.
:func:`relit_scores` renders the avatar at those poses under the same environments
(:meth:`~avatar3d.avatar.relight.PBRAppearance.set_environment`) and compares in linear RGB, PSNR with peak 1, over

* **face** pixels: the true mesh's ``face`` region, fully covered in the truth, after a 2 x 2 box average of both
  images (the truth's Monte Carlo noise), the protocol of :func:`avatar3d.synthetic.relight_truth.relight_scores`;
* **head** pixels: every pixel the truth's head covers fully (hair-less scalp, ears, neck included).

The avatar is splatted over black and its display colours decoded to linear (exact where the head covers the
pixel fully, which is all that is scored). :func:`albedo_score` splats each Gaussian's linear albedo and compares it
with the true albedo map drawn on the true mesh at the same poses (face pixels), after the one per-channel gain that
fits best (least squares): the albedo/light scale the images cannot fix (:mod:`.relight`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..render.color import srgb_decode, srgb_encode
from ..render.gaussians import rasterize_gaussians
from ..render.lighting import EnvironmentMap
from .model import GaussianHead

__all__ = ["relit_scores", "albedo_score", "relit_pictures", "frame_parameters", "capture_camera"]


def _pool(a: np.ndarray, k: int) -> np.ndarray:
    return a.reshape(a.shape[0] // k, k, a.shape[1] // k, k, *a.shape[2:]).mean((1, 3))


def frame_parameters(P: dict, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1, E) expression, (1, J, 3) pose, (1, 3) translation of capture frame ``i`` (``P``: the capture's parameters)."""
    t = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    return t(P["expression"][i]), t(P["pose"][i]), t(P["transl"][i])


def capture_camera(P: dict, width: int, height: int):
    """The capture's camera (one for every frame) at ``width`` x ``height``."""
    from ..render.camera import Camera

    return Camera(torch.as_tensor(np.asarray(P["K"], np.float32)), torch.as_tensor(np.asarray(P["world_to_cam"], np.float32)), width, height)


@torch.no_grad()
def _linear(avatar: GaussianHead, P: dict, i: int, width: int, height: int) -> np.ndarray:
    """(H, W, 3) linear RGB of the avatar at capture frame ``i`` over black."""
    img = avatar(*frame_parameters(P, i), capture_camera(P, width, height), background=torch.zeros(3)).image[0]
    return srgb_decode(img.clamp(0, 1)).numpy()


def _face_pixels(capture, model, P: dict, i: int) -> np.ndarray:
    """(H, W) bool: pixels of the true mesh's face region at frame ``i``."""
    from ..render.camera import raster_intrinsics, world_to_clip
    from ..render.mesh import rasterize

    spec = capture.spec
    V = torch.as_tensor(P["vertices"][i], dtype=torch.float32)
    pos = world_to_clip(V[None], raster_intrinsics(torch.as_tensor(P["K"]).float())[None], torch.as_tensor(P["world_to_cam"]).float(),
                        spec.width, spec.height)
    rast, _ = rasterize(pos, model.faces.to(torch.int32).contiguous(), (spec.height, spec.width))
    tri = rast[0, ..., 3].long() - 1
    face = model.region("face").bool()[model.faces.long()].all(-1)
    return ((tri >= 0) & face[tri.clamp(min=0)]).numpy()


def relit_scores(avatar: GaussianHead, capture, truth, downsample: int = 2) -> dict[str, dict[str, float]]:
    """``{environment name: {"face": dB, "head": dB}}`` of the avatar relit under each of ``truth``'s environments
    at its frames (module docstring); the avatar is returned to its capture light afterwards."""
    from ..models import load_head_model

    P, spec, k = capture.parameters(), capture.spec, downsample
    model = load_head_model(spec.model)
    faces = {int(i): _face_pixels(capture, model, P, int(i)) for i in truth.frames}
    out = {}
    try:
        for e, env in enumerate(truth.environments):
            avatar.appearance.set_environment(env)
            se = {"face": 0.0, "head": 0.0}
            n = {"face": 0, "head": 0}
            for j, i in enumerate(truth.frames):
                ours, gt = _pool(_linear(avatar, P, int(i), spec.width, spec.height), k), _pool(truth.rgb[e, j], k)
                full = truth.alpha[j] > 0.999
                for name, m in (("face", faces[int(i)] & full), ("head", full)):
                    sel = _pool(m.astype(np.float32), k) > 0.999
                    se[name] += float(((ours[sel] - gt[sel]) ** 2).sum())
                    n[name] += int(sel.sum()) * 3
            out[truth.names[e]] = {m: 10 * np.log10(1.0 / max(se[m] / max(n[m], 1), 1e-12)) for m in se}
    finally:
        avatar.appearance.set_environment(None)
    return out


def relit_pictures(avatar: GaussianHead, capture, truth, path: Path, frame: int = 0,
                   extra: Sequence[EnvironmentMap] = ()) -> Path:
    """A PNG: per environment of ``truth`` one row ``avatar | Mitsuba`` (display sRGB) at its ``frame``-th pose,
    and the avatar alone under each of ``extra``."""
    import cv2

    P, spec = capture.parameters(), capture.spec
    i = int(truth.frames[frame])
    rows = []
    try:
        for e, env in enumerate(truth.environments):
            avatar.appearance.set_environment(env)
            ours = _linear(avatar, P, i, spec.width, spec.height)
            rows.append(np.concatenate([srgb_encode(np.clip(ours, 0, 1)), srgb_encode(np.clip(truth.rgb[e, frame], 0, 1))], 1))
        for env in extra:
            avatar.appearance.set_environment(env)
            ours = srgb_encode(np.clip(_linear(avatar, P, i, spec.width, spec.height), 0, 1))
            rows.append(np.concatenate([ours, np.zeros_like(ours)], 1))
    finally:
        avatar.appearance.set_environment(None)
    cv2.imwrite(str(path), np.round(np.concatenate(rows, 0)[..., ::-1] * 255).astype(np.uint8))
    return path


@torch.no_grad()
def albedo_score(avatar: GaussianHead, capture, frames: Sequence[int], save: Optional[Path] = None) -> tuple[float, np.ndarray]:
    """(PSNR dB after the best per-channel gain, that gain (3,)) of the avatar's linear albedo splatted at capture
    ``frames`` against the true albedo map on the true mesh, over face pixels the avatar covers fully."""
    from ..models import load_head_model
    from ..render.brdf import PrefilteredEnvironment, split_sum_lut
    from ..render.pbr import PBRLight, PBRMaterial, SeamMesh, render_pbr

    P, spec = capture.parameters(), capture.spec
    model = load_head_model(spec.model)
    maps = capture.maps()
    mat = PBRMaterial.of(maps.albedo, np.zeros_like(maps.roughness), maps.roughness)
    # Uniform unit radiance, no specular: the diffuse radiance is the albedo itself.
    ones = EnvironmentMap(np.ones((16, 32, 3), np.float32))
    black = PrefilteredEnvironment(torch.tensor([0.0, 1.0]), torch.zeros(2, 16, 32, 3))
    light = PBRLight(torch.as_tensor(ones.sh(), dtype=torch.float32), black, split_sum_lut())
    cam = capture_camera(P, spec.width, spec.height)
    mesh = SeamMesh.of(model)
    ours, theirs, pics = [], [], []
    for i in frames:
        posed = avatar.posed_head(*frame_parameters(P, int(i)))
        g = posed.gaussians
        albedo = avatar.appearance.albedo(avatar.params, posed.drive)
        img, alpha, _, _, _ = rasterize_gaussians(g.means[0], g.quats[0], g.scales[0], posed.opacity, albedo[0], cam.world_to_cam[None],
                                                  cam.raster_K[None], spec.width, spec.height, backgrounds=torch.zeros(3))
        true = render_pbr(mesh, torch.as_tensor(P["vertices"][int(i)]), P["K"], P["world_to_cam"], spec.width, spec.height, mat, light)
        m = _face_pixels(capture, model, P, int(i)) & (alpha[0, ..., 0].numpy() > 0.99)
        ours.append(img[0].numpy()[m])
        theirs.append(true.rgb.numpy()[m])
        pics.append(np.concatenate([img[0].numpy(), true.rgb.numpy()], 1))
    a, b = np.concatenate(ours).astype(np.float64), np.concatenate(theirs).astype(np.float64)
    gain = (a * b).sum(0) / np.maximum((a * a).sum(0), 1e-12)
    mse = float(((a * gain - b) ** 2).mean())
    if save is not None:
        import cv2

        pic = np.concatenate(pics, 0)
        cv2.imwrite(str(save), np.round(srgb_encode(np.clip(pic, 0, 1))[..., ::-1] * 255).astype(np.uint8))
    return 10 * np.log10(1.0 / max(mse, 1e-12)), gain
