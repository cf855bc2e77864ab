"""The appearance stage's library entry: a tracked video in, :class:`~.maps.AppearanceMaps` out.

:func:`estimate_appearance` chains the steps (each in its own module), at a working resolution
(``AppearanceOptions.working_resolution`` <= 256: the light and materials are smooth, and the fit
holds every observation in memory):

1. :mod:`.fusion`: observations of every texel in every frame (colour, normal, view direction,
   visibility to the camera) and a first albedo under one SH light;
2. :mod:`.visibility`: the head's self-shadowing towards the environment (shadow maps of the rest mesh);
3. :mod:`.reflectance`: the capture's environment (equirectangular grid), the shadow-free albedo with
   the specular subtracted, per-region specular and roughness against skin priors;
4. unseen texels filled (:class:`.uvmap.UVFiller`), every map upsampled to ``resolution``;
5. **detail** (full resolution, streaming; :mod:`.detail`, wired in at merge): re-fuses the albedo at
   ``resolution`` given the fixed light and estimates normal/displacement from the shading residual;
   it receives :class:`SpecularRadiance` (the specular lobe to subtract) and the fitted light. Until it is
   wired, the albedo is the working-resolution albedo upsampled and the normal/displacement are flat.

Cost (24 frames at 192^2, 128^2 working maps, two shared cores): 1.5-2.5 min, most of it the reflectance
rounds. Memory: the fit keeps each frame's (V, W) float32 light transfer (~26 MB on the built-in head with
the default 16 x 32 grid), so long clips should be fitted on a subset of frames (not done yet: a 300-frame
clip would hold ~8 GB).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.brdf import PrefilteredEnvironment, lut_lookup, reflect, specular_to_f0, split_sum_lut
from ..render.lighting import EnvironmentMap
from .fusion import AlternatingFusion, FusionOptions, TexelObservations
from .maps import AppearanceMaps
from .reflectance import BackgroundRays, ReflectanceFit, ReflectanceOptions, grid_environment
from .uvmap import UVFiller, UVTexels
from .visibility import LightTransfer, VertexVisibility, downsample_env, env_grid

__all__ = ["AppearanceOptions", "SpecularRadiance", "estimate_appearance", "rest_vertices"]

#: progress(stage name, done, total)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AppearanceOptions:
    """Settings of :func:`estimate_appearance`: ``resolution`` texels per side of the output maps;
    ``working_resolution`` of the light/material fit (at most ``resolution``); ``fusion`` the observations'
    and first albedo's settings (its ``resolution`` is replaced by ``working_resolution``); ``reflectance``
    the environment/material fit's; ``visibility_directions`` shadow-map directions; ``known_environment`` the
    capture's light when known (kept fixed; the albedo then has its absolute scale), None: estimated."""

    resolution: int = 1024
    working_resolution: int = 256
    fusion: FusionOptions = field(default_factory=FusionOptions)
    reflectance: ReflectanceOptions = field(default_factory=ReflectanceOptions)
    visibility_directions: int = 256
    known_environment: Optional[EnvironmentMap] = None


class SpecularRadiance:
    """The fitted specular lobe, to subtract from observations: ``__call__(normals, view, roughness, specular, ao)``
    with (K, 3) unit world normals and surface-to-camera directions, (K,) perceptual roughness and specular
    intensity, (K,) specular occlusion -> (K, 3) linear radiance (split sum of the estimated environment)."""

    def __init__(self, environment: EnvironmentMap):
        self.prefiltered = PrefilteredEnvironment.from_environment(environment, width=environment.shape[1])
        self.lut = split_sum_lut()

    def __call__(self, normals: Tensor, view: Tensor, roughness: Tensor, specular: Tensor, ao: Optional[Tensor] = None) -> Tensor:
        r = roughness.float()[:, None]
        nov = (normals * view).sum(-1, keepdim=True).clamp(1e-4, 1)
        sb = lut_lookup(self.lut, r, nov)
        out = self.prefiltered.radiance(reflect(view.float(), normals.float()), r) * (specular_to_f0(specular.float())[:, None] * sb[..., :1] + sb[..., 1:])
        return out if ao is None else out * ao.float()[:, None]


def rest_vertices(frames: TrackedFrames, model: HeadModel) -> Tensor:
    """(V, 3) the capture's identity at zero pose and expression (the mesh the self-shadowing is computed on)."""
    shape = torch.as_tensor(np.asarray(frames.sequence.shape), dtype=torch.float32)[None]
    with torch.no_grad():
        return model(shape).vertices[0].float()


def _upsample(img: np.ndarray, R: int) -> np.ndarray:
    import cv2

    out = cv2.resize(np.ascontiguousarray(img, np.float32), (R, R), interpolation=cv2.INTER_LINEAR)
    return out.reshape(R, R, *img.shape[2:])


def estimate_appearance(frames: TrackedFrames, model: Optional[HeadModel] = None, options: AppearanceOptions = AppearanceOptions(),
                        progress: Optional[Progress] = None) -> AppearanceMaps:
    """PBR maps and the capture light of a tracking directory (see the module docstring).

    Args:
        frames: ``TrackedFrames(track_dir)``.
        model: its head model (None: loaded from ``frames.sequence.model``).
        options: :class:`AppearanceOptions`.
        progress: called as ``progress(stage, done, total)``.
    Raises:
        BadInputError: no valid frame, a frame without image or mask, a model without UVs.
    """
    if model is None:
        from ..models import load_head_model

        model = load_head_model(frames.sequence.model)
    if getattr(model, "uvs", None) is None or getattr(model, "uv_faces", None) is None:
        raise BadInputError(f"head model '{frames.sequence.model}' has no UV layout to fuse colour into")
    tell = progress or (lambda stage, done, total: None)
    Rw = min(options.working_resolution, options.resolution)
    fopts = replace(options.fusion, resolution=Rw)
    texels = UVTexels(model, Rw)
    tell("observations", 0, 1)
    obs = TexelObservations(frames, model, texels, fopts)
    face = model.region(fopts.light_region or "face")[texels.faces].all(1)
    fusion = AlternatingFusion(obs, fopts, face)
    fusion.run()
    tell("observations", 1, 1)
    tell("visibility", 0, 1)
    vis = VertexVisibility(rest_vertices(frames, model), model.faces, options.visibility_directions)
    ropts = options.reflectance
    transfer = LightTransfer(vis, *env_grid(ropts.env_height), model.faces)
    tell("visibility", 1, 1)
    background = BackgroundRays(frames, obs.used, ropts.background_per_frame, ropts.mask_dilate) if ropts.background else None
    known = None if options.known_environment is None else downsample_env(options.known_environment, ropts.env_height)
    fit = ReflectanceFit(obs, texels, transfer, ropts, face, background, fusion.albedo, known)
    fit.run(progress=lambda d, t: tell("reflectance", d, t))
    total = torch.zeros(texels.count, dtype=torch.float64).index_add_(0, obs.texel, obs.weight.double())
    filler = UVFiller(texels, model)
    seen = total.float() * fit.seen.float()
    albedo, _ = filler(fit.albedo.float(), seen)
    rough = texels.to_image(fit.roughness.float()[:, None], fill=float(fit.roughness.mean()))[..., 0]
    spec = texels.to_image(fit.specular.float()[:, None], fill=float(fit.specular.mean()))[..., 0]
    coverage = texels.to_image((1 - torch.exp(-total / fopts.coverage_scale)).float()[:, None])[..., 0]
    R = options.resolution
    env = grid_environment(fit.light, ropts.env_height)
    # Detail (full resolution) goes here at merge: detail.refine(frames, model, albedo, env, SpecularRadiance(env), ...).
    sh = env.sh()
    maps = AppearanceMaps.priors(
        albedo=np.clip(_upsample(albedo.numpy(), R), 0, 1), coverage=np.clip(_upsample(coverage.numpy(), R), 0, 1), sh=sh.astype(np.float32),
        model=frames.sequence.model, environment=_upsample_env(env), exposure=np.where(obs.used, 1.0, 0.0).astype(np.float32),
        frame_names=[frames.name(i) for i in range(len(frames))],
        stats={"residual": float(fit.final_residual), "observed_fraction": float(fit.seen.float().mean()),
               "working_resolution": Rw, "regions_fitted": int(torch.isfinite(fit.cell_roughness).sum())},
    )
    maps.roughness = np.clip(_upsample(rough.numpy(), R), 0, 1).astype(np.float32)
    maps.specular = np.clip(_upsample(spec.numpy(), R), 0, 1).astype(np.float32)
    return maps


def _upsample_env(env: EnvironmentMap, width: int = 128) -> EnvironmentMap:
    """The grid environment bilinearly resampled to ``width`` x ``width / 2`` (what ``environment.hdr`` stores)."""
    from ..render.lighting import equirect_directions

    d = equirect_directions(width // 2, width).reshape(-1, 3)
    return EnvironmentMap(env.sample(d).reshape(width // 2, width, 3).astype(np.float32))
