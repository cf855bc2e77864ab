"""Rendered ground truth: a textured head model driven by known parameters, seen by a phone camera.

Used by the tests and the benchmark to check the whole tracker (MediaPipe detection included)
against the truth: :func:`render_sequence` writes PNG frames or an H.264 clip and returns the parameters and
vertices that made them. The frames imitate a selfie video rather than an easy lab shot:

* portrait frame (default 360x640, 9:16) with the intrinsics of a phone's 26 mm-equivalent lens
  (focal = 26/43.3 of the image diagonal), the head ~0.35 m away so the face spans about a
  quarter of the frame width at the eyes, as in the shared phone video d13;
* spherical-harmonics lighting (a warm key light from above to one side plus a cool fill) on the
  model's albedo texture, over a procedural room background, with mild sensor noise;
* a random identity (0.5 std), six ARKit expressions rising and falling one after another at
  0.8, and a slow head turn (+-14 degrees), nod (+-5 degrees) and drift (+-1 cm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .._tensor import f32, torch_threads
from ..models.base import HeadModel
from ..render.camera import raster_intrinsics
from ..render.camera_builders import centred_K, front_camera, phone_focal

__all__ = ["ANIMATED", "render_sequence", "render_frames", "track_ground_truth", "refine_ground_truth", "detector_response",
           "directional_sh", "encode_mp4", "Mp4Writer"]

#: Expressions animated in the synthetic performance (ARKit names; those a model has are used).
ANIMATED = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "mouthPucker", "eyeBlinkLeft")


def directional_sh(lights: Sequence[tuple[Sequence[float], Sequence[float]]], ambient: Sequence[float]) -> torch.Tensor:
    """(9, 3) SH irradiance of ``ambient`` RGB plus clamped-cosine lights ``[(direction, rgb), ...]``.

    Directions point towards the light in the camera frame (x right, y down, z forward). Fitted by
    least squares on a dense set of normals, in the basis of :func:`avatar3d.render.shading.sh_irradiance`.
    """
    from ..render.shading import sh_irradiance

    g = np.random.default_rng(0)
    n = g.standard_normal((4000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    target = np.tile(np.asarray(ambient, np.float64), (len(n), 1))
    for d, rgb in lights:
        d = np.asarray(d, np.float64) / np.linalg.norm(d)
        target += np.clip(n @ d, 0, None)[:, None] * np.asarray(rgb, np.float64)[None]
    basis = sh_irradiance(torch.as_tensor(n, dtype=torch.float64)[None].expand(9, -1, -1),
                          torch.eye(9, dtype=torch.float64)[:, :, None].expand(-1, -1, 3))[..., 0].T  # (M, 9)
    coef, *_ = np.linalg.lstsq(basis.numpy(), target, rcond=None)
    return torch.as_tensor(coef, dtype=torch.float32)


def _room_background(width: int, height: int, g: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float image: a lit wall with a vertical gradient, a door frame, a shelf and soft noise."""
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    wall = np.array([0.62, 0.58, 0.52]) * (1.05 - 0.35 * y) * (0.9 + 0.2 * x)
    img = np.broadcast_to(wall, (height, width, 3)).copy()
    x0 = int(width * g.uniform(0.62, 0.75))  # a door frame on one side
    img[:, x0 : x0 + max(2, width // 40)] = np.array([0.35, 0.27, 0.2])
    img[:, x0 + max(2, width // 40) :] *= 0.8
    yy = int(height * g.uniform(0.15, 0.25))  # a shelf with coloured boxes
    img[yy : yy + max(2, height // 80), : int(width * 0.4)] = np.array([0.3, 0.22, 0.15])
    for k in range(4):
        w = int(width * 0.07)
        xa = int(width * 0.03) + k * (w + 3)
        img[yy - int(w * g.uniform(0.8, 1.6)) : yy, xa : xa + w] = g.uniform(0.15, 0.8, 3)
    import cv2

    noise = cv2.GaussianBlur(g.standard_normal((height, width)).astype(np.float32), (0, 0), 12)[..., None]
    return np.clip(img * (1 + 0.06 * noise / (noise.std() + 1e-6)), 0, 1)


def render_sequence(model: HeadModel, out_dir: str | Path, num_frames: int = 16, width: int = 360, height: int = 640,
                    focal: Optional[float] = None, distance: float = 0.35, seed: int = 0, expressions: Sequence[str] = ANIMATED,
                    noise: float = 2.0, video: bool = False, fps: float = 30.0) -> dict:
    """Render ``num_frames`` frames ``out_dir/000000.png`` ... of a smooth synthetic performance (see module docstring).

    With ``video`` the frames go to ``out_dir/synthetic.mp4`` instead (H.264, yuv420p, CRF 18, like a
    phone's encoder output), so the tracker reads them exactly as it reads a phone clip: MediaPipe in
    its video (tracking) mode, and chroma subsampling and compression on the pixels.

    Args:
        width, height: frame size in pixels. focal: pixels (None: a phone's 26 mm-equivalent lens).
        distance: camera to head-model origin, metres. noise: sensor noise std in 8-bit levels.
    Returns:
        dict with ``shape`` (S,), ``expression`` (N, E), ``pose`` (N, J, 3), ``transl`` (N, 3),
        ``vertices`` (N, V, 3) metres, ``K`` (3, 3) (pixel centres at integers), ``world_to_cam`` (4, 4),
        ``animated`` (indices of the animated expressions), ``focal`` (pixels), ``path`` (the video, or the folder).
    """
    import cv2

    if "albedo" not in model.extras:
        raise ValueError(f"head model {model.name!r} has no albedo texture to render a synthetic video with")
    if num_frames < 1 or width < 64 or height < 64:
        raise ValueError(f"need num_frames >= 1 and a frame of at least 64x64 pixels, got {num_frames} frames of {width}x{height}")
    focal = phone_focal(width, height) if focal is None else float(focal)
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
    K = centred_K(focal, width, height)
    w2c = front_camera(distance)
    frames = []
    verts = None
    # One thread: the rasterizer's antialiasing sums in thread order, and MediaPipe turns a one-level
    # pixel difference into landmark changes of up to ~3 px, so the clip (the ground truth's input)
    # must not depend on the caller's thread count.
    with torch_threads(1):
        for i, frame, verts in render_frames(model, shape, expr, pose, transl, K, w2c, width, height, g, noise):
            if video:
                frames.append(frame)
            else:
                cv2.imwrite(str(out / f"{i:06d}.png"), frame[..., ::-1])
    if video:
        encode_mp4(np.stack(frames), out / "synthetic.mp4", fps)
    return dict(shape=shape, expression=expr, pose=pose, transl=transl, vertices=verts, K=K, world_to_cam=w2c,
                animated=animated, focal=focal, path=out / "synthetic.mp4" if video else out)


def render_frames(model: HeadModel, shape: np.ndarray, expr: np.ndarray, pose: np.ndarray, transl: np.ndarray, K: np.ndarray,
                   w2c: np.ndarray, width: int, height: int, g: np.random.Generator, noise: float, sh: Optional[torch.Tensor] = None):
    """Yield ``(i, frame, vertices)``: RGB uint8 (H, W, 3) frames and, with the last one, all (N, V, 3) vertices (else None).

    Lighting (unless ``sh``, (9, 3) camera-frame SH coefficients, is given), background and noise are
    the module's phone-clip look (see the module docstring).
    """
    from ..render.preview import render_mesh

    n = len(expr)
    # Key light from the upper left of the camera, fill from the right, both in the camera frame.
    if sh is None:
        sh = directional_sh([((-0.5, -0.6, -0.65), (0.75, 0.7, 0.62)), ((0.7, 0.1, -0.7), (0.18, 0.2, 0.24))], (0.35, 0.35, 0.37))
    bg = torch.as_tensor(_room_background(width, height, g), dtype=torch.float32)
    with torch.no_grad():
        verts = model(f32(shape)[None].expand(n, -1), f32(expr), f32(pose), f32(transl)).vertices
        Kr = raster_intrinsics(f32(K))
        tex = f32(model.extras["albedo"]) / 255.0
        for i in range(n):
            img, alpha = render_mesh(verts[i], model.faces, Kr, f32(w2c), width, height, uvs=model.uvs, uv_faces=model.uv_faces,
                                     texture_image=tex, sh=sh, background=0.0, return_alpha=True)
            rgb = img[0] + bg * (1 - alpha[0])  # img is premultiplied (antialiased over black)
            rgb = rgb.numpy() * 255 + g.normal(0, noise, rgb.shape)
            yield i, np.clip(rgb + 0.5, 0, 255).astype(np.uint8), (verts.numpy() if i == n - 1 else None)


def detector_response(model: HeadModel, expressions: Sequence[str] = ANIMATED, yaws: Sequence[float] = (0.0, 0.25, -0.25),
                      amplitude: float = 0.8, width: int = 360, height: int = 640, distance: float = 0.35, seed: int = 0) -> list[dict]:
    """How much of each expression's landmark motion MediaPipe reports, per head turn (a diagnostic).

    For each yaw (radians, +: the subject's left side turns away), renders the neutral head and the
    head with one expression at ``amplitude`` (same identity, light, background and noise), runs
    MediaPipe (still-image mode) on both and compares the detected landmark motion d with the true
    motion t of the embedded landmarks (points moving more than 30% of the largest motion):
    ``gain`` = <d, t> / <t, t> (1: all of it, 0: none) and ``cos`` (direction agreement).

    Returns:
        one dict per (expression, yaw): ``expression``, ``yaw``, ``effect_px`` (largest true motion),
        ``gain``, ``cos``; gain and cos are NaN where a detection failed.
    """
    from ..capture.landmarks import FaceLandmarker
    from ..render.camera import project

    g = np.random.default_rng(seed)
    shape = g.standard_normal(model.num_shape) * 0.5
    names = [n for n in expressions if n in model.expression_names]
    E = np.zeros((len(names) + 1, model.num_expression))
    for i, n in enumerate(names):
        E[i + 1, model.expression_names.index(n)] = amplitude
    focal = phone_focal(width, height)
    K = centred_K(focal, width, height)
    w2c = front_camera(distance)
    rows = []
    with FaceLandmarker(video=False) as fl:
        for yaw in yaws:
            pose = np.zeros((len(E), model.num_joints, 3))
            pose[:, 0, 1] = yaw
            transl = np.zeros((len(E), 3))
            dets = [fl(frame) for _, frame, _ in render_frames(model, shape, E, pose, transl, K, w2c, width, height,
                                                                np.random.default_rng(seed), 2.0)]
            with torch.no_grad():
                out = model(f32(shape)[None].expand(len(E), -1), f32(E), f32(pose), f32(transl))
                true = project(out.landmarks, f32(K), f32(w2c))[0].numpy()
            for i, n in enumerate(names, 1):
                t = true[i] - true[0]
                mag = np.linalg.norm(t, axis=-1)
                row = dict(expression=n, yaw=float(yaw), effect_px=float(mag.max()), gain=float("nan"), cos=float("nan"))
                if dets[0] is not None and dets[i] is not None:
                    w = mag > 0.3 * mag.max()
                    d = (dets[i][:, :2] - dets[0][:, :2])[w]
                    row["gain"] = float((d * t[w]).sum() / (t[w] ** 2).sum())
                    row["cos"] = float((d * t[w]).sum() / max(np.linalg.norm(d) * np.linalg.norm(t[w]), 1e-9))
                rows.append(row)
    return rows


def track_ground_truth(out_dir: str | Path, model: str = "builtin", num_frames: int = 24, overlay: bool = False, fit=None,
                       **render_kw) -> dict:
    """Render a synthetic phone clip of ``model``, run ``avatar3d track`` on it and compare with the truth.

    The clip goes through exactly what the command does (:func:`avatar3d.tracking.pipeline.track`:
    video decode, MediaPipe in video mode, crop, segmentation, landmark fitting with the focal
    length estimated). ``out_dir/render`` holds the clip, ``out_dir/track`` the tracking output.

    Returns:
        dict with ``truth`` (from :func:`render_sequence`), ``summary`` (the track's metrics summary),
        ``sequence`` (:class:`TrackedSequence`), ``report`` (:func:`compare_to_ground_truth`, plus
        ``focal`` / ``focal_true`` in source pixels), ``track_dir`` (the tracking output) and ``model``
        (the loaded head model).
    """
    from ..data.sequence import TrackedSequence
    from ..models import load_head_model
    from ..tracking.metrics import compare_to_ground_truth
    from ..tracking.pipeline import TrackOptions, track

    out = Path(out_dir)
    m = load_head_model(model)
    truth = render_sequence(m, out / "render", num_frames, video=True, **render_kw)
    summary = track(truth["path"], out / "track", TrackOptions(model=model, overlay=overlay, progress=False, resume=False, fit=fit))
    seq = TrackedSequence.load(out / "track")
    report = compare_to_ground_truth(m, seq.shape, seq.expression, seq.pose, seq.transl, truth)
    report.update(focal=float(summary["focal_px_source"]), focal_true=float(truth["focal"]))
    return dict(truth=truth, summary=summary, sequence=seq, report=report, track_dir=out / "track", model=m)


def refine_ground_truth(tracked: dict, config=None) -> dict:
    """Photometric refinement of a :func:`track_ground_truth` result, compared with the truth.

    Does what ``avatar3d track --photometric`` does after the landmark fit (crops and masks at the
    render size, intrinsics and detected landmarks rescaled to it) but with ``config``
    (:class:`~avatar3d.tracking.photometric.PhotometricConfig`, default: the command's), so a
    caller can e.g. switch the fallback off to measure what the refinement itself recovers.

    Returns:
        dict with ``result`` (:class:`~avatar3d.tracking.photometric.PhotometricResult`) and
        ``report`` (:func:`compare_to_ground_truth` of the refined parameters).
    """
    from ..capture.stage import CaptureResult
    from ..tracking.metrics import compare_to_ground_truth
    from ..tracking.photometric import PhotometricConfig, refine_photometric
    from ..tracking.pipeline import photometric_inputs

    cfg = config or PhotometricConfig()
    out, m = tracked["track_dir"], tracked["model"]
    seq, cap = tracked["sequence"], CaptureResult.load(out / "capture.npz")
    imgs, masks, K, lm = photometric_inputs(out, cap, seq, cfg.resolution)
    pr = refine_photometric(m, imgs, masks, lm, cap.valid, seq.shape, seq.expression, seq.pose, seq.transl, K, seq.world_to_cam[0], cfg)
    report = compare_to_ground_truth(m, seq.shape, pr.expression, pr.pose, pr.transl, tracked["truth"])
    return dict(result=pr, report=report)


def encode_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    """Write (N, H, W, 3) uint8 RGB frames as an H.264 mp4 (:class:`Mp4Writer`) from a fresh child process.

    libx264's output depends on the calling process's floating-point state: measured, after MediaPipe
    had been loaded in the same process the same frames encoded differently (up to 45 levels after
    decoding) from run to run. A child process starts from a clean state, so the clip is the same
    whoever asks for it.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "frames.npy"
        np.save(src, np.ascontiguousarray(frames, np.uint8))
        code = ("import sys, numpy as np; from pathlib import Path; from avatar3d.synthetic.video import Mp4Writer; "
                "f = np.load(sys.argv[1]); w = Mp4Writer(Path(sys.argv[2]), f.shape[2], f.shape[1], float(sys.argv[3])); "
                "[w.write(x) for x in f]; w.close()")
        r = subprocess.run([sys.executable, "-c", code, str(src), str(path), repr(float(fps))], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"encoding {path} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


class Mp4Writer:
    """H.264 mp4 writer (PyAV) for RGB uint8 frames; width and height must be even (yuv420p)."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        from fractions import Fraction

        import av

        if width % 2 or height % 2:
            raise ValueError(f"an mp4 (yuv420p) needs even frame sizes, got {width}x{height}")
        self.c = av.open(str(path), "w")
        self.s = self.c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        self.s.width, self.s.height, self.s.pix_fmt = width, height, "yuv420p"
        # One encoder thread and explicit timestamps: fewer ways for the bitstream to vary (encode_mp4 runs this
        # in a child process, which is what made the clip reproducible).
        self.s.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        self.s.codec_context.time_base = 1 / Fraction(fps).limit_denominator(1000)
        self.n = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = self.n, self.s.codec_context.time_base
        self.n += 1
        for p in self.s.encode(frame):
            self.c.mux(p)

    def close(self) -> None:
        for p in self.s.encode():
            self.c.mux(p)
        self.c.close()
