"""Relighting truth: a few frames of a Mitsuba capture re-rendered under held-out environments, with more samples.

The reflectance capture (issue #13) is scored by shading the ESTIMATED maps under environments the
capture never saw and comparing with Mitsuba's path trace of the TRUE maps under the same environments.
The capture itself is rendered at 16 spp (noise ~27-30 dB PSNR on face pixels, too close to the 30 dB
target to score against), so :func:`held_out_truth` renders only a few of its frames (same poses,
camera, maps) at ``spp`` samples (64 by default: ~6 dB less noise) under each environment of
:func:`~.mitsuba_capture.held_out_specs`, and caches them under ``cache_dir("mitsuba")/relight-<hash>``.

Cost (192^2, 4 frames, 64 spp, 3 environments): about 1 minute on two cores, once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..render.lighting import EnvironmentMap
from .mitsuba_capture import CaptureSpec, MitsubaHead, code_versions, held_out_specs, mitsuba_sensor

__all__ = ["RelightTruth", "held_out_truth", "DEFAULT_FRAMES", "face_texels", "material_errors", "relight_scores", "truth_directory"]

#: Frames of the small capture scored: frontal, turned right, nodding, turned left.
DEFAULT_FRAMES = (0, 6, 12, 18)


@dataclass
class RelightTruth:
    """Path-traced truth of some capture frames under held-out environments.

    ``frames`` (F,) capture frame indices; ``names`` (E,) ``"<environment>@<rotation>"``; ``rgb``
    (E, F, H, W, 3) float32 linear radiance of the head (premultiplied by coverage, no background);
    ``alpha`` (F, H, W) coverage; ``environments`` the E maps (what Mitsuba lit the head with).
    """

    frames: np.ndarray
    names: list[str]
    rgb: np.ndarray
    alpha: np.ndarray
    environments: list[EnvironmentMap]


def _key(spec: CaptureSpec, frames: Sequence[int], spp: int, count: int) -> str:
    import mitsuba

    blob = json.dumps(dict(asdict(spec), frames=list(map(int, frames)), spp=spp, count=count, **code_versions(spec.model),
                           mitsuba=mitsuba.__version__), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def held_out_truth(capture, frames: Sequence[int] = DEFAULT_FRAMES, spp: int = 64, count: int = 3,
                   cache_root: Optional[Path] = None, progress: bool = False) -> RelightTruth:
    """Render (or load from the cache) ``frames`` of ``capture`` (a :class:`~.mitsuba_capture.MitsubaCapture`)
    under the first ``count`` held-out environments at ``spp`` samples per pixel."""
    import mitsuba as mi

    from ..models import load_head_model
    from ..paths import cache_dir

    spec: CaptureSpec = capture.spec
    root = Path(cache_root) if cache_root is not None else cache_dir("mitsuba")
    path = root / f"relight-{_key(spec, frames, spp, count)}.npz"
    specs = held_out_specs(spec, count)
    envs = [EnvironmentMap.generated(s.environment, s.environment_width, s.environment_rotation) for s in specs]
    names = [f"{s.environment}@{s.environment_rotation:g}" for s in specs]
    if path.exists():
        z = np.load(path)
        return RelightTruth(z["frames"], names, z["rgb"].astype(np.float32), z["alpha"].astype(np.float32), envs)
    mi.set_variant("scalar_rgb")
    P, maps = capture.parameters(), capture.maps()
    model = load_head_model(spec.model)
    sensor = mitsuba_sensor(P["K"], P["world_to_cam"], spec.width, spec.height, spp, spec.sampler)
    rgb = np.zeros((len(envs), len(frames), spec.height, spec.width, 3), np.float32)
    alpha = np.zeros((len(frames), spec.height, spec.width), np.float32)
    for e, env in enumerate(envs):
        head = MitsubaHead(model, maps, env, sensor, spec.max_depth)
        for j, i in enumerate(frames):
            im = head.render(P["vertices"][i], seed=1000 + i)
            rgb[e, j], alpha[j] = im[..., :3], np.clip(im[..., 3], 0, 1)
            if progress:
                print(f"relight truth {names[e]} frame {i}", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".relight-", suffix=".npz", dir=root)
    os.close(fd)
    np.savez(tmp, frames=np.asarray(frames), rgb=rgb.astype(np.float16), alpha=alpha.astype(np.float16))
    os.replace(tmp, path)
    return RelightTruth(np.asarray(frames), names, rgb, alpha, envs)


def face_texels(model, resolution: int) -> np.ndarray:
    """(R, R) bool texels of the model's ``face`` region."""
    from ..appearance.uvmap import UVTexels

    tx = UVTexels(model, resolution)
    return tx.to_image(model.region("face")[tx.faces].all(1).float()[:, None])[..., 0].numpy() > 0


def material_errors(maps, capture, model, where: Optional[np.ndarray] = None) -> dict:
    """Mean absolute errors of estimated ``maps`` (:class:`~avatar3d.appearance.maps.AppearanceMaps`) against the
    capture's true maps over face texels (or ``where``, (R, R) at the maps' resolution): roughness, specular
    intensity, and the same for the skin priors alone (roughness 0.5, specular 0.35)."""
    import cv2

    from ..appearance.maps import SKIN_ROUGHNESS, SKIN_SPECULAR
    from ..render.brdf import F0_PER_SPECULAR

    R = maps.resolution
    true = capture.maps()
    rough = cv2.resize(true.roughness.astype(np.float32), (R, R), interpolation=cv2.INTER_AREA)
    spec = cv2.resize((true.specular / F0_PER_SPECULAR).astype(np.float32), (R, R), interpolation=cv2.INTER_AREA)
    m = face_texels(model, R) if where is None else where
    mae = lambda a, b: float(np.abs(np.asarray(a, np.float64)[m] - np.asarray(b, np.float64)[m]).mean())  # noqa: E731
    return {"roughness_mae": mae(maps.roughness, rough), "roughness_mae_prior": mae(np.full_like(rough, SKIN_ROUGHNESS), rough),
            "specular_mae": mae(maps.specular, spec), "specular_mae_prior": mae(np.full_like(spec, SKIN_SPECULAR), spec)}


def albedo_scale(maps, capture, model) -> np.ndarray:
    """(3,) the one global per-channel gain that best maps the estimated albedo onto the true one (least squares over
    observed face texels, coverage > 0.5): the albedo/light scale ambiguity the albedo score also removes."""
    import cv2

    R = maps.resolution
    true = cv2.resize(capture.maps().albedo, (R, R), interpolation=cv2.INTER_AREA).astype(np.float64)
    m = face_texels(model, R) & (maps.coverage > 0.5)
    e = np.asarray(maps.albedo, np.float64)[m]
    return (e * true[m]).sum(0) / np.maximum((e * e).sum(0), 1e-12)


def relight_scores(maps, capture, truth: RelightTruth, model, downsample: int = 2, shadows: bool = True,
                   save: Optional[Path] = None) -> dict[str, float]:
    """PSNR (dB, linear RGB, peak 1) over face pixels of ``maps`` shaded by :func:`avatar3d.render.pbr.render_pbr`
    on the capture's true geometry under each held-out environment, against Mitsuba's ``truth``; both images
    box-averaged ``downsample`` x ``downsample`` first (Monte Carlo noise), a pixel counts when all its
    sub-pixels are face and fully covered. ``shadows``: with the self-shadowing of :mod:`avatar3d.appearance.visibility`.
    ``save``: a PNG of ours | truth per environment (first frame)."""
    import torch

    from ..appearance.visibility import LightTransfer, VertexVisibility, downsample_env, env_grid
    from ..render.color import srgb_encode
    from ..render.pbr import Occlusion, PBRLight, PBRMaterial, SeamMesh, render_pbr

    P, spec = capture.parameters(), capture.spec
    mesh = SeamMesh.of(model)
    mat = PBRMaterial.of(maps.albedo, maps.specular, maps.roughness, maps.normal)
    face = model.region("face")
    shape = torch.as_tensor(P["shape"], dtype=torch.float32)[None]
    with torch.no_grad():
        rest = model(shape).vertices[0]
    lt = LightTransfer(VertexVisibility(rest, model.faces), *env_grid(16), model.faces) if shadows else None
    k = downsample
    pool = lambda a: a.reshape(a.shape[0] // k, k, a.shape[1] // k, k, *a.shape[2:]).mean((1, 3))  # noqa: E731
    out, pictures = {}, []
    for e, env in enumerate(truth.environments):
        light = PBRLight.of(env, width=64)
        rad = downsample_env(env, 16)
        se, n = 0.0, 0
        for j, i in enumerate(truth.frames):
            V = torch.as_tensor(P["vertices"][i])
            occ = Occlusion(*lt.factors(V, rad)) if lt is not None else None
            r = render_pbr(mesh, V, P["K"], P["world_to_cam"], spec.width, spec.height, mat, light, occ)
            fp = ((r.triangle >= 0) & face[model.faces[r.triangle.clamp(min=0)]].all(-1)).numpy() & (truth.alpha[j] > 0.999)
            ours, gt = pool(r.rgb.numpy()), pool(truth.rgb[e, j])
            m = pool(fp.astype(np.float32)) > 0.999
            se += float(((ours[m] - gt[m]) ** 2).sum())
            n += int(m.sum()) * 3
            if j == 0:
                pictures.append(np.concatenate([srgb_encode(np.clip(r.rgb.numpy(), 0, 1)), srgb_encode(np.clip(truth.rgb[e, j], 0, 1))], 1))
        out[truth.names[e]] = 10 * np.log10(1.0 / max(se / max(n, 1), 1e-12))
    if save is not None:
        import cv2

        cv2.imwrite(str(save), np.round(np.concatenate(pictures, 0)[..., ::-1] * 255).astype(np.uint8))
    return out


def truth_directory(capture, out: Path, order: Optional[Sequence[int]] = None) -> Path:
    """A tracking directory in ``out`` holding the capture's frames, alpha masks and TRUE parameters (the
    reflectance fit without tracking errors); ``order``: the capture's frames to list, in this order (default all,
    in order; frame names keep the capture's numbers), e.g. even then odd frames so that the held-out end of the
    split (:mod:`avatar3d.data.split`) holds poses between trained ones."""
    import cv2

    from ..data.sequence import TrackedSequence

    out = Path(out)
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    P, frames = capture.parameters(), capture.frames()
    alpha = capture.linear()[1]
    order = np.arange(len(frames)) if order is None else np.asarray(order)
    names = [f"{i:06d}" for i in order]
    for i, nm in zip(order, names):
        cv2.imwrite(str(out / "images" / f"{nm}.png"), frames[i][..., ::-1])
        cv2.imwrite(str(out / "masks" / f"{nm}.png"), np.round(np.clip(alpha[i], 0, 1) * 255).astype(np.uint8))
    n = len(order)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    TrackedSequence(model=capture.spec.model, model_version="truth", fps=capture.spec.fps, shape=f32(P["shape"]),
                    expression=f32(P["expression"][order]), pose=f32(P["pose"][order]), transl=f32(P["transl"][order]),
                    K=f32(np.repeat(P["K"][None], n, 0)), world_to_cam=f32(np.repeat(P["world_to_cam"][None], n, 0)),
                    width=frames.shape[2], height=frames.shape[1], frame_names=names).save(out)
    return out
