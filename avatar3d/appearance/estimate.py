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
5. **detail** (full resolution, streaming; :mod:`.detail`): re-fuses the albedo at ``resolution`` under
   the fitted light, with the fitted specular lobe subtracted (:class:`SpecularRadiance`) and the
   self-shadowing's mean diffuse factor per texel, and estimates normal/displacement from the shading
   residual (kept flat where the images do not resolve detail).

Steps 1-3 run on at most ``fit_frames`` frames spread evenly over the clip: the fit keeps each frame's
(V, W) float32 light transfer (~26 MB on the built-in head with the default 16 x 32 grid), and neighbouring
frames of a 30 fps clip add little. The detail pass streams (bounded memory, ``DetailOptions.max_frames``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..models.base import HeadModel
from ..render.brdf import PrefilteredEnvironment, lut_lookup, reflect, specular_to_f0, split_sum_lut
from ..render.lighting import EnvironmentMap
from .detail import DetailOptions, DetailPass
from .fusion import AlternatingFusion, FusionOptions, TexelObservations, uv_model
from .maps import AppearanceMaps
from .reflectance import BackgroundRays, ReflectanceFit, ReflectanceOptions, grid_environment
from .texel_stream import spread, valid_mask
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
    capture's light when known (kept fixed; the albedo then has its absolute scale), None: estimated;
    ``fit_frames`` frames (at most, spread evenly) of steps 1-3; ``detail`` the full-resolution pass's settings
    (None: no detail pass; the working-resolution albedo upsampled, flat normals)."""

    resolution: int = 1024
    working_resolution: int = 256
    fusion: FusionOptions = field(default_factory=FusionOptions)
    reflectance: ReflectanceOptions = field(default_factory=ReflectanceOptions)
    visibility_directions: int = 256
    known_environment: Optional[EnvironmentMap] = None
    fit_frames: int = 40
    detail: Optional[DetailOptions] = field(default_factory=DetailOptions)


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
    model = uv_model(frames, model)
    tell = progress or (lambda stage, done, total: None)
    Rw = min(options.working_resolution, options.resolution)
    fopts = replace(options.fusion, resolution=Rw)
    texels = UVTexels(model, Rw)
    tell("observations", 0, 1)
    fit_frames = _subset(frames, options.fit_frames)
    obs = TexelObservations(fit_frames, model, texels, fopts)
    face = model.region(fopts.light_region or "face")[texels.faces].all(1)
    fusion = AlternatingFusion(obs, fopts, face)
    fusion.run()
    tell("observations", 1, 1)
    tell("visibility", 0, 1)
    vis = VertexVisibility(rest_vertices(frames, model), model.faces, options.visibility_directions)
    ropts = options.reflectance
    transfer = LightTransfer(vis, *env_grid(ropts.env_height), model.faces)
    tell("visibility", 1, 1)
    background = BackgroundRays(fit_frames, obs.used, ropts.background_per_frame, ropts.mask_dilate) if ropts.background else None
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
    sh = env.sh()
    rough_r, spec_r = np.clip(_upsample(rough.numpy(), R), 0, 1), np.clip(_upsample(spec.numpy(), R), 0, 1)
    maps = AppearanceMaps.priors(
        albedo=np.clip(_upsample(albedo.numpy(), R), 0, 1), coverage=np.clip(_upsample(coverage.numpy(), R), 0, 1), sh=sh.astype(np.float32),
        model=frames.sequence.model, environment=_upsample_env(env), exposure=np.where(valid_mask(frames), 1.0, 0.0).astype(np.float32),
        frame_names=[frames.name(i) for i in range(len(frames))],
        stats={"residual": float(fit.final_residual), "observed_fraction": float(fit.seen.float().mean()),
               "working_resolution": Rw, "regions_fitted": int(torch.isfinite(fit.cell_roughness).sum()), "fit_frames": int(obs.used.sum())},
    )
    maps.roughness, maps.specular = rough_r.astype(np.float32), spec_r.astype(np.float32)
    if options.detail is not None:
        _detail(maps, frames, fit_frames, model, env, transfer, ropts.env_height, Rw, options.detail, tell)
    return maps


def _subset(frames: TrackedFrames, count: int) -> TrackedFrames:
    """``frames`` with at most ``count`` valid frames, spread evenly (the others marked invalid, so they are skipped)."""
    idx = np.nonzero(valid_mask(frames))[0]
    if len(idx) <= count:
        return frames
    keep = spread(idx, count)
    seq = replace(frames.sequence, valid=np.isin(np.arange(len(frames)), keep))
    return TrackedFrames(frames.directory, sequence=seq)


def _mean_shadow(fit_frames: TrackedFrames, model: HeadModel, transfer: LightTransfer, radiance: Tensor, count: int = 8) -> tuple[Tensor, Tensor]:
    """(V,) mean diffuse shadow factor (grey) and (V,) mean ambient occlusion of the posed head over ``count`` fit frames."""
    idx = spread(np.nonzero(valid_mask(fit_frames))[0], count)
    shadow, ao = torch.zeros(model.num_vertices), torch.zeros(model.num_vertices)
    for i in idx:
        p = fit_frames.params(int(i))
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
        with torch.no_grad():
            posed = model(t(p.shape), t(p.expression), t(p.pose), t(p.transl)).vertices[0].float()
            s, a = transfer.factors(posed, radiance)
        shadow += s.mean(1) / len(idx)
        ao += a[:, 0] / len(idx)
    return shadow, ao


def _add_detail(base: np.ndarray, full: np.ndarray, working: int) -> np.ndarray:
    """(R, R, 3) the fit's albedo ``base`` (upsampled from ``working``^2) times the full-resolution pass's albedo ``full``
    over its own ``working``^2 low-pass: the fit's shading model is the better one (per-frame self-shadowing,
    the specular fitted with it), the pass's resolution is the higher: each keeps the band it is best at."""
    import cv2

    R = full.shape[0]
    low = _upsample(cv2.resize(np.ascontiguousarray(full, np.float32), (working, working), interpolation=cv2.INTER_AREA), R)
    ratio = np.clip(full / np.maximum(low, 1e-3), 0.25, 4.0)
    return np.clip(base * ratio, 0, 1).astype(np.float32)


def _detail(maps: AppearanceMaps, frames: TrackedFrames, fit_frames: TrackedFrames, model: HeadModel, env: EnvironmentMap,
            transfer: LightTransfer, env_height: int, working: int, options: DetailOptions, tell: Progress) -> None:
    """Step 5: full-resolution albedo detail, coverage, displacement and normal maps into ``maps`` (in place)."""
    R = maps.resolution
    texels = UVTexels(model, R)
    shadow_v, ao_v = _mean_shadow(fit_frames, model, transfer, torch.as_tensor(downsample_env(env, env_height)).float())
    at_texels = lambda v: (v[texels.faces] * texels.bary).sum(1)  # noqa: E731  (V,) -> (M,)
    flat = lambda img: torch.as_tensor(img).reshape(-1)[texels.index].float()  # noqa: E731  (R, R) -> (M,)
    rough, spec, ao = flat(maps.roughness), flat(maps.specular), at_texels(ao_v)
    lobe = SpecularRadiance(env)
    specular = lambda n, v, t: lobe(n, v, rough[t], spec[t], ao[t])  # noqa: E731
    dp = DetailPass(frames, model, R, torch.as_tensor(env.sh(), dtype=torch.float32), specular, at_texels(shadow_v).clamp(0, 1), options)
    out = dp.run(progress=lambda d, t: tell("detail", d, t))
    maps.albedo = _add_detail(maps.albedo, out.albedo.numpy(), working)
    maps.coverage = np.clip(out.coverage.numpy(), 0, 1).astype(np.float32)
    maps.displacement = out.displacement.numpy().astype(np.float32)
    maps.normal = out.normal.numpy().astype(np.float32)
    maps.stats.update(detail_frames=int(dp.frames_read), detail_seconds={k: round(float(v), 2) for k, v in dp.timings.items()})


def _upsample_env(env: EnvironmentMap, width: int = 128) -> EnvironmentMap:
    """The grid environment bilinearly resampled to ``width`` x ``width / 2`` (what ``environment.hdr`` stores)."""
    from ..render.lighting import equirect_directions

    d = equirect_directions(width // 2, width).reshape(-1, 3)
    return EnvironmentMap(env.sample(d).reshape(width // 2, width, 3).astype(np.float32))
