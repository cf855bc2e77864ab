"""How well the appearance maps explain the video: re-render error on face pixels, against the tracker's own.

The tracking stage (``avatar3d track --photometric``) already explains the frames with a 128 px albedo
texture and one SH light (camera frame, sRGB values, no specular, no detail). The appearance stage must do
better on the same pixels. :func:`rerender_errors` renders every frame both ways at ``resolution`` pixels:

* **ours**: :func:`avatar3d.render.pbr.render_pbr` with the maps (albedo, specular, roughness, normal map)
  under the estimated light (SH for the diffuse lobe, the environment estimate for the specular lobe) and its
  self-shadowing on the posed head (:mod:`.visibility`, as the fit modelled it), times the frame's exposure
  gain, sRGB-encoded;
* **tracking**: :meth:`avatar3d.render.head.HeadRenderer.shade` with the tracker's ``albedo.png`` and its
  ``lighting`` (what the photometric refinement rendered);

and compares each with the frame on the pixels both cover that are the model's face region and person in
the segmentation mask: mean absolute error in grey levels (0-255, the tracker's own metric) and PSNR.
Both explain the same frames they were fitted on (neither holds frames out).

Shapes: N frames, r x r pixels (the crop resized to ``resolution``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.brdf import PrefilteredEnvironment, split_sum_lut
from ..render.color import srgb_encode
from ..render.head import HeadRenderer
from ..render.pbr import Occlusion, PBRLight, PBRMaterial, SeamMesh, render_pbr
from .maps import AppearanceMaps
from .texel_stream import valid_mask
from .visibility import LightTransfer, VertexVisibility, downsample_env, env_grid

__all__ = ["RerenderErrors", "rerender_errors", "pbr_light", "tracking_appearance"]


@dataclass
class RerenderErrors:
    """Per-frame errors of both explanations on one shared pixel set: ``ours`` / ``tracking`` (N,) mean |render - frame|
    in grey levels (NaN where a frame has no pixel; ``tracking`` all NaN without a photometric track), ``pixels`` (N,)."""

    ours: np.ndarray
    tracking: np.ndarray
    pixels: np.ndarray
    psnr_ours: float  #: dB over all compared pixels (peak 255)
    psnr_tracking: float

    def summary(self) -> dict:
        """Mean errors (grey levels), PSNRs (dB) and the share of frames where ours is lower."""
        both = np.isfinite(self.ours) & np.isfinite(self.tracking)
        return {"ours": float(np.nanmean(self.ours)), "tracking": float(np.nanmean(self.tracking)) if both.any() else float("nan"),
                "psnr_ours": self.psnr_ours, "psnr_tracking": self.psnr_tracking,
                "frames_better": float(np.mean(self.ours[both] < self.tracking[both])) if both.any() else float("nan")}


def pbr_light(maps: AppearanceMaps, width: int = 128) -> PBRLight:
    """The maps' capture light for :func:`render_pbr`: their SH (diffuse) and their environment estimate (specular)."""
    env = maps.environment_map()
    return PBRLight(torch.as_tensor(maps.sh, dtype=torch.float32), PrefilteredEnvironment.from_environment(env, width=width),
                    split_sum_lut())


def tracking_appearance(frames: TrackedFrames) -> Optional[tuple[Tensor, Tensor]]:
    """(128, 128, 3) albedo texture in [0, 1] and (9, 3) camera-frame SH of a photometric track, or None."""
    import cv2

    sh = frames.sequence.lighting
    img = cv2.imread(str(frames.directory / "albedo.png"), cv2.IMREAD_COLOR)
    if sh is None or img is None:
        return None
    return torch.as_tensor(img[..., ::-1] / 255.0, dtype=torch.float32), torch.as_tensor(np.asarray(sh), dtype=torch.float32)


def rerender_errors(track_dir, maps: AppearanceMaps, model: HeadModel, resolution: int = 256,
                    indices: Optional[Sequence[int]] = None) -> RerenderErrors:
    """Re-render the frames of ``track_dir`` with ``maps`` (and with the tracker's appearance) and score both (module docstring).

    Args:
        track_dir: the tracking directory the maps were estimated from.
        maps: :class:`AppearanceMaps` of it; model: its head model.
        resolution: render side in pixels (the crops are resized to it).
        indices: frames to score (default: every valid frame).
    """
    frames = TrackedFrames(track_dir, resolution=resolution)
    seq = frames.sequence
    idx = [int(i) for i in (np.nonzero(valid_mask(frames))[0] if indices is None else indices)]
    if not idx:
        raise BadInputError(f"{track_dir} has no valid frame to score")
    mesh, material, light = SeamMesh.of(model), PBRMaterial.of(maps.albedo, maps.specular, maps.roughness, maps.normal), pbr_light(maps)
    with torch.no_grad():
        rest = model(torch.as_tensor(np.asarray(seq.shape), dtype=torch.float32)[None]).vertices[0].float()
    transfer = LightTransfer(VertexVisibility(rest, model.faces), *env_grid(16), model.faces)
    radiance = torch.as_tensor(downsample_env(maps.environment_map(), 16)).float()
    tracked = tracking_appearance(frames)
    W, H = frames.width, frames.height
    head = HeadRenderer(model, torch.as_tensor(frames.K, dtype=torch.float32), torch.as_tensor(seq.world_to_cam[0], dtype=torch.float32),
                        crop=W, r=W, region="face") if tracked is not None and W == H else None
    gains = np.asarray(maps.exposure, np.float64) if len(maps.exposure) == len(frames) else np.ones(len(frames))
    n = len(frames)
    ours, base, count = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, int)
    se = np.zeros(2)
    for i in idx:
        p = frames.params(i)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
        with torch.no_grad():
            verts = model(t(p.shape), t(p.expression), t(p.pose), t(p.transl)).vertices[0].float()
            cam = frames.camera(i)
            occlusion = Occlusion(*transfer.factors(verts, radiance))
            r = render_pbr(mesh, verts, cam.K, cam.world_to_cam, W, H, material, light, occlusion)
            img = torch.as_tensor(frames.image(i) / 255.0, dtype=torch.float32)
            person = torch.as_tensor(frames.mask(i) > 127)
            pred = srgb_encode(r.rgb * float(gains[i])).clamp(0, 1)
            where = (r.alpha > 0) & person
            pred_base = None
            if head is not None:
                ras = head.raster(verts[None][:, head.vertex_ids], np.array([i]))
                pred_base = head.shade(ras, tracked[0], tracked[1])[0][0].clamp(0, 1)
                where &= (ras["region"][0, ..., 0] > 0.5) & (ras["cover"][0, ..., 0] > 0)
            else:
                face = model.region("face")[model.faces].all(1)
                where &= torch.where(r.triangle >= 0, face[r.triangle.clamp(min=0)], torch.zeros_like(where))
        k = int(where.sum())
        count[i] = k
        if k == 0:
            continue
        d = (pred - img)[where]
        ours[i] = float(d.abs().mean()) * 255
        se[0] += float((d * 255).pow(2).sum())
        if pred_base is not None:
            db = (pred_base - img)[where]
            base[i] = float(db.abs().mean()) * 255
            se[1] += float((db * 255).pow(2).sum())
    total = max(int(count.sum()) * 3, 1)
    psnr = lambda s: float(10 * np.log10(255.0**2 / max(s / total, 1e-12)))  # noqa: E731
    return RerenderErrors(ours, base, count, psnr(se[0]), psnr(se[1]) if head is not None else float("nan"))
