"""Files ``avatar3d track`` writes next to ``params.npz``: transforms.json, metrics.json, overlay.mp4."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data.atomic import atomic_path, write_text
from ..render.camera import cv_to_gl_c2w, raster_intrinsics
from .metrics import jitter, landmark_errors, region_nme

__all__ = ["write_transforms", "write_metrics", "write_overlay", "render_overlay_frames", "OVERLAY_FILE", "METRICS_FILE"]

OVERLAY_FILE = "overlay.mp4"
METRICS_FILE = "metrics.json"


def _axis_angle_to_matrix(r: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.asarray(r, np.float64).reshape(3, 1))[0]


def write_transforms(path: str | Path, K: np.ndarray, world_to_cam: np.ndarray, names: Sequence[str], width: int, height: int,
                     head_rotation: Optional[np.ndarray] = None, head_translation: Optional[np.ndarray] = None,
                     head_pivot: Optional[np.ndarray] = None, valid: Optional[np.ndarray] = None) -> Path:
    """Write a NeRF/instant-ngp/VHAP-style ``transforms.json``.

    Args:
        K: (N, 3, 3) OpenCV intrinsics (pixel centres at integers) of each crop.
        world_to_cam: (N, 4, 4) or (4, 4) OpenCV extrinsics.
        names: N frame names (``images/<name>.png``, ``masks/<name>.png``).
        head_rotation, head_translation: (N, 3) axis-angle / metres of the head (root joint at
            ``head_pivot`` (3,)); when given, each frame also gets ``transform_matrix_head``: the
            camera-to-world (OpenGL) pose relative to the head, i.e. as if the head stood still,
            which is what static-scene NeRF tools expect.
    The file stores ``transform_matrix`` as camera-to-world in the OpenGL convention (x right,
    y up, z backward), per-frame ``fl_x fl_y cx cy w h`` (cx, cy with pixel centres at +0.5, as
    NeRF tools assume) and a top-level copy of the first frame's intrinsics.
    """
    N = len(names)
    K = np.asarray(K, np.float64).reshape(N, 3, 3)
    Kr = raster_intrinsics(K)  # NeRF tools put pixel centres at +0.5
    w2c = np.asarray(world_to_cam, np.float64)
    if w2c.ndim == 2:
        w2c = np.repeat(w2c[None], N, 0)
    frames = []
    for i, nm in enumerate(names):
        c2w = cv_to_gl_c2w(w2c[i])
        fr = {
            "file_path": f"images/{nm}.png",
            "mask_path": f"masks/{nm}.png",
            "fg_mask_path": f"masks/{nm}.png",  # VHAP's key
            "timestep_index": i,
            "camera_index": 0,
            "transform_matrix": c2w.tolist(),
            "fl_x": float(K[i, 0, 0]), "fl_y": float(K[i, 1, 1]),
            "cx": float(Kr[i, 0, 2]), "cy": float(Kr[i, 1, 2]),
            "w": int(width), "h": int(height),
        }
        if valid is not None:
            fr["tracked"] = bool(valid[i])
        if head_rotation is not None and head_translation is not None:
            pivot = np.zeros(3) if head_pivot is None else np.asarray(head_pivot, np.float64)
            H = np.eye(4)  # head-to-world: x -> R (x - pivot) + pivot + t
            R = _axis_angle_to_matrix(head_rotation[i])
            H[:3, :3] = R
            H[:3, 3] = pivot - R @ pivot + np.asarray(head_translation[i], np.float64)
            fr["transform_matrix_head"] = cv_to_gl_c2w(w2c[i] @ H).tolist()
        frames.append(fr)
    f0 = frames[0]
    data = {
        "camera_model": "OPENCV",
        "convention": "transform_matrix: camera-to-world, OpenGL axes (x right, y up, z back); world = head-model frame "
                      "(metres, +Y up, face towards +Z); cx/cy: pixel centres at +0.5",
        "camera_angle_x": float(2 * np.arctan(width / (2 * K[0, 0, 0]))),
        "camera_angle_y": float(2 * np.arctan(height / (2 * K[0, 1, 1]))),
        **{k: f0[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")},
        "timestep_indices": list(range(N)),
        "camera_indices": [0],
        "frames": frames,
    }
    return write_text(path, json.dumps(data, indent=1))


def write_metrics(path: str | Path, fitted: np.ndarray, detected: np.ndarray, valid: np.ndarray, names: Sequence[str],
                  timings: dict, extra: Optional[dict] = None) -> dict:
    """Write ``metrics.json``: per-frame landmark error (px and / inter-ocular; per face region in ``nme_regions``:
    jaw, eyes, brows, nose, mouth), failures, jitter, timings.

    Args:
        fitted, detected: (N, 478, ≥2) landmarks in crop pixels. valid: (N,) detection succeeded.
    Returns:
        the summary dict written under ``"summary"``.
    """
    valid = np.asarray(valid, bool)
    px, nm = landmark_errors(fitted, detected)
    per = [{"frame": n, "valid": bool(v), "error_px": float(e), "nme": float(q)} for n, v, e, q in zip(names, valid, px, nm)]
    summary = {
        "frames": int(len(valid)),
        "failures": int((~valid).sum()),
        "failed_frames": [n for n, v in zip(names, valid) if not v],
        "nme_mean": float(nm[valid].mean()),
        "nme_median": float(np.median(nm[valid])),
        "nme_max": float(nm[valid].max()),
        "error_px_mean": float(px[valid].mean()),
        # Per region: the jaw line's points are silhouette points, much less certain than eyes or mouth.
        "nme_regions": region_nme(fitted, detected, valid),
        # Jitter: mean landmark acceleration (px / frame²) of the fitted mesh vs the raw detections.
        "jitter_fitted_px": jitter(np.asarray(fitted)[..., :2]),
        "jitter_detected_px": jitter(np.asarray(detected)[..., :2]),
        "timings_s": {k: round(float(v), 3) for k, v in timings.items()},
    }
    if extra:
        summary.update(extra)
    write_text(path, json.dumps({"summary": summary, "per_frame": per}, indent=1))
    return summary


def render_overlay_frames(images: np.ndarray, vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray,
                          detected: Optional[np.ndarray] = None, fitted: Optional[np.ndarray] = None, opacity: float = 0.5,
                          render_scale: float = 0.5) -> np.ndarray:
    """Draw the fitted mesh (shaded, semi-transparent) and landmarks over crops.

    Args:
        images: (B, H, W, 3) uint8 RGB crops. vertices: (B, V, 3) metres. faces: (F, 3).
        K: (B, 3, 3) OpenCV intrinsics (pixel centres at integers). world_to_cam: (4, 4) or (B, 4, 4).
        detected, fitted: (B, P, 2) landmarks in pixels, drawn green and red.
        render_scale: the shaded mesh is rasterized at this fraction of the crop size and
            upsampled (a 4x saving at 0.5; the landmarks are drawn at full resolution).
    Returns:
        (B, H, W, 3) uint8 RGB.
    """
    import cv2
    import torch

    from ..render.preview import render_mesh

    B, H, W = images.shape[:3]
    h, w = max(8, int(round(H * render_scale))), max(8, int(round(W * render_scale)))
    Kr = raster_intrinsics(torch.as_tensor(np.asarray(K), dtype=torch.float32))
    Kr[:, 0] *= w / W  # raster intrinsics scale by plain multiplication
    Kr[:, 1] *= h / H
    w2c = torch.as_tensor(np.asarray(world_to_cam), dtype=torch.float32)
    with torch.no_grad():
        img, alpha = render_mesh(torch.as_tensor(vertices, dtype=torch.float32), torch.as_tensor(faces), Kr, w2c, w, h,
                                 background=0.0, return_alpha=True)
    img, alpha = img.numpy(), alpha.numpy()
    if (h, w) != (H, W):
        img = np.stack([cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR) for x in img])
        alpha = np.stack([cv2.resize(x, (W, H), interpolation=cv2.INTER_LINEAR)[..., None] for x in alpha])
    shaded = img * 255
    a = alpha * opacity
    out = np.clip(images.astype(np.float32) * (1 - a) + shaded * a, 0, 255).astype(np.uint8)
    r = max(1, W // 400)
    for b in range(B):
        canvas = np.ascontiguousarray(out[b])
        for pts, col in ((detected, (0, 255, 0)), (fitted, (255, 40, 40))):
            if pts is None:
                continue
            for x, y in np.asarray(pts[b])[:, :2]:
                if 0 <= x < W and 0 <= y < H:
                    cv2.circle(canvas, (int(round(x)), int(round(y))), r, col, -1, lineType=cv2.LINE_AA)
        out[b] = canvas
    return out


def write_overlay(path: str | Path, frames_iter, fps: float, width: int, height: int, total: Optional[int] = None,
                  progress: bool = True) -> Path:
    """Encode RGB uint8 (H, W, 3) frames from ``frames_iter`` into an H.264 mp4 (yuv420p, plays everywhere)."""
    with atomic_path(path) as tmp:  # a unique temporary name: concurrent or crashed runs never share one
        _encode(tmp, frames_iter, fps, width, height, total, progress)
    return Path(path)


def _encode(path: Path, frames_iter, fps: float, width: int, height: int, total: Optional[int], progress: bool) -> None:
    import av
    from tqdm import tqdm

    c = av.open(str(path), "w")
    rate = max(1, int(round(fps)))
    s = c.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
    s.options = {"crf": "20", "preset": "veryfast"}
    with tqdm(total=total, desc="overlay", unit="frame", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for fr in frames_iter:
            fr = np.ascontiguousarray(fr[: s.height, : s.width])
            for pkt in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(pkt)
            bar.update(1)
    for pkt in s.encode():
        c.mux(pkt)
    c.close()
