"""Batched landmark fitting: one identity and focal length, per-frame expression and pose.

All N frames are optimised together (Adam on the whole batch) with

* a robust (pseudo-Huber) 2D landmark loss, normalised by the inter-ocular distance so it is
  independent of the crop size, with zero weight on frames where detection failed (their values
  come from the temporal terms, i.e. they are interpolated);
* Gaussian priors on identity (in units of the model's ``shape_std``), expression, jaw and eyes,
  an optional L1 (sparsity) prior on expression, strengths per head model (:data:`MODEL_PRIORS`);
* temporal smoothness (squared second differences) of pose, translation and expression;
* the focal length is estimated, not assumed: short non-rigid fits of a few frames at log-spaced
  candidate focals (batched into one optimisation) pick the focal with the lowest landmark residual
  (perspective effects constrain it); the bracketed search is :mod:`avatar3d.tracking.focal`.

Landmarks are computed by :class:`LandmarkHead` (only the vertices under the landmarks), so a
30k-vertex model costs about as much as a toy one. The landmark term (skinning, projection,
pseudo-Huber) has a hand-written backward pass
(:func:`~avatar3d.tracking.landmark_model.projected_landmark_loss`, checked against autograd by the
tests); the priors and temporal terms go through autograd. Joint rotations and the translation are
computed once per iteration and shared by all terms.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._allocator import keep_freed_memory
from .._tensor import f32, torch_threads
from ..geometry import axis_angle_to_matrix_np, matrix_to_axis_angle_np
from ..models.base import HeadModel
from ..models.lbs import batch_rodrigues
from ..render.camera import crop_intrinsics, project
from ..render.camera_builders import R_MODEL_TO_CV, centred_K, front_camera
from ..train import RunLog, Stage, run_stage
from .fit_priors import PriorWeights, Unknowns, reference_regularizer, regularizer
from .focal import FocalEstimate, assumed_focal, search_focal
from .landmark_model import LandmarkHead, landmark_head, project_points, projected_landmark_loss

__all__ = ["FitConfig", "FitResult", "CropCameras", "fit_landmarks", "default_config", "sparse_expressions", "project_landmarks",
           "MODEL_PRIORS", "LandmarkFitProblem", "fit_stages"]


@dataclass
class FitConfig:
    """Weights and schedules of :func:`fit_landmarks` (defaults tuned on the shared videos)."""

    iters_rigid: int = 50
    iters_full: int = 220
    huber_delta: float = 0.01  #: pseudo-Huber transition, in inter-ocular distances
    w_shape: float = 1e-5  #: identity prior weight (per unit-std coefficient, squared)
    w_expr: float = 1e-5
    w_jaw: float = 1e-3
    w_eyes: float = 1e-3
    w_smooth: float = 0.5  #: second-difference weight, in (inter-ocular units)² of the landmark loss
    w_smooth_expr: float = 0.01
    #: The smoothness of the ``free_expressions`` (blinks) is robust (pseudo-Huber on the second differences,
    #: quadratic below this, coefficient units): it damps detection noise as before, but no longer flattens
    #: a blink, which lasts one or two frames at 10 fps (a squared penalty on a one-frame blink cost ~15x
    #: what closing the eye gained on the landmarks, so real blinks were fitted half open).
    smooth_expr_delta: float = 0.01
    w_focal: float = 1e-3  #: prior on log(focal / initial focal)
    optimize_focal: bool = True
    focal_search: int = 5  #: focal candidates tried by short fits on a frame subset (0: PnP guess only)
    focal_search_frames: int = 8
    lr: float = 0.01
    eye_weight: float = 2.0  #: extra weight on eye, iris and lip landmarks (they carry expression)
    #: L1 (sparsity) prior on expression coefficients: with 50+ overlapping blendshapes a little
    #: detection noise is otherwise spread over many of them (mouthDimple, mouthStretch, ...).
    w_expr_l1: float = 0.0
    #: "Every expression returns to rest at some point of the video": a quadratic prior on each
    #: coefficient's soft minimum over the frames (:func:`~avatar3d.tracking.fit_priors.soft_min_frames`). An expression held through
    #: the whole video is the person's resting face, which the identity should explain; without this the
    #: identity prior (paid once) lost to the per-frame expression priors (paid as a mean), and a neutral
    #: talking video was fitted with browDown and eyeBlink near their bound in most frames.
    w_expr_rest: float = 0.0
    expr_rest_tau: float = 0.05  #: softness of that minimum (coefficient units)
    expr_rest_quantile: float = 0.0  #: 0: the soft minimum; else this quantile over the frames
    #: expressions whose magnitude priors (w_expr, w_expr_l1) are scaled by ``free_expression_scale``: a full
    #: blink is an everyday event that must reach its bound, not a grimace the priors should argue against
    free_expressions: tuple = ("eyeBlinkLeft", "eyeBlinkRight", "eyeBlink_L", "eyeBlink_R")
    free_expression_scale: float = 0.1
    #: compare detections with the model's landmarks as MediaPipe reports them (its measured view of
    #: the mean face, identity and blendshapes, :mod:`avatar3d.calibration.detector_response`) where the
    #: model ships that table, rather than with the mesh's own landmark motion
    detector_response: bool = True
    #: ... including the table's non-linear correction (:mod:`avatar3d.calibration.detector_correction`) where it ships
    detector_correction: bool = True
    seed: int = 0
    #: Landmark term through :func:`~avatar3d.tracking.landmark_model.projected_landmark_loss` (analytic
    #: backward, ~3x faster per iteration) and priors through :func:`~avatar3d.tracking.fit_priors.regularizer`
    #: (one node); False: the same expressions through autograd (the reference that tests and
    #: ``benchmarks/bench_tracking.py`` compare it with).
    fused: bool = True


#: Per-model prior strengths (FitConfig fields), keyed by ``HeadModel.name``; see :func:`default_config`.
MODEL_PRIORS: dict[str, dict] = {
    # The built-in head's procedural identity space (41 modes) and blendshapes describe MediaPipe's
    # view of it loosely: with the generic priors the identity soaks up the detector's systematic
    # disagreement with the embedding and detection noise spreads over many similar blendshapes.
    # With the response table and its non-linear correction (calibration/detector_correction.py) the
    # landmark points follow MediaPipe closely enough for weaker priors, measured on the rendered
    # ground truth (ten identities) and the six real videos together: w_shape 1e-4 (was 3e-4),
    # w_smooth_expr 0.03 (was 0.3, which made the fitted expressions lag and blur into each other:
    # mouthSmileLeft peaked 3 frames late) and w_expr_l1 3e-5 (was 3e-4, which traded weak smiles
    # for cheaper shapes: all six rendered expressions >= 0.9 on 4 -> 7 of ten identities). Real-video
    # NME dropped on every video (d13 1.88 -> 1.13%), jitter stays below the detections', but the
    # coefficients are denser (24-26 shapes above 0.1 per frame, ICT's level; was 10-11): for sparse
    # ARKit curves to retarget: sparse_expressions() below (`--sparse-expressions`). ICT keeps the
    # generic ones: 1e-3 priors raise its d12 NME from 2.46% to 3.30% (target 3%).
    # Issue #17: those priors let coefficients run to their bounds (a neutral talking video played back as
    # a grimace: browDown / eyeBlink / mouthUpperUp at 1.0 in 30-60% of frames). With blinks that can close
    # (the response table measured at full closure), brows that can rise and lips that can close (the
    # correction anchored at the neutral face), the landmark error dropped on every shared video, and
    # that margin buys 30x stronger magnitude priors (w_expr 3e-4, w_expr_l1 1e-4; blinks keep a tenth:
    # FitConfig.free_expressions) and the resting-face prior (w_expr_rest). Measured with
    # benchmarks/bench_tracking_expressions.py (10 fps, 90 frames, with default_config's frame-rate scaling):
    # the most-pinned coefficient at its bound in 5.6-26% of frames on d3/d6/d12/d13/d14 (was 30-59%), 48% on
    # d0 (unchanged); NME below the earlier fit's on all six (d6 2.52 -> 2.18%, d12 3.24 -> 2.86%). Without
    # w_expr_rest NME is ~0.05 lower and neutral frames fit less neutral; robust smoothing of every expression
    # (not only blinks) cost the rendered ground truth's mouthSmileLeft (r 0.90 -> 0.75).
    "builtin": dict(w_shape=1e-4, w_expr=3e-4, w_expr_l1=1e-4, w_smooth_expr=0.03, w_expr_rest=1e-2),
    # ICT: its blinks' smoothness at 0.1 (as before below 0.1 per frame², still lets blinks through).
    "ict": dict(smooth_expr_delta=0.1),
}


#: frame rate the expression smoothness weights were tuned at (the rendered ground truth's 30 fps)
SMOOTH_FPS = 30.0


def default_config(model: HeadModel, fps: Optional[float] = None) -> FitConfig:
    """The :class:`FitConfig` used when none is given: the defaults plus ``MODEL_PRIORS[model.name]``.

    With ``fps``, the expression smoothness is scaled by ``(fps / SMOOTH_FPS)²``: the same motion has
    (30 / fps)² larger second differences per frame at a lower frame rate, and at 10 fps the weight tuned
    at 30 fps flattened a three-frame brow raise to a quarter of its height (and every blink)."""
    cfg = FitConfig(**MODEL_PRIORS.get(model.name, {}))
    if fps is not None and fps > 0:
        cfg.w_smooth_expr *= min(1.0, (float(fps) / SMOOTH_FPS) ** 2)
    return cfg


#: L1 expression prior of :func:`sparse_expressions`: measured on d3 / d6 / d13 with the built-in head,
#: 6-8 coefficients above 0.1 per frame instead of 24-26, NME 1.45-2.57% instead of 1.13-2.17%.
SPARSE_EXPRESSION_L1 = 1e-3


def sparse_expressions(cfg: FitConfig) -> FitConfig:
    """``cfg`` with a stronger sparsity prior on the expressions (``avatar3d track --sparse-expressions``):
    fewer, larger coefficients, the ARKit-like curves one retargets to another rig, for a slightly
    higher landmark error."""
    return replace(cfg, w_expr_l1=max(cfg.w_expr_l1, SPARSE_EXPRESSION_L1))


@dataclass
class FitResult:
    """Fitted parameters (NumPy, float32) and diagnostics."""

    shape: np.ndarray  #: (S,)
    expression: np.ndarray  #: (N, E)
    pose: np.ndarray  #: (N, J, 3) axis-angle; [:, 0] head rotation about the root joint
    transl: np.ndarray  #: (N, 3) metres
    focal: float  #: source-image focal length in pixels
    K: np.ndarray  #: (N, 3, 3) crop intrinsics
    world_to_cam: np.ndarray  #: (4, 4) fixed OpenCV extrinsics
    landmarks: np.ndarray  #: (N, 478, 2) fitted landmarks projected into the crop
    timings: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)
    data_loss: float = float("nan")  #: final robust landmark term (inter-ocular units)
    group_loss: Optional[np.ndarray] = None  #: per-group landmark term (batched focal search only)
    focal_estimate: Optional[FocalEstimate] = None  #: how the focal was found (None: given by the caller)


class CropCameras:
    """Per-frame crop intrinsics from one source camera (shared focal, principal point at the centre).

    Args:
        boxes: (N, 3) crops (x0, y0, size) in source pixels. source_size: (W, H). resolution: crop side.
    """

    def __init__(self, boxes: np.ndarray, source_size: tuple[int, int], resolution: int):
        b = np.asarray(boxes, np.float64)
        W, H = source_size
        self.scale = torch.as_tensor(resolution / b[:, 2], dtype=torch.float32)  # (N,) crop px per source px
        # Source principal point (image centre) mapped into each crop.
        pp = crop_intrinsics(centred_K(1.0, W, H), b, resolution)[:, :2, 2]
        self.pp = torch.as_tensor(pp, dtype=torch.float32)
        self.source_size = (int(W), int(H))
        self.default_focal = float(max(W, H))  # ~ a 50 mm-equivalent lens; only the starting point

    def subset(self, idx: np.ndarray) -> "CropCameras":
        """The cameras of frames ``idx`` only."""
        c = object.__new__(CropCameras)
        c.scale, c.pp = self.scale[idx], self.pp[idx]
        c.source_size, c.default_focal = self.source_size, self.default_focal
        return c

    def K(self, focal: Tensor | float) -> Tensor:
        """(N, 3, 3) crop intrinsics for a source focal length in pixels (differentiable)."""
        f = torch.as_tensor(focal, dtype=torch.float32) * self.scale
        K = torch.zeros(len(f), 3, 3)
        K[:, 0, 0], K[:, 1, 1] = f, f
        K[:, 0, 2], K[:, 1, 2] = self.pp[:, 0], self.pp[:, 1]
        K[:, 2, 2] = 1
        return K


def _expand_valid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    from ..capture.crop import interpolate_invalid

    return interpolate_invalid(x, valid) if not valid.all() else x


def _pnp_init(lmk3d: np.ndarray, lmk2d: np.ndarray, K: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame rigid pose (model -> OpenCV camera) by PnP; returns rvecs (N,3), tvecs (N,3), reprojection px (N,)."""
    import cv2

    N = len(lmk2d)
    rv, tv, err = np.zeros((N, 3)), np.zeros((N, 3)), np.full(N, np.inf)
    obj = lmk3d.astype(np.float64)
    for i in np.flatnonzero(valid):
        img = lmk2d[i].astype(np.float64)
        try:
            ok, r, t = cv2.solvePnP(obj, img, K[i], None, flags=cv2.SOLVEPNP_SQPNP)
        except cv2.error:  # SQPnP refuses points spread too little in normalised coordinates (a small face at a long focal)
            ok, r, t = cv2.solvePnP(obj, img, K[i], None, flags=cv2.SOLVEPNP_EPNP)
        if not ok or t[2, 0] <= 0:
            continue
        proj, _ = cv2.projectPoints(obj, r, t, K[i], None)
        rv[i], tv[i], err[i] = r[:, 0], t[:, 0], np.linalg.norm(proj[:, 0] - img, axis=1).mean()
    good = np.isfinite(err)
    if not good.any():
        raise RuntimeError("landmark fitting: PnP failed on every frame")
    return _expand_valid(rv, good), _expand_valid(tv, good), err


def _landmark_weights(P: int, extra: float) -> Tensor:
    """(P,) per-landmark weights: eyes, irises and lips count ``extra`` times.

    (Down-weighting the face oval, which MediaPipe slides along the silhouette, or up-weighting the
    brows did not help on the rendered ground truth: 1.93 vs 1.91 mm, brow correlation lower.)
    """
    w = torch.ones(P)
    from ..capture.landmarks import IRIS_LEFT, IRIS_RIGHT

    eyes_lips = [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173, 263, 249, 390, 373, 374, 380, 381,
                 382, 362, 466, 388, 387, 386, 385, 384, 398, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37,
                 0, 267, 269, 270, 409, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415]
    idx = [i for i in eyes_lips if i < P] + [i for i in range(IRIS_RIGHT, IRIS_LEFT + 5) if i < P]
    w[idx] = extra
    return w / w.mean()


def fit_landmarks(
    model: HeadModel,
    landmarks: np.ndarray,
    valid: np.ndarray,
    cameras: CropCameras,
    config: Optional[FitConfig] = None,
    init_focal: Optional[float] = None,
    progress: bool = True,
    focal_model: Optional[HeadModel] = None,
) -> FitResult:
    """Fit ``model`` to detected landmarks of N frames.

    Args:
        landmarks: (N, 478, ≥2) detected landmarks in crop pixels (interpolated where not valid).
        valid: (N,) bool; frames with False get no landmark term.
        cameras: per-frame crop intrinsics from a shared source focal length.
        init_focal: source focal in pixels to start from (None: estimated, see module docstring).
        focal_model: the head model whose landmark residual estimates the focal length (None: ``model``).
            MediaPipe detections look flatter than a real head; a model that ships MediaPipe's measured
            view of itself (the built-in head's detector-response table) reads their perspective right,
            one without it (ICT, FLAME) overestimates the focal (the pipeline passes the built-in head).
    Returns:
        :class:`FitResult`.
    """
    # The batch is many small tensors: intra-op threads only add synchronisation (and on a shared
    # 2-core machine, spin-waiting); one thread is faster. Restored on exit.
    keep_freed_memory()  # every step allocates and frees the same large planes: reuse them, no fresh pages
    with torch_threads(1):
        cfg = config or default_config(model)
        t0 = time.perf_counter()
        valid = np.asarray(valid, bool)
        lm = np.asarray(landmarks, np.float32)[..., :2]
        if valid.shape != (len(lm),) or not valid.any():
            raise ValueError(f"valid must be ({len(lm)},) bool with at least one True frame")
        head = landmark_head(model, cfg.detector_response, cfg.detector_correction)
        focal_est = None
        if init_focal is None:
            focal_est = _estimate_focal(model, head, lm, valid, cameras, cfg, focal_model)
            init_focal = focal_est.px
            if focal_est.why is None or focal_est.at_bound:
                # The search already minimised the same residual over the focal; letting Adam move
                # it again only trades it against the temporal terms (and, estimated with another model,
                # moving it with this model's residual raised ICT's NME on five of six videos).
                cfg = FitConfig(**{**cfg.__dict__, "optimize_focal": False})
        t_focal = time.perf_counter() - t0
        res = _fit(model, head, lm, valid, cameras, cfg, init_focal, progress)
        res.timings["focal_search"] = t_focal
        res.timings["total"] += t_focal
        if focal_est is not None:
            focal_est.px = res.focal
        res.focal_estimate = focal_est
        return res


def project_landmarks(model, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray,
                      K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """Pixel positions of a head model's landmarks for per-frame parameters (no gradients).

    The landmarks are those the landmark fit compares with detections (:func:`landmark_head`: MediaPipe's
    measured view of the model where one ships), so NME figures mean the same before and after a refinement.

    Args:
        model: a :class:`~avatar3d.models.base.HeadModel`. shape: (S,) shared identity.
        expression: (N, E). pose: (N, J, 3) axis-angle. transl: (N, 3) metres.
        K: (N, 3, 3) or (3, 3) pixels. world_to_cam: (N, 4, 4) or (4, 4).
    Returns:
        (N, L, 2) float32 pixel coordinates (OpenCV: pixel centres at integers).
    """
    with torch.no_grad():
        pts, _ = landmark_head(model)(f32(shape), f32(expression), f32(pose), f32(transl))
        return project(pts, f32(K), f32(world_to_cam))[0].numpy()


def _rest_landmarks(head: LandmarkHead) -> np.ndarray:
    S, E, J = head.num_shape, head.num_expression, head.num_joints
    with torch.no_grad():
        rest, _ = head(torch.zeros(S), torch.zeros(1, E), torch.zeros(1, J, 3), torch.zeros(1, 3))
    return rest[0].numpy()


def _pnp_focal(head: LandmarkHead, lm: np.ndarray, valid: np.ndarray, cameras: CropCameras) -> float:
    """Focal (source px) whose rigid PnP of the mean head reprojects best, over 0.5-4x the image size."""
    rest = _rest_landmarks(head)
    sub = np.flatnonzero(valid)[:: max(1, int(valid.sum()) // 12)]
    cands = cameras.default_focal * np.geomspace(0.5, 4.0, 10)
    errs = []
    for f in cands:
        K = cameras.K(float(f)).numpy()
        errs.append(np.median(_pnp_init(rest, lm[sub], K[sub], np.ones(len(sub), bool))[2]))
    return float(cands[int(np.argmin(errs))])


def _estimate_focal(model: HeadModel, head: LandmarkHead, lm: np.ndarray, valid: np.ndarray, cameras: CropCameras,
                    cfg: FitConfig, focal_model: Optional[HeadModel]) -> FocalEstimate:
    """The source focal (:mod:`avatar3d.tracking.focal`): a search over short fits of ``focal_model`` (or ``model``),
    or, with one or two frames (too little perspective) or ``cfg.focal_search`` < 2, a rigid PnP guess."""
    L = cameras.default_focal
    if cfg.focal_search < 2 or valid.sum() < 3:
        return assumed_focal(L, "one or two frames show too little perspective to measure the focal length: a rigid fit of the mean "
                                "head guessed it" if cfg.focal_search >= 2 else "focal search off: a rigid fit of the mean head "
                                "guessed it", _pnp_focal(head, lm, valid, cameras))
    if focal_model is not None and focal_model is not model:
        model, head = focal_model, landmark_head(focal_model)
        cfg = replace(default_config(focal_model), focal_search_frames=cfg.focal_search_frames)
    return search_focal(_focal_residuals(model, head, lm, valid, cameras, cfg), L, gauge=model.name)


def _focal_residuals(model: HeadModel, head: LandmarkHead, lm: np.ndarray, valid: np.ndarray, cameras: CropCameras,
                     cfg: FitConfig):
    """The scoring function of :func:`~avatar3d.tracking.focal.search_focal`: focals (G,) px -> (G,) landmark term of
    short full fits (identity + expression, no temporal terms) of a few frames spread over the video."""
    frames = np.flatnonzero(valid)
    sub_cfg = FitConfig(**{**cfg.__dict__, "optimize_focal": False, "w_smooth": 0.0, "w_smooth_expr": 0.0, "focal_search": 0})

    def residuals(focals: np.ndarray, iters: tuple[int, int], n_frames: int) -> np.ndarray:
        n = min(len(frames), n_frames, cfg.focal_search_frames)
        idx = frames[np.linspace(0, len(frames) - 1, n).round().astype(int)]
        # All candidates in one batch (G groups of n frames, each with its own identity and focal):
        # one optimisation instead of G, which matters because small batches are overhead-bound.
        G = len(focals)
        group = np.repeat(np.arange(G), n)
        it = replace(sub_cfg, iters_rigid=iters[0], iters_full=iters[1])
        res = _fit(model, head, np.tile(lm[idx], (G, 1, 1)), np.ones(G * n, bool), cameras.subset(np.tile(idx, G)), it,
                   float(np.exp(np.log(focals).mean())), False, frame_focal=np.asarray(focals)[group], group=group)
        return res.group_loss if G > 1 else np.array([res.data_loss])

    return residuals


def _fit(model: HeadModel, head: LandmarkHead, lm_np: np.ndarray, valid: np.ndarray, cameras: CropCameras, cfg: FitConfig,
         init_focal: float, progress: bool, frame_focal: Optional[np.ndarray] = None, group: Optional[np.ndarray] = None) -> FitResult:
    """One optimisation at a starting focal (see :func:`fit_landmarks`): :class:`LandmarkFitProblem` through :func:`fit_stages`.

    With ``group`` (N,) ints and ``frame_focal`` (N,), frames form independent groups, each with its
    own identity and fixed focal (the batched focal search); ``FitResult.group_loss`` then holds the
    final landmark term per group.
    """
    torch.manual_seed(cfg.seed)
    log = RunLog()
    with log.timed("init"):
        problem = LandmarkFitProblem(model, head, lm_np, valid, cameras, cfg, init_focal, frame_focal, group)
    for stage in fit_stages(cfg, model.expression_range):
        with log.timed(stage.name):
            run_stage(problem, stage, log, progress)
    res = problem.result(log)
    log.finish(cpu=False)
    return res


def fit_stages(cfg: FitConfig, expression_range: tuple[float, float]) -> list[Stage]:
    """The fit's schedule: ``rigid`` (head pose, position, focal, identity; expressions held at zero), then
    ``full`` (everything, expressions at a rate scaled by the width of the model's expression range)."""
    lr = cfg.lr
    lo, hi = expression_range
    rigid = Stage("rigid", cfg.iters_rigid, dict(rot=lr, ab=lr * 0.2, logq=lr * 0.5, log_f=lr * 2, shape=lr * 5), desc="fit rigid")
    full = Stage("full", cfg.iters_full, dict(rot=lr * 0.5, ab=lr * 0.1, logq=lr * 0.25, log_f=lr, shape=lr * 5,
                                              expr=lr * 3 * max(1.0, (hi - lo) if math.isfinite(hi - lo) else 1.0), jaw=lr, eyes=lr),
                 desc="fit expression")
    return [rigid, full]


def _rigid_start(head: LandmarkHead, lm_np: np.ndarray, valid: np.ndarray,
                 K0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Starting head pose from a PnP of the mean head per frame.

    Returns (N, 3) head rotations (axis-angle, model frame), (N, 3) camera-space positions of the
    head's pivot (root joint, m), the fixed (4, 4) world-to-camera and its distance to the head (m).
    """
    rv, tv, _ = _pnp_init(_rest_landmarks(head), lm_np, K0, valid)
    dist0 = float(np.median(tv[valid, 2]))
    w2c = front_camera(dist0)
    j_root = head.j_template[0].numpy()
    N = len(lm_np)
    rot0, piv0 = np.zeros((N, 3)), np.zeros((N, 3))
    for i in range(N):
        Rp = axis_angle_to_matrix_np(np.reshape(rv[i], 3))
        Rh = R_MODEL_TO_CV @ Rp  # R_c^T R_pnp (R_c is its own inverse)
        rot0[i] = matrix_to_axis_angle_np(Rh)
        piv0[i] = Rp @ j_root + tv[i]
    return rot0, piv0, w2c, dist0


class LandmarkFitProblem:
    """The unknowns of one landmark fit and its loss terms (module docstring), for :func:`~avatar3d.train.run_stage`.

    Unknowns (:meth:`parameters`): ``shape`` (G, S) identity per group, ``expr`` (N, E), ``rot`` (N, 3)
    head rotation, ``ab`` (N, 2) and ``logq`` (N,) head position in the camera as (x/z, y/z, log z - log f),
    ``jaw`` (N, 3), ``eyes`` (N, 6), ``log_f`` () log focal change. Changing the focal length then scales
    depth with it at a fixed image size, so Adam does not have to follow the narrow focal-versus-distance
    valley (the perspective difference is what determines the focal).

    Args: as :func:`_fit`.
    """

    def __init__(self, model: HeadModel, head: LandmarkHead, lm_np: np.ndarray, valid: np.ndarray, cameras: CropCameras,
                 cfg: FitConfig, init_focal: float, frame_focal: Optional[np.ndarray] = None, group: Optional[np.ndarray] = None):
        self.head, self.cameras, self.cfg, self.init_focal = head, cameras, cfg, float(init_focal)
        self.lm = torch.as_tensor(lm_np, dtype=torch.float32)  #: (N, P, 2) detections, crop pixels
        N, P = self.lm.shape[:2]
        self.N, self.J, self.jn = N, head.num_joints, model.joint_names
        self.G = 1 if group is None else int(group.max()) + 1
        self.gid = torch.zeros(N, dtype=torch.long) if group is None else torch.as_tensor(group, dtype=torch.long)
        f_frame = torch.full((N,), float(init_focal)) if frame_focal is None else torch.as_tensor(frame_focal, dtype=torch.float32)
        rot0, piv0, self.w2c, dist0 = _rigid_start(head, lm_np, valid, cameras.K(f_frame).numpy())
        self._init_unknowns(model, rot0, piv0)
        self.Rc_t, self.tc_t, self.w2c_t = f32(self.w2c[:3, :3]), f32(self.w2c[:3, 3]), f32(self.w2c)
        self.shape_std = model.shape_std.detach().float()
        self.lo, self.hi = model.expression_range
        self.w_lmk = _landmark_weights(P, cfg.eye_weight)  #: (P,) per-landmark weights, mean 1
        self.vmask = f32(valid)  #: (N,) 0/1, frames with a landmark term
        iod = float(np.median(np.linalg.norm(lm_np[valid][:, [33, 133]].mean(1) - lm_np[valid][:, [263, 362]].mean(1), axis=-1)))
        self.iod = max(iod, 1.0)  #: inter-ocular distance, crop pixels
        # Converts metres of translation into inter-ocular units at the head's distance (for smoothness).
        self.m_to_iod = float(f_frame.mean() * cameras.scale.mean()) / dist0 / self.iod
        #: (E,) per-expression scale of the magnitude priors (FitConfig.free_expressions)
        self.expr_prior = torch.tensor([cfg.free_expression_scale if n in cfg.free_expressions else 1.0 for n in model.expression_names])
        self.zeros3 = torch.zeros(N, 3)  # joints that are not optimised (e.g. the neck) stay at rest
        self.lm_t = self.lm.transpose(1, 2).contiguous()  # (N, 2, P) targets, coordinate-major like the points
        self.point_w = self.w_lmk / P  # the landmark term is a weighted mean over points
        self.focal_px = f_frame * cameras.scale  # (N,) crop focal per unit of exp(log_f)
        self.last_frame = torch.zeros(N)  #: per-frame landmark term of the last evaluated loss
        #: the priors' weights; the resting-face prior (soft minimum) only with one identity: the batched focal search
        #: fits independent groups (a quantile instead of the soft minimum is added by :meth:`regularizer`)
        self.prior_weights = PriorWeights(
            cfg.w_focal, cfg.w_smooth, cfg.w_shape, cfg.w_expr, cfg.w_expr_l1, cfg.w_jaw, cfg.w_eyes, cfg.w_smooth_expr,
            cfg.smooth_expr_delta, cfg.w_expr_rest, cfg.expr_rest_tau, self.expr_prior, self.shape_std, self.vmask,
            rest=self.G == 1 and cfg.expr_rest_quantile <= 0)

    def _init_unknowns(self, model: HeadModel, rot0: np.ndarray, piv0: np.ndarray) -> None:
        N, S, E, jn = self.N, self.head.num_shape, self.head.num_expression, self.jn
        self.shape = torch.zeros(self.G, S, requires_grad=True)
        self.expr = torch.zeros(N, E, requires_grad=True)
        self.rot = f32(rot0).requires_grad_(True)
        self.ab = f32(piv0[:, :2] / piv0[:, 2:]).requires_grad_(True)
        self.logq = f32(np.log(piv0[:, 2])).requires_grad_(True)
        self.jaw = torch.zeros(N, 3, requires_grad=("jaw" in jn))
        self.eyes = torch.zeros(N, 6, requires_grad=("eye_left" in jn and "eye_right" in jn))
        self.log_f = torch.zeros((), requires_grad=self.cfg.optimize_focal)

    def parameters(self) -> dict[str, Tensor]:
        """The unknowns by name (those that do not require a gradient stay fixed)."""
        return dict(rot=self.rot, ab=self.ab, logq=self.logq, log_f=self.log_f, shape=self.shape, expr=self.expr, jaw=self.jaw,
                    eyes=self.eyes)

    def full_pose(self) -> Tensor:
        """(N, J, 3) axis-angle joint rotations: head, jaw and eyes where the model has them, others at rest."""
        cols = [self.zeros3] * self.J
        cols[0] = self.rot
        if "jaw" in self.jn:
            cols[self.jn.index("jaw")] = self.jaw
        if self.eyes.requires_grad:
            cols[self.jn.index("eye_left")], cols[self.jn.index("eye_right")] = self.eyes[:, :3], self.eyes[:, 3:]
        return torch.stack(cols, 1)

    def frame_shape(self) -> Tensor:
        """Identity of each frame: (S,) shared, or (N, S) from its group."""
        return self.shape[0] if self.G == 1 else self.shape[self.gid]

    def translation(self) -> Tensor:
        """(N, 3) model translation from the camera-space pivot parametrisation."""
        z = torch.exp(self.logq + self.log_f)[:, None]
        cam = torch.cat([self.ab * z, z], 1)
        pivot_world = (cam - self.tc_t) @ self.Rc_t  # R_c^T (cam - t_c)
        root = self.head.j_template[0] + self.frame_shape() @ self.head.j_dirs[0].T
        return pivot_world - root

    def posed(self, rigid: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Rest points (N, 3, P), joint transforms into the camera (N, J, 3, 4), focal (N,), translation (N, 3)."""
        shp = self.frame_shape()
        R = batch_rodrigues(self.full_pose().reshape(-1, 3)).view(self.N, self.J, 3, 3)  # once per iteration, shared below
        # The rigid stage keeps expressions at zero: no gradient to collect for them.
        v = self.head.rest_points(shp, self.expr.detach() if rigid else self.expr, R)
        tr = self.translation()
        A = self.head.camera_transforms(shp, R, tr, self.w2c_t)
        return v, A, self.focal_px * torch.exp(self.log_f), tr

    def predict(self) -> Tensor:
        """(N, 478, 2) fitted landmarks in crop pixels."""
        v, A, f, _ = self.posed(False)
        return project_points(v, A, f, self.cameras.pp, self.head.weights_t)[:, : self.head.num_landmarks]

    def landmark_term(self, v: Tensor, A: Tensor, f: Tensor) -> Tensor:
        """(N,) pseudo-Huber landmark term in IOD units, weighted per point (eyes/lips), of :meth:`posed` output."""
        cfg, delta, pp = self.cfg, self.cfg.huber_delta, self.cameras.pp
        if cfg.fused:
            return projected_landmark_loss(v, A, f, pp, self.lm_t, self.head.weights_t, self.point_w, 1.0 / self.iod, delta)
        uv = project_points(v, A, f, pp, self.head.weights_t)
        r2 = ((uv - self.lm) ** 2).sum(-1) / self.iod**2
        return ((torch.sqrt(r2 + delta**2) - delta) * self.w_lmk).mean(-1)

    def loss(self, stage: Stage) -> Tensor:
        """Landmark term (mean over valid frames, summed over groups) plus :meth:`regularizer`."""
        rigid = stage.name == "rigid"
        v, A, f, tr = self.posed(rigid)
        per_frame = self.landmark_term(v, A, f) * self.vmask
        data = per_frame.sum() / self.vmask.sum() * self.G  # groups are independent problems: sum their means
        self.last_frame = per_frame.detach()
        return data + self.regularizer(rigid, tr)

    def regularizer(self, rigid: bool, tr: Tensor) -> Tensor:
        """Priors (focal, identity; expression, jaw, eyes unless ``rigid``) and smoothness along time
        (:mod:`~avatar3d.tracking.fit_priors`; through autograd when ``cfg.fused`` is off)."""
        cfg = self.cfg
        u = Unknowns(self.log_f, self.rot, tr * self.m_to_iod, self.shape)
        if not rigid:
            u.expr, u.jaw, u.eyes = self.expr, self.jaw, self.eyes
        reg = (regularizer if cfg.fused else reference_regularizer)(self.prior_weights, u)
        if not rigid and cfg.w_expr_rest > 0 and self.G == 1 and cfg.expr_rest_quantile > 0:
            rest = torch.quantile(self.expr[self.vmask > 0], cfg.expr_rest_quantile, dim=0).clamp_min(0)
            reg = reg + cfg.w_expr_rest * (rest**2).sum()
        return reg

    def constrain(self) -> None:
        """Expressions back inside the model's range."""
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            self.expr.clamp_(self.lo, self.hi)

    def result(self, log: RunLog) -> FitResult:
        """The fitted parameters (NumPy float32) with the last loss's per-frame and per-group landmark terms."""
        pf, G, gid = self.last_frame, self.G, self.gid
        data_loss = float(pf.sum() / self.vmask.sum())
        group_loss = (torch.zeros(G).index_add_(0, gid, pf) / torch.bincount(gid, minlength=G)).numpy() if G > 1 else np.zeros(G)
        with torch.no_grad():
            uv = self.predict().numpy()
            focal = float(self.init_focal * torch.exp(self.log_f))
            K = self.cameras.K(focal).numpy()
            pose = self.full_pose().numpy()
        return FitResult(
            shape=self.shape.detach()[0].numpy().astype(np.float32), expression=self.expr.detach().numpy().astype(np.float32),
            pose=pose.astype(np.float32), transl=self.translation().detach().numpy().astype(np.float32), focal=focal,
            K=K.astype(np.float32), world_to_cam=self.w2c.astype(np.float32), landmarks=uv.astype(np.float32),
            timings=log.timings, losses=log.losses, data_loss=data_loss, group_loss=group_loss,
        )
