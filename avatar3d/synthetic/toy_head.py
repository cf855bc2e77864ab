"""A small synthetic head model and landmark sequences with known parameters, for tests and benchmarks.

The toy head is an ellipsoid (about a real head's size) with smooth identity modes, localised
expression blendshapes, a jaw and two eye joints, and a 478-point landmark embedding on its front
(eye-corner points where MediaPipe has them, so inter-ocular distance is meaningful). It lets the
fitter be tested for parameter recovery without any third-party data.
"""

from __future__ import annotations

import numpy as np
import torch

from .._tensor import f32
from ..models.base import HeadModel, HeadModelData
from ..render.camera import project
from ..render.camera_builders import centred_K, front_camera

__all__ = ["make_toy_head", "toy_sequence"]


def make_toy_head(num_shape: int = 10, num_expression: int = 8, seed: int = 0) -> HeadModel:
    """A ~1.2k-vertex ellipsoid head (metres, +Y up, face towards +Z) with a 478-point embedding."""
    rng = np.random.default_rng(seed)
    nl, nm = 30, 40
    th = np.linspace(0.05, np.pi - 0.05, nl)  # polar angle from +Y
    ph = np.linspace(0, 2 * np.pi, nm, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")
    d = np.stack([np.sin(T) * np.sin(P), np.cos(T), np.sin(T) * np.cos(P)], -1).reshape(-1, 3)  # unit dirs, +Z front
    radii = np.array([0.075, 0.11, 0.095])
    v = d * radii
    faces = []
    for i in range(nl - 1):
        for j in range(nm):
            a, b = i * nm + j, i * nm + (j + 1) % nm
            c, e = a + nm, b + nm
            faces += [(a, c, b), (b, c, e)]
    faces = np.array(faces, np.int64)
    V = len(v)
    # Identity: smooth normal displacements (low-order polynomials of the direction), ~5 mm per unit.
    basis = [d[:, 0], d[:, 1], d[:, 2], d[:, 0] ** 2, d[:, 1] ** 2, d[:, 2] ** 2, d[:, 0] * d[:, 1], d[:, 1] * d[:, 2],
             d[:, 0] * d[:, 2], d[:, 0] * d[:, 1] * d[:, 2]]
    shapedirs = np.zeros((V, 3, num_shape))
    for s in range(num_shape):
        field = basis[s % len(basis)] * (1 + 0.3 * rng.standard_normal())
        shapedirs[:, :, s] = d * field[:, None] * 0.005
    # Expressions: localised bumps on the front half, each moving in its own direction, ~1 cm at weight 1.
    exprdirs = np.zeros((V, 3, num_expression))
    front = np.argwhere(d[:, 2] > 0.8).ravel()  # where the landmarks are dense
    # Well-separated bump centres (farthest-point sampling) so every expression is observable.
    centres = [front[rng.integers(len(front))]]
    for _ in range(num_expression - 1):
        dist = np.min(np.stack([np.sum((v[front] - v[c]) ** 2, 1) for c in centres]), 0)
        centres.append(front[int(np.argmax(dist))])
    for e in range(num_expression):
        c = v[centres[e]]
        w = np.exp(-np.sum((v - c) ** 2, 1) / (2 * 0.025 ** 2))
        # Mostly in the image plane: motion along the view axis alone is barely observable.
        direction = np.array([[1.0, 0.2, 0.3], [0.2, 1.0, 0.3], [0.7, -0.7, 0.3]])[e % 3] + 0.2 * rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        exprdirs[:, :, e] = w[:, None] * direction * 0.01
    joint_names = ["root", "neck", "jaw", "eye_left", "eye_right"]
    J_pos = np.array([[0, -0.1, 0], [0, -0.08, -0.02], [0, -0.02, 0.0], [0.032, 0.03, 0.07], [-0.032, 0.03, 0.07]])
    parents = np.array([-1, 0, 1, 1, 1])
    # Regress joints as fixed points: one-hot rows on nearest vertices would move with shape; use a
    # uniform average of a few vertices shifted by a constant via j_regressor rows that sum to 1.
    j_reg = np.zeros((5, V))
    for j, p in enumerate(J_pos):
        near = np.argsort(np.sum((v - p) ** 2, 1))[:4]
        j_reg[j, near] = 0.25
    W = np.zeros((V, 5))
    jaw_w = np.clip((-0.02 - v[:, 1]) / 0.03, 0, 1) * (d[:, 2] > -0.2)
    eye_l = np.exp(-np.sum((v - J_pos[3]) ** 2, 1) / (2 * 0.008 ** 2))
    eye_r = np.exp(-np.sum((v - J_pos[4]) ** 2, 1) / (2 * 0.008 ** 2))
    W[:, 2], W[:, 3], W[:, 4] = jaw_w, eye_l, eye_r
    W[:, 1] = np.clip(1 - W[:, 2:].sum(1), 0, 1)
    W /= W.sum(1, keepdims=True)
    # 478 landmarks on front faces; the four eye corners MediaPipe uses go near the eyes.
    centers = v[faces].mean(1)
    cand = np.argwhere(centers[:, 2] > 0.045).ravel()
    lmk_faces = rng.choice(cand, 478, replace=True)
    for idx, target in ((33, (-0.045, 0.03, 0.08)), (133, (-0.018, 0.03, 0.09)), (263, (0.045, 0.03, 0.08)), (362, (0.018, 0.03, 0.09))):
        lmk_faces[idx] = int(np.argmin(np.sum((centers - np.array(target)) ** 2, 1)))
    bary = rng.dirichlet(np.ones(3), 478)
    uvs = np.stack([P.ravel() / (2 * np.pi), 1 - T.ravel() / np.pi], 1)
    regions = {"face": d[:, 2] > 0.3, "scalp": d[:, 1] > 0.5, "eyes": (eye_l + eye_r) > 0.5,
               "mouth_interior": np.zeros(V, bool), "neck_boundary": d[:, 1] < -0.95}
    data = HeadModelData(
        name="toy", version="1", v_template=v, faces=faces, uvs=uvs, uv_faces=faces.copy(), shapedirs=shapedirs,
        exprdirs=exprdirs, expression_names=[f"e{i}" for i in range(num_expression)], joint_names=joint_names,
        parents=parents, j_regressor=j_reg, lbs_weights=W, regions=regions, lmk_faces=lmk_faces, lmk_bary=bary,
        expression_range=(0.0, 1.0),
    )
    return HeadModel(data)


def toy_sequence(model: HeadModel, num_frames: int = 40, focal: float = 1400.0, size: int = 512, distance: float = 0.6,
                 noise_px: float = 0.5, seed: int = 0) -> dict:
    """Ground-truth parameters and noisy projected landmarks of a smooth synthetic performance.

    Returns a dict with ``shape`` (S,), ``expression`` (N, E), ``pose`` (N, J, 3), ``transl`` (N, 3),
    ``K`` (3, 3), ``world_to_cam`` (4, 4), ``landmarks`` (N, 478, 2) pixels, ``vertices`` (N, V, 3).
    """
    g = np.random.default_rng(seed)
    t = np.linspace(0, 1, num_frames)[:, None]
    S, E, J = model.num_shape, model.num_expression, model.num_joints
    shape = g.standard_normal(S) * 1.0
    freq = g.uniform(0.5, 2.0, E)
    phase = g.uniform(0, 2 * np.pi, E)
    expr = np.clip(0.5 + 0.5 * np.sin(2 * np.pi * freq * t + phase), 0, 1) * g.uniform(0.4, 1.0, E)
    pose = np.zeros((num_frames, J, 3))
    pose[:, 0, 0] = 0.15 * np.sin(2 * np.pi * 0.7 * t[:, 0])  # nod
    pose[:, 0, 1] = 0.35 * np.sin(2 * np.pi * 0.5 * t[:, 0] + 1)  # turn
    pose[:, 0, 2] = 0.05 * np.sin(2 * np.pi * 1.1 * t[:, 0])
    pose[:, 2, 0] = 0.15 * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t[:, 0]))  # jaw opens
    transl = np.stack([0.02 * np.sin(2 * np.pi * 0.4 * t[:, 0]), 0.01 * np.cos(2 * np.pi * 0.6 * t[:, 0]), 0.03 * t[:, 0]], 1)
    K = centred_K(focal, size, size)
    w2c = front_camera(distance)
    with torch.no_grad():
        out = model(f32(shape)[None].expand(num_frames, -1), f32(expr), f32(pose), f32(transl))
        uv, _ = project(out.landmarks, f32(K), f32(w2c))
    lm = uv.numpy() + g.standard_normal(uv.shape) * noise_px
    return dict(shape=shape, expression=expr, pose=pose, transl=transl, K=K, world_to_cam=w2c, landmarks=lm.astype(np.float32),
                vertices=out.vertices.numpy(), size=size)
