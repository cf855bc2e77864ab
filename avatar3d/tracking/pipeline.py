"""``avatar3d track``: capture -> landmark fitting -> outputs, with progress bars and resumable stages.

Stages and their checkpoints in the output directory ``DIR``:

1. capture (``images/``, ``masks/``, ``capture.npz``): decode, crop, landmarks, masks;
2. landmark fitting (``params.npz`` via :class:`TrackedSequence`): identity, per-frame expression,
   pose, jaw, eyes, shared focal length;
   2b. with ``photometric``: :func:`~avatar3d.tracking.photometric.refine_photometric` rewrites
   ``params.npz`` (refined expression/pose/translation, SH ``lighting``) and writes ``albedo.png``;
3. outputs: ``transforms.json``, ``metrics.json``, ``overlay.mp4``.

A stage whose checkpoint exists and matches (same source, model and frame count) is skipped when
``resume`` is on, so an interrupted run picks up where it stopped.

The output directory is a :class:`~avatar3d.data.rundir.RunDirectory`: locked for the run (a second
``track`` into it stops with one sentence), and each stage records its files in ``manifest.json`` and
removes those of its previous run when it is redone (stages ``capture``, ``fit``, ``photometric``,
``outputs``), so no file of an earlier run is left beside the new one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from .._tensor import f32
from ..capture.stage import CaptureResult, run_capture
from ..data.atomic import atomic_path, write_text
from ..data.frames import TrackedFrames
from ..data.rundir import RunDirectory
from ..data.sequence import PARAMS_FILE, TRANSFORMS_FILE, TrackedSequence
from ..render.camera import scale_pixels
from .expression_metrics import expression_report
from .fitting import CropCameras, FitConfig, FitResult, default_config, fit_landmarks, sparse_expressions
from .focal import assumed_focal
from .metrics import expression_saturation
from .outputs import METRICS_FILE, OVERLAY_FILE, render_overlay_frames, write_metrics, write_overlay, write_transforms
from .plausibility import check_plausibility, detector_score

__all__ = ["TrackOptions", "track"]

#: the landmark fit's settings (:class:`FitConfig` as JSON): a resumed run reuses ``params.npz`` only if they match
FIT_SETTINGS_FILE = "fit_settings.json"
#: (N, 478, 2) landmarks of the fitted model in crop pixels
FITTED_FILE = "fitted_landmarks.npy"
ALBEDO_FILE = "albedo.png"


@dataclass
class TrackOptions:
    """Options of :func:`track` (the CLI flags)."""

    model: str = "builtin"
    fps: Optional[float] = None
    max_frames: Optional[int] = None
    resolution: int = 512
    overlay: bool = True
    photometric: bool = False  #: run photometric refinement after landmark fitting (slow on CPU)
    resume: bool = True
    progress: bool = True
    fit: Optional[FitConfig] = None  #: None: the model's :func:`~avatar3d.tracking.fitting.default_config`
    #: fewer, ARKit-like expression coefficients (:func:`~avatar3d.tracking.fitting.sparse_expressions`)
    sparse_expressions: bool = False
    #: the camera's focal length as a 35 mm-equivalent in mm (a phone's main camera: ~26), when known; None: estimated
    focal_35mm: Optional[float] = None
    #: check that the face is one the model can describe (:mod:`~avatar3d.tracking.plausibility`; runs the face
    #: detector on a few crops)
    plausibility: bool = True


def _log(msg: str, progress: bool) -> None:
    if progress:
        from tqdm import tqdm

        tqdm.write(msg)


def focal_gauge(model):
    """The head model whose landmark residual estimates the focal length for ``model`` (None: ``model`` itself).

    MediaPipe reports a flatter face than a real head. A model that ships MediaPipe's measured view of itself
    (:mod:`avatar3d.calibration.detector_response`: the built-in head) reads the detections' perspective with
    that flatness modelled; one without (ICT, FLAME) explains it as a longer lens (ICT's own residual put the
    focal 1.2-1.5x longer than the built-in head's on d0, d12, d13). The focal is the camera's, not the model's,
    so such models are given the built-in head's estimate: both models track a video with the same camera.
    (How well landmarks determine it at all: :mod:`avatar3d.tracking.focal`.)
    """
    from ..models import load_head_model
    from .landmark_model import landmark_head

    if landmark_head(model).uses_response:
        return None
    try:
        gauge = load_head_model("builtin")
    except Exception:  # no built-in landmark embedding: the model's own residual is all there is
        return None
    return gauge if gauge.has_landmarks and landmark_head(gauge).uses_response else None


def _source_focal(opts: TrackOptions, cap: CaptureResult) -> Optional[float]:
    """Source-pixel focal of ``--focal-35mm`` (None when not given): 35 mm-equivalent over the 43.27 mm film diagonal."""
    if opts.focal_35mm is None:
        return None
    w, h = cap.source_size
    return float(opts.focal_35mm) / 43.267 * float(np.hypot(w, h))


def _fit_stage(model, cap: CaptureResult, opts: TrackOptions, run: RunDirectory) -> tuple[TrackedSequence, FitResult | None, float]:
    """Fit, or reuse ``params.npz`` when resuming a run with the same model and frames."""
    out = run.path
    p = out / PARAMS_FILE
    cfg = opts.fit or default_config(model, cap.fps)
    if opts.sparse_expressions:
        cfg = sparse_expressions(cfg)
    given_focal = _source_focal(opts, cap)
    if given_focal is not None:  # the user knows the lens: keep it
        cfg = replace(cfg, optimize_focal=False)
    settings = json.dumps({**asdict(cfg), **({"focal_35mm": opts.focal_35mm} if given_focal is not None else {})}, sort_keys=True)
    if opts.resume and p.is_file():
        try:
            seq = TrackedSequence.load(out)
            same_fit = (out / FIT_SETTINGS_FILE).read_text() == settings  # e.g. not when --sparse-expressions changed
            if seq.model == opts.model and seq.num_frames == cap.num_frames and seq.frame_names == cap.names and same_fit:
                return seq, None, 0.0
        except Exception:
            pass
    run.drop_stage("photometric", files=[ALBEDO_FILE])  # its albedo and refinement belong to the fit being replaced
    run.replace_stage("fit", settings=asdict(cfg), files=[PARAMS_FILE, FITTED_FILE, FIT_SETTINGS_FILE])
    t0 = time.perf_counter()
    cams = CropCameras(cap.boxes, cap.source_size, cap.resolution)
    res = fit_landmarks(model, cap.landmarks, cap.valid, cams, cfg, init_focal=given_focal, progress=opts.progress,
                        focal_model=focal_gauge(model))
    if res.focal_estimate is None:
        res.focal_estimate = assumed_focal(max(cap.source_size), f"given: a {opts.focal_35mm:g} mm-equivalent lens", res.focal)
    dt = time.perf_counter() - t0
    seq = TrackedSequence(
        model=opts.model, model_version=str(model.version), fps=cap.fps, shape=res.shape, expression=res.expression,
        pose=res.pose, transl=res.transl, K=res.K, world_to_cam=np.repeat(res.world_to_cam[None], cap.num_frames, 0),
        width=cap.resolution, height=cap.resolution, joint_names=list(model.joint_names),
        expression_names=list(model.expression_names), valid=cap.valid, frame_names=list(cap.names),
    )
    seq.save(out)
    with atomic_path(out / FITTED_FILE) as tmp:
        np.save(tmp, res.landmarks)
    write_text(out / FIT_SETTINGS_FILE, settings)
    run.record_stage("fit", [PARAMS_FILE, FITTED_FILE, FIT_SETTINGS_FILE])
    return seq, res, dt


def _posed_vertices(model, seq: TrackedSequence, idx: np.ndarray):
    import torch

    with torch.no_grad():
        out = model(f32(seq.shape)[None].expand(len(idx), -1), f32(seq.expression[idx]), f32(seq.pose[idx]), f32(seq.transl[idx]))
    return out


def _overlay_frames(model, seq: TrackedSequence, cap: CaptureResult, fitted: np.ndarray, out: Path, batch: int = 8):
    import cv2

    faces = model.faces.numpy()
    for s in range(0, seq.num_frames, batch):
        idx = np.arange(s, min(seq.num_frames, s + batch))
        imgs = np.stack([cv2.imread(str(out / "images" / f"{cap.names[i]}.png"))[..., ::-1] for i in idx])
        verts = _posed_vertices(model, seq, idx).vertices.numpy()
        frames = render_overlay_frames(imgs, verts, faces, seq.K[idx], seq.world_to_cam[0], cap.landmarks[idx], fitted[idx])
        for k, i in enumerate(idx):
            if not cap.valid[i]:  # make interpolated frames obvious
                cv2.putText(frames[k], "no detection (interpolated)", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 60, 60), 2)
            yield frames[k]


def photometric_inputs(out: Path, cap: CaptureResult, seq: TrackedSequence, resolution: int):
    """Crops, masks, intrinsics and detected landmarks of a tracking directory at ``resolution``.

    ``seq`` is the directory's fitted sequence (already in memory: not read again). Returns images
    (N, r, r, 3) uint8 RGB, masks (N, r, r) uint8, K (N, 3, 3) scaled to the resolution, landmarks
    (N, 478, 2) px. Reads through :class:`TrackedFrames`, one frame at a time at the render
    resolution, so memory stays small for long videos.
    """
    frames = TrackedFrames(out, resolution=int(resolution), sequence=seq)
    imgs = np.stack([frames.image(i) for i in range(cap.num_frames)])
    masks = np.stack([frames.mask(i) for i in range(cap.num_frames)])
    return imgs, masks, frames.K, scale_pixels(cap.landmarks[..., :2], frames.scale)


def _photometric_stage(model, seq: TrackedSequence, cap: CaptureResult, run: RunDirectory, progress: bool):
    """Refine ``seq`` photometrically; saves params (with lighting) and ``albedo.png``."""
    import cv2

    from .fitting import project_landmarks
    from .photometric import PhotometricConfig, refine_photometric

    out = run.path
    cfg = PhotometricConfig()
    run.replace_stage("photometric", settings=asdict(cfg), files=[ALBEDO_FILE])
    imgs, masks, K, lm = photometric_inputs(out, cap, seq, cfg.resolution)
    pr = refine_photometric(model, imgs, masks, lm, cap.valid, seq.shape, seq.expression, seq.pose, seq.transl, K,
                            seq.world_to_cam[0], cfg, progress=progress)
    seq.expression, seq.pose, seq.transl = pr.expression.astype(np.float32), pr.pose.astype(np.float32), pr.transl.astype(np.float32)
    seq.lighting = pr.sh.astype(np.float32)
    seq.save(out)
    with atomic_path(out / ALBEDO_FILE) as tmp:
        cv2.imwrite(str(tmp), (pr.albedo[..., ::-1] * 255).astype(np.uint8))
    fitted = project_landmarks(model, seq.shape, seq.expression, seq.pose, seq.transl, seq.K, seq.world_to_cam[0])
    with atomic_path(out / FITTED_FILE) as tmp:
        np.save(tmp, fitted)
    run.record_stage("photometric", [PARAMS_FILE, ALBEDO_FILE, FITTED_FILE])
    # Grey levels (0..255) at the refinement's render size; the landmark-only number is the fair
    # baseline (same appearance optimisation with geometry frozen at the landmark fit).
    return seq, fitted, {"photometric_error_landmark_only": pr.error_landmark_only, "photometric_error_refined": pr.error_refined,
                         "photometric_frames_improved": float(np.mean(pr.errors_refined < pr.errors_landmark_only)),
                         "photometric_fallback": pr.fallback,
                         "photometric_cpu_s_per_frame": pr.timings["cpu_total"] / seq.num_frames,
                         "photometric_resolution": cfg.resolution}


def _focal_info(res: FitResult | None, out: Path, focal: float, cap: CaptureResult) -> dict:
    """metrics.json's "focal": how this fit found its focal, or, when the fit was resumed, what the last run said."""
    if res is not None and res.focal_estimate is not None:
        return res.focal_estimate.to_json()
    try:
        old = json.loads((out / METRICS_FILE).read_text())["summary"]["focal"]
        if abs(old["px"] - focal) < 1e-3 * focal:
            return old
    except (OSError, KeyError, ValueError, TypeError):
        pass
    return assumed_focal(max(cap.source_size), "resumed from an earlier fit whose focal search was not recorded", focal).to_json()


def _plausibility(model, seq: TrackedSequence, cap: CaptureResult, out: Path, fitted: np.ndarray):
    """:func:`~avatar3d.tracking.plausibility.check_plausibility` of the fit, with the detector's score on up to 5 crops."""
    import cv2

    from .metrics import nme

    idx = np.flatnonzero(cap.valid)
    idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), 5)).round().astype(int)] if len(idx) else idx
    crops = (cv2.imread(str(out / "images" / f"{cap.names[i]}.png"))[..., ::-1] for i in idx)
    return check_plausibility(model, seq.shape, nme(fitted, cap.landmarks, cap.valid), detector_score(crops))


def track(source: str | Path, out_dir: str | Path, options: Optional[TrackOptions] = None) -> dict:
    """Track a head in a video / image folder / image and write the tracking directory.

    Returns:
        the metrics summary (also in ``out_dir/metrics.json``).
    Raises:
        BadInputError / MissingFileError: unusable input or model files (one readable sentence).
        RunDirectoryBusyError: another run is writing into ``out_dir``.
    """
    with RunDirectory(out_dir) as run:
        return _track(source, run, options or TrackOptions())


def _track(source: str | Path, run: RunDirectory, opts: TrackOptions) -> dict:
    """:func:`track` inside the locked run directory ``run``."""
    import torch

    from ..models import load_head_model

    out = run.path
    timings: dict = {}
    t0 = time.perf_counter()
    model = load_head_model(opts.model)
    if not model.has_landmarks:
        from ..errors import BadInputError

        raise BadInputError(f"head model {opts.model!r} has no MediaPipe landmark embedding, so it cannot be fitted to video")
    timings["load_model"] = time.perf_counter() - t0

    _log(f"[1/3] capture: {source}", opts.progress)
    t0 = time.perf_counter()
    cap = run_capture(source, out, resolution=opts.resolution, fps=opts.fps, max_frames=opts.max_frames, progress=opts.progress,
                      resume=opts.resume, run=run)
    timings["capture"] = time.perf_counter() - t0
    for k, v in cap.timings.items():
        timings[f"capture_{k}"] = v
    if (~cap.valid).any():
        _log(f"      no face in {(~cap.valid).sum()} of {cap.num_frames} frames: flagged and interpolated", opts.progress)

    _log(f"[2/3] landmark fitting ({model.name}, {cap.num_frames} frames)", opts.progress)
    torch_threads = torch.get_num_threads()
    seq, res, dt = _fit_stage(model, cap, opts, run)
    timings["landmark_fit"] = dt
    if res is None and (out / METRICS_FILE).is_file():  # resumed: keep the fit time of the run that did it
        try:
            timings["landmark_fit"] = json.loads((out / METRICS_FILE).read_text())["summary"]["timings_s"]["landmark_fit"]
        except (KeyError, ValueError):
            pass
    fitted = res.landmarks if res is not None else np.load(out / FITTED_FILE)

    photo_extra: dict = {}
    # Also when resuming a landmark-only run (params without lighting); refined params are reused.
    if opts.photometric and (res is not None or seq.lighting is None):
        _log("[2b] photometric refinement (albedo, SH lighting, per-frame expression/pose)", opts.progress)
        t0 = time.perf_counter()
        seq, fitted, photo_extra = _photometric_stage(model, seq, cap, run, opts.progress)
        timings["photometric"] = time.perf_counter() - t0
        photo_extra["photometric_s_per_frame"] = timings["photometric"] / cap.num_frames

    _log("[3/3] outputs: transforms.json, metrics.json" + (", overlay.mp4" if opts.overlay else ""), opts.progress)
    run.replace_stage("outputs", settings={"overlay": opts.overlay}, files=[TRANSFORMS_FILE, METRICS_FILE, OVERLAY_FILE])
    root = model.j_regressor[0] @ (model.v_template + torch.einsum("vcs,s->vc", model.shapedirs, torch.as_tensor(seq.shape)))
    write_transforms(out / TRANSFORMS_FILE, seq.K, seq.world_to_cam, cap.names, cap.resolution, cap.resolution,
                     head_rotation=seq.pose[:, 0], head_translation=seq.transl, head_pivot=root.detach().numpy(), valid=cap.valid)
    if opts.overlay:
        t0 = time.perf_counter()
        write_overlay(out / OVERLAY_FILE, _overlay_frames(model, seq, cap, fitted, out), cap.fps, cap.resolution, cap.resolution,
                      total=cap.num_frames, progress=opts.progress)
        timings["overlay"] = time.perf_counter() - t0
    focal = float(seq.K[0, 0, 0] * cap.boxes[0, 2] / cap.resolution)
    focal_info = _focal_info(res, out, focal, cap)
    extra = {
        "model": opts.model, "model_version": str(model.version), "source": str(source), "fps": cap.fps,
        "resolution": cap.resolution, "focal_px_source": focal, "focal": focal_info, "source_size": list(cap.source_size),
        "landmark_fit_fps": cap.num_frames / timings["landmark_fit"] if timings["landmark_fit"] > 0 else None, "torch_threads": torch_threads,
        "max_faces_seen": int(cap.num_faces.max()), **photo_extra,
        **expression_saturation(seq.expression, model.expression_names, float(model.expression_range[1])),
        "expression_saturation": expression_report(seq.expression, model.expression_names, model.expression_range, cap.landmarks, cap.valid),
    }
    warnings = []
    if cap.ended_early:  # a cut-off video: say so (the CLI prints it), with the frames expected and found
        extra["source_frames_expected"] = cap.frames_expected
        warnings.append(cap.shortfall_message())
    if focal_info.get("at_bound"):
        warnings.append(f"focal length: {focal_info['why']}")
    if opts.plausibility:
        plaus = _plausibility(model, seq, cap, out, fitted)
        extra["plausibility"] = plaus.to_json()
        warnings += plaus.warnings
    if warnings:
        extra["warnings"] = warnings
    summary = write_metrics(out / METRICS_FILE, fitted, cap.landmarks, cap.valid, cap.names, timings, extra)
    run.record_stage("outputs", [TRANSFORMS_FILE, METRICS_FILE, *([OVERLAY_FILE] if opts.overlay else [])])
    return summary
