"""Rendered ground truth: a textured head model driven by known parameters, seen by a known camera.

Used by the tests and the benchmark to check the whole tracker (MediaPipe detection included)
against the truth: :func:`render_sequence` writes PNG frames of the head (project rasterizer,
albedo texture, Lambert lighting) and returns the parameters and vertices that made them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..models.base import HeadModel
from .camera import front_camera

__all__ = ["ANIMATED", "render_sequence"]

#: Expressions animated in the synthetic performance (ARKit names; those a model has are used).
ANIMATED = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "mouthPucker", "eyeBlinkLeft")


def render_sequence(model: HeadModel, out_dir: str | Path, num_frames: int = 16, size: int = 512, focal: float = 1500.0,
                    distance: float = 0.65, seed: int = 0, expressions: Sequence[str] = ANIMATED) -> dict:
    """Render ``num_frames`` frames ``out_dir/000000.png`` ... of a smooth synthetic performance.

    Returns a dict with ``shape`` (S,), ``expression`` (N, E), ``pose`` (N, J, 3), ``transl`` (N, 3),
    ``vertices`` (N, V, 3) metres, ``K`` (3, 3) (pixel centres at integers), ``world_to_cam`` (4, 4),
    ``animated`` (indices of the animated expressions).
    """
    import cv2

    from ..render.preview import render_mesh

    if "albedo" not in model.extras:
        raise ValueError(f"head model {model.name!r} has no albedo texture to render a synthetic video with")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    t = np.linspace(0, 1, num_frames)
    S, E, J = model.num_shape, model.num_expression, model.num_joints
    shape = g.standard_normal(S) * 0.5
    expr = np.zeros((num_frames, E))
    animated = [model.expression_names.index(n) for n in expressions if n in model.expression_names]
    for k, e in enumerate(animated):
        # Staggered smooth bumps: each expression rises and falls at its own time.
        c = (k + 0.5) / len(animated)
        expr[:, e] = 0.8 * np.exp(-0.5 * ((t - c) / 0.12) ** 2)
    pose = np.zeros((num_frames, J, 3))
    pose[:, 0, 1] = 0.25 * np.sin(2 * np.pi * t)  # turn
    pose[:, 0, 0] = 0.08 * np.sin(2 * np.pi * 1.5 * t)  # nod
    transl = np.stack([0.01 * np.sin(2 * np.pi * t), 0.005 * np.cos(2 * np.pi * t), np.zeros_like(t)], 1)
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    w2c = front_camera(distance)
    f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        verts = model(f32(shape)[None].expand(num_frames, -1), f32(expr), f32(pose), f32(transl)).vertices
        Kr = f32(K).clone()
        Kr[:2, 2] += 0.5  # the renderer's pixel centres are at +0.5
        tex = f32(model.extras["albedo"]) / 255.0
        for i in range(num_frames):
            img = render_mesh(verts[i], model.faces, Kr, f32(w2c), size, size, uvs=model.uvs, uv_faces=model.uv_faces,
                              texture_image=tex, background=(0.35, 0.45, 0.4), ambient=0.45)
            rgb = (img[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(str(out / f"{i:06d}.png"), rgb[..., ::-1])
    return dict(shape=shape, expression=expr, pose=pose, transl=transl, vertices=verts.numpy(), K=K, world_to_cam=w2c,
                animated=animated)
