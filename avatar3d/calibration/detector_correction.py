"""The non-linear part of MediaPipe's view of a head model: a small network trained on renders.

The response table (:mod:`~avatar3d.calibration.detector_response`) is linear: MediaPipe's landmark
motion per blendshape and identity coefficient, measured one at a time. MediaPipe is not additive.
Under an open jaw it loses most of a smile's lift of the mouth corner; on the far side of a turned
head it reports the cheek and mouth contour where a frontal face would have them. A fit that
trusts the linear table explains such frames with other shapes: on the rendered ground truth,
mouthSmileLeft (which rises while the jaw is still open and the head is turned 0.25 rad) came out
at correlation 0.3-0.6 with the truth.

:class:`~avatar3d.tracking.detector_model.DetectorCorrection` adds what the table leaves: a rest-frame displacement of each landmark
(metres) as a function of the expression coefficients and the head and eye rotations. It is
trained (:func:`train_correction`) on thousands of renders of the textured head with random
identities, expression combinations, head turns, lights and backgrounds (:func:`sample_detections`),
against MediaPipe's detections, through the same projection the fit uses, with a penalty on the
displacement so that it stays zero where the detections do not ask for one.
:class:`~avatar3d.tracking.landmark_model.LandmarkHead` adds it to its landmark points. The
coefficients keep their meaning: vertices, exports and renders are unchanged. This module makes the
samples and trains the network; the fit only loads and runs it (:mod:`avatar3d.tracking.detector_model`).
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._tensor import f32
from ..models.base import HeadModel
from ..tracking.detector_model import DetectorCorrection, joint_indices

__all__ = ["sample_detections", "sample_detections_parallel", "sample_projector", "train_correction"]


def _random_sh(g: np.random.Generator) -> Tensor:
    """A key light from a random upper direction, a dimmer fill from the other side, ambient (camera frame)."""
    from ..synthetic.video import directional_sh

    kx, ky = g.uniform(-0.8, 0.8), g.uniform(-0.8, 0.2)
    key = tuple(g.uniform(0.5, 0.9) * g.uniform(0.9, 1.1, 3))
    fill = tuple(np.full(3, g.uniform(0.1, 0.3)))
    return directional_sh([((kx, ky, -0.65), key), ((-kx, 0.1, -0.7), fill)], tuple(np.full(3, g.uniform(0.25, 0.45))))


def _random_batch(model: HeadModel, g: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """One identity and ``n`` random expression combinations and poses (see :func:`sample_detections`)."""
    E, S, J = model.num_expression, model.num_shape, model.num_joints
    names = list(model.expression_names)
    expr = np.zeros((n, E))
    for i in range(n):
        if "jawOpen" in names and g.random() < 0.5:  # the shape the others most often ride on
            expr[i, names.index("jawOpen")] = g.uniform(0, 1)
        k = int(g.integers(0, 5))
        expr[i, g.choice(E, k, replace=False)] = g.uniform(0, 1, k)
    lo, hi = model.expression_range
    expr = np.clip(expr, lo, hi)
    pose = np.zeros((n, J, 3))
    pose[:, 0] = g.uniform([-0.3, -0.5, -0.15], [0.3, 0.5, 0.15], (n, 3))  # nod, turn, tilt (radians)
    eyes = [model.joint_names.index(j) for j in ("eye_left", "eye_right") if j in model.joint_names]
    if eyes:
        pose[:, eyes, :2] = g.uniform(-0.15, 0.15, (n, 1, 2))  # both eyes look the same way
    transl = g.uniform([-0.02, -0.02, -0.03], [0.02, 0.02, 0.03], (n, 3))
    return g.standard_normal(S) * 0.7, expr, pose, transl


def sample_detections(model: HeadModel, num: int, seed: int = 0, batch: int = 20, width: int = 360, height: int = 640,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """Render ``num`` random phone-look frames of ``model`` and detect MediaPipe's landmarks on each.

    Every ``batch`` frames share a random identity (0.7 std), camera distance (0.3-0.5 m), lights
    (:func:`_random_sh`), room background and sensor noise; each frame has its own expression
    combination (jawOpen at U(0, 1) half the time, plus 0-4 random shapes at U(0, 1)), head rotation
    (turn ±0.5, nod ±0.3, tilt ±0.15 rad), gaze (±0.15 rad) and position (±2-3 cm).

    Returns:
        ``shape`` (M, S), ``expression`` (M, E), ``pose`` (M, J, 3), ``transl`` (M, 3), ``world_to_cam``
        (M, 4, 4), ``K`` (3, 3) and ``detections`` (M, 478, 2) pixels (NaN where MediaPipe found no face).
    """
    from ..capture.landmarks import FaceLandmarker
    from ..render.camera_builders import centred_K, front_camera, phone_focal
    from ..synthetic.video import render_frames

    g = np.random.default_rng(seed)
    K = centred_K(phone_focal(width, height), width, height)
    out: dict[str, list] = {k: [] for k in ("shape", "expression", "pose", "transl", "world_to_cam", "detections")}
    t0 = time.perf_counter()
    with FaceLandmarker(video=False) as fl:
        for b in range(0, num, batch):
            n = min(batch, num - b)
            shape, expr, pose, transl = _random_batch(model, g, n)
            w2c = front_camera(g.uniform(0.3, 0.5))
            frames = render_frames(model, shape, expr, pose, transl, K, w2c, width, height, g, g.uniform(0, 3), sh=_random_sh(g))
            for _, frame, _ in frames:
                d = fl(frame)
                out["detections"].append(np.full((478, 2), np.nan) if d is None else d[:, :2].astype(np.float64))
            out["shape"].append(np.repeat(shape[None], n, 0))
            out["expression"].append(expr)
            out["pose"].append(pose)
            out["transl"].append(transl)
            out["world_to_cam"].append(np.repeat(w2c[None], n, 0))
            if progress and (b // batch) % 25 == 0:
                print(f"detector samples: {b + n}/{num} ({time.perf_counter() - t0:.0f} s)", flush=True)
    res = {k: np.concatenate(v) if k != "detections" else np.stack(v) for k, v in out.items()}
    res["K"] = K
    return res


def _sample_worker(args: tuple) -> dict[str, np.ndarray]:
    from ..models import load_head_model

    name, num, seed = args
    torch.set_num_threads(1)
    return sample_detections(load_head_model(name), num, seed=seed, progress=seed == 0)


def sample_detections_parallel(model_name: str, num: int, workers: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """:func:`sample_detections` split over ``workers`` processes (seeds ``seed .. seed + workers - 1``)."""
    import multiprocessing as mp

    parts = [(model_name, num // workers + (w < num % workers), seed + w) for w in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:  # spawn: MediaPipe and torch threads do not survive fork
        res = pool.map(_sample_worker, parts)
    return {k: res[0][k] if k == "K" else np.concatenate([r[k] for r in res]) for k in res[0]}


def sample_projector(head, samples: dict[str, np.ndarray]):
    """Rest points of the samples through ``head`` (no correction), and a function projecting rest points of a subset."""
    from ..models.lbs import batch_rodrigues
    from ..tracking.landmark_model import skin_points

    shape, expr, pose, transl = (f32(samples[k]) for k in ("shape", "expression", "pose", "transl"))
    w2c, K = f32(samples["world_to_cam"]), f32(samples["K"])
    N, J = len(expr), pose.shape[1]
    with torch.no_grad():
        rot = batch_rodrigues(pose.reshape(-1, 3)).view(N, J, 3, 3)
        v0 = head.rest_points(shape, expr, rot, correct=False)[:, :, : head.num_landmarks]
        A = head.skin_transforms(shape, rot)
        A = torch.cat([A[..., :3], A[..., 3:] + transl[:, None, :, None]], -1)
    weights_t = head.weights_t[:, : head.num_landmarks]

    def project(idx: Tensor, v: Tensor) -> Tensor:
        """(n, L, 2) pixels of rest points v (n, 3, L) of samples idx."""
        c = w2c[idx, :3, :3] @ skin_points(A[idx], v, weights_t) + w2c[idx, :3, 3:]
        return torch.stack([K[0, 0] * c[:, 0] / c[:, 2] + K[0, 2], K[1, 1] * c[:, 1] / c[:, 2] + K[1, 2]], -1)

    return expr, rot, v0, project


def train_correction(model: HeadModel, head, samples: dict[str, np.ndarray], steps: int = 3000, batch: int = 512, lr: float = 2e-3,
                     penalty: float = 1e4, hidden: int = 256, rank: int = 64, val_fraction: float = 0.125, seed: int = 0,
                     progress: bool = False
                     ) -> tuple[DetectorCorrection, dict[str, float]]:
    """Fit a :class:`DetectorCorrection` to :func:`sample_detections` through ``head``'s linear landmark points.

    Minimises the mean pseudo-Huber (1 px) distance between the detections and the corrected points
    projected as the fit projects them, plus ``penalty`` x mean squared displacement (m², per point).

    Args:
        head: a :class:`~avatar3d.tracking.landmark_model.LandmarkHead` with the response table (and no
            correction, or one that is ignored here).
    Returns:
        the correction and ``{"train_px", "val_px", "val_px_table"}``: mean pseudo-Huber distance (px)
        on the training and held-out samples with the correction, and held-out with the table alone.
    """
    ok = np.isfinite(samples["detections"]).all((1, 2))
    if ok.sum() < 16:
        raise ValueError(f"only {int(ok.sum())} of {len(ok)} samples have detections; need at least 16 to train the detector correction")
    samples = {k: (v[ok] if k != "K" else v) for k, v in samples.items()}
    expr, rot, v0, project = sample_projector(head, samples)
    det = f32(samples["detections"])
    g = torch.Generator().manual_seed(seed)
    N = len(det)
    perm = torch.randperm(N, generator=g)
    nval = max(1, int(N * val_fraction))
    val, trn = perm[:nval], perm[nval:]
    corr = DetectorCorrection(model.num_expression, joint_indices(model), head.num_landmarks, hidden, rank)
    opt = torch.optim.AdamW(corr.parameters(), lr=lr, weight_decay=1e-4)

    def error(idx: Tensor, d: Optional[Tensor]) -> Tensor:
        v = v0[idx] if d is None else v0[idx] + d
        r2 = ((project(idx, v) - det[idx]) ** 2).sum(-1)
        return (torch.sqrt(r2 + 1.0) - 1.0).mean()

    t0 = time.perf_counter()
    for it in range(steps):
        for group in opt.param_groups:  # cosine decay to 5%
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * it / steps)))
        idx = trn[torch.randint(len(trn), (min(batch, len(trn)),), generator=g)]
        d = corr(expr[idx], rot[idx])
        loss = error(idx, d) + penalty * (d**2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (it % 500 == 0 or it == steps - 1):
            print(f"detector correction: step {it + 1}/{steps}, loss {float(loss):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    with torch.no_grad():
        report = {"train_px": float(error(trn, corr(expr[trn], rot[trn]))), "val_px": float(error(val, corr(expr[val], rot[val]))),
                  "val_px_table": float(error(val, None))}
    for p in corr.parameters():
        p.requires_grad_(False)
    return corr, report
