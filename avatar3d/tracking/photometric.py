"""Photometric refinement of a landmark fit (``avatar3d track --photometric``, issue #4 step 4).

The landmark fit is rendered with the differentiable head renderer (:mod:`avatar3d.render.head`) at
a reduced resolution (default 128 px for 512 px crops) and compared with the crops. Unknowns:

* per sequence: an albedo texture in the model's UV space and 2nd-order SH lighting (9 x RGB,
  OpenCV camera frame, as ``render_mesh(sh=...)``);
* per frame: a change of expression, of every joint rotation (head, jaw, eyes) and of translation.

Loss on a mini-batch of consecutive frames:

* photometric: robust (Charbonnier) colour distance on pixels that are both model face region and
  person in the segmentation mask (hair, glasses frames and background mostly excluded);
* silhouette, one-sided and only in a box around the projected face: rendered coverage where the
  mask says background (hair and shoulders, which the model lacks, must not pull the head);
* landmarks: robust distance to the *detected* landmarks in inter-ocular units (the NME the landmark
  fit minimised), so the refinement cannot drift off them;
* priors: squared change from the landmark fit, second differences of the change along time (no
  added jitter), albedo total variation.

Schedule (why): stage 1 fits albedo + lighting with the geometry frozen at the landmark fit,
starting from a back-projection of the crops, so the appearance is explained before geometry may
move; stage 2 refines geometry and appearance jointly, with a lower texture learning rate so
misalignment is corrected by moving the mesh rather than baked into the albedo. Per-frame
parameters use a row-wise Adam (moments persist across visits of a frame, second moment shared by
all frames, cosine decay) so frames that are already aligned barely move. Afterwards the per-frame
changes are smoothed along time, frames whose change does not lower their own image error are put
back, and a short appearance-only pass fits the albedo to the final geometry.

Fair comparison (``config.baseline``): the baseline runs the same appearance optimisation (same
batches, iterations, learning rates, final pass) with the geometry frozen at the landmark fit, with
its own albedo and lighting; both fits are then judged on one shared pixel set (see
:func:`~avatar3d.tracking.photometric_losses.masked_errors`). If the refined fit does not win, the
landmark fit is returned (``PhotometricResult.fallback``).

Speed (issue #4: at most 0.5 s per frame all-in, baseline included, on two CPU cores): only the
sub-mesh the renderer draws is posed (:class:`~avatar3d.render.head.SubmeshPoser`:
identity blended once, expressions as one matmul, each rigid skinning group as one batched
matmul); geometry that no longer changes (the landmark fit throughout; the refined fit after the
smoothing) is rasterized once per frame (:class:`~avatar3d.render.head.RasterCache`),
with its SH basis and its antialiasing as a sparse linear map, so the appearance-only passes of
stage 1, the baseline, the polish and the error checks cost a texture lookup and a few small ops per
step. All of these are exact: results match the straightforward implementation to float rounding.

Code layout: :class:`PhotometricRefiner` runs the phases above, one method each;
:class:`PhotometricObjective` weighs the loss terms (:mod:`~avatar3d.tracking.photometric_losses`);
the state it optimises (targets, per-frame changes, appearance) is in
:mod:`~avatar3d.tracking.photometric_problem`; mini-batches, the row-wise Adam, the progress bar and
the run log are the trainers' shared pieces (:mod:`avatar3d.train`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from .._tensor import f32, torch_threads
from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.camera import project
from ..render.head import HeadRenderer, RasterCache, SubmeshPoser, backproject_albedo, white_sh
from ..train import FrameBatches, Progress, RunLog
from .photometric_losses import face_box, landmark_term, masked_errors, photo_term, second_difference, silhouette_term, texture_tv
from .photometric_problem import Appearance, FrameChanges, PhotometricTargets

__all__ = ["PhotometricConfig", "PhotometricResult", "refine_photometric"]


@dataclass
class PhotometricConfig:
    """Knobs of :func:`refine_photometric` (defaults: 512 px crops refined at 128 px)."""

    resolution: int = 128  #: render / compare size in pixels (crops are area-downsampled to it)
    texture_size: int = 128  #: albedo texture is (texture_size, texture_size, 3); ~ the face's size at the render resolution
    batch: int = 16  #: consecutive frames per mini-batch
    appearance_epochs: int = 1  #: stage 1 passes (albedo + SH, geometry frozen; starts from a back-projection)
    epochs: int = 3  #: stage 2 passes (+ per-frame geometry)
    iters_per_batch: int = 4  #: optimiser steps per mini-batch visit
    refine_geometry: bool = True  #: False: stage 2 refines appearance only (what the baseline does)
    baseline: bool = True  #: also run the fair baseline (stage 2 with frozen geometry; cheap, no geometry gradients)
    region: str = "face"  #: model region compared photometrically
    lr_texture: float = 0.03
    lr_texture_joint: float = 0.005  #: stage 2: low, so geometry (not albedo) absorbs misalignment
    lr_sh: float = 0.02
    lr_expression: float = 0.05  #: per step; 0.01 capped the change at ~0.06 in 12 steps, so a brow the landmarks missed stayed missed
    lr_rotation: float = 0.002  #: radians
    lr_transl: float = 0.0004  #: metres
    w_silhouette: float = 0.5
    w_landmarks: float = 1.0  #: on the robust landmark distance in inter-ocular units (~ NME)
    landmark_delta: float = 0.01  #: Charbonnier transition, inter-ocular units
    w_expression_reg: float = 0.01  #: squared expression change
    w_rotation_reg: float = 0.5  #: squared joint-rotation change (rad²)
    w_transl_reg: float = 50.0  #: squared translation change (m²)
    w_temporal: float = 0.5  #: squared second difference of the changes (expression units; rotation x10, transl x100)
    w_texture_tv: float = 0.05
    silhouette_margin: float = 0.05  #: face box growth, fraction of its size
    fallback: bool = True  #: return the landmark fit when the refinement does not beat the baseline (needs ``baseline``)
    polish_epochs: int = 1  #: appearance-only passes after smoothing / reverting (the baseline gets them too)
    smooth_passes: int = 2  #: [1,2,1]/4 filter passes over the per-frame changes along time (0: off)
    keep_only_improved: bool = True  #: revert frames whose refined geometry does not lower their image error
    #: memory (MB) for the rasterizations of fixed geometry (landmark fit, final fit) kept across passes; longer clips re-rasterize
    cache_mb: float = 768.0
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for k in ("resolution", "texture_size", "batch"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"PhotometricConfig.{k} must be a positive integer, got {getattr(self, k)}")
        for k in ("appearance_epochs", "epochs", "iters_per_batch"):
            if int(getattr(self, k)) < 0:
                raise ValueError(f"PhotometricConfig.{k} must be >= 0, got {getattr(self, k)}")


@dataclass
class PhotometricResult:
    """Output of :func:`refine_photometric`; N frames."""

    expression: np.ndarray  #: (N, E) refined
    pose: np.ndarray  #: (N, J, 3) refined axis-angle
    transl: np.ndarray  #: (N, 3) metres
    albedo: np.ndarray  #: (T, T, 3) float32 in [0, 1], row 0 = top (UV v = 1)
    sh: np.ndarray  #: (9, 3) SH lighting, camera frame
    errors_refined: np.ndarray  #: (N,) masked mean |render - image|, grey levels 0..255
    errors_landmark_only: np.ndarray  #: (N,) the same for the landmark-only geometry (baseline appearance when run)
    fallback: bool = False  #: True: the refinement lost to the baseline, so the landmark fit and baseline appearance are returned
    reverted: Optional[np.ndarray] = None  #: (N,) bool, frames put back to the landmark fit (``keep_only_improved``)
    baseline_albedo: Optional[np.ndarray] = None  #: the baseline's own albedo, when ``config.baseline``
    baseline_sh: Optional[np.ndarray] = None
    timings: dict = field(default_factory=dict)  #: wall seconds per stage, ``total``, and ``cpu_total`` (process CPU seconds)
    losses: list = field(default_factory=list)  #: stage 2 loss per step

    @property
    def error_refined(self) -> float:
        """Mean over frames of :attr:`errors_refined`."""
        return float(np.mean(self.errors_refined))

    @property
    def error_landmark_only(self) -> float:
        """Mean over frames of :attr:`errors_landmark_only`."""
        return float(np.mean(self.errors_landmark_only))


def _check_inputs(model: HeadModel, images, masks, landmarks, valid, expression, pose, transl, K, world_to_cam) -> int:
    N = len(expression)
    if model.uvs is None or model.uv_faces is None:
        raise BadInputError(f"head model {model.name!r} has no UV layout, so it cannot carry an albedo texture")
    if images.ndim != 4 or images.shape[0] != N or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise BadInputError(f"images must be (N, S, S, 3) square crops with N = {N}, got {images.shape}")
    if masks.shape[:3] != images.shape[:3]:
        raise BadInputError(f"masks must be (N, S, S) matching images {images.shape[:3]}, got {masks.shape}")
    if landmarks.shape[:2] != (N, 478) or valid.shape != (N,):
        raise BadInputError(f"landmarks must be (N, 478, 2) and valid (N,) with N = {N}, got {landmarks.shape} and {valid.shape}")
    if expression.shape[1] != model.num_expression or pose.shape[1:] != (model.num_joints, 3) or transl.shape != (N, 3):
        raise BadInputError(f"expression/pose/transl must be (N, {model.num_expression}), (N, {model.num_joints}, 3), (N, 3); "
                            f"got {expression.shape}, {pose.shape}, {transl.shape}")
    if K.shape != (N, 3, 3) or world_to_cam.shape != (4, 4):
        raise BadInputError(f"K must be (N, 3, 3) and world_to_cam (4, 4), got {K.shape} and {world_to_cam.shape}")
    return N


def refine_photometric(model: HeadModel, images: np.ndarray, masks: np.ndarray, landmarks: np.ndarray, valid: np.ndarray,
                       shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray, K: np.ndarray,
                       world_to_cam: np.ndarray, config: Optional[PhotometricConfig] = None,
                       progress: bool = False) -> PhotometricResult:
    """Refine a landmark fit photometrically (see the module docstring).

    Args:
        images: (N, S, S, 3) uint8 RGB crops (any S; resized to ``config.resolution``).
        masks: (N, S, S) uint8 person masks (255 = person) or floats in [0, 1].
        landmarks: (N, 478, >=2) detected landmarks in crop pixels (OpenCV, centres at integers).
        valid: (N,) bool, False where detection failed (no landmark term there).
        shape (S,), expression (N, E), pose (N, J, 3), transl (N, 3): the landmark fit.
        K: (N, 3, 3) crop intrinsics in crop pixels; world_to_cam: (4, 4) OpenCV extrinsics.
    Returns:
        :class:`PhotometricResult`.
    """
    # Many small ops per step: extra intra-op threads only add synchronisation, and on a shared
    # 2-core machine their spin-waiting made steps up to 15x slower. Restored on exit.
    with torch_threads(1):
        cfg = config or PhotometricConfig()
        cfg.validate()
        images, masks = np.asarray(images), np.asarray(masks)
        landmarks, valid = np.asarray(landmarks, np.float32)[..., :2], np.asarray(valid, bool)
        expression, pose, transl = (np.asarray(a, np.float32) for a in (expression, pose, transl))
        K, world_to_cam = np.asarray(K, np.float32), np.asarray(world_to_cam, np.float32)
        _check_inputs(model, images, masks, landmarks, valid, expression, pose, transl, K, world_to_cam)
        if cfg.region not in model.region_names:
            raise BadInputError(f"head model {model.name!r} has no region {cfg.region!r} (it has {', '.join(model.region_names)})")
        log = RunLog()
        torch.manual_seed(cfg.seed)
        targets = PhotometricTargets(images, masks, landmarks, valid, K, world_to_cam, cfg.resolution)
        return PhotometricRefiner(model, targets, shape, expression, pose, transl, cfg, log, progress).run()


class PhotometricObjective:
    """The refinement's loss on one mini-batch, as weighted terms (:mod:`~avatar3d.tracking.photometric_losses`).

    Args:
        cfg: weights and margins; rend: the renderer (its compared region); targets: what is compared with.
    """

    def __init__(self, cfg: PhotometricConfig, rend: HeadRenderer, targets: PhotometricTargets):
        self.cfg, self.rend, self.t = cfg, rend, targets

    def photo(self, image: Tensor, ras: dict, idx: np.ndarray) -> Tensor:
        """Colour term of rendered (B,r,r,3) ``image`` of a :meth:`HeadRenderer.raster` pass ``ras`` of frames idx."""
        return photo_term(image, self.t.img[idx], ras["region"], self.t.msk[idx])

    def appearance(self, ras: dict, idx: np.ndarray, app: Appearance) -> Tensor:
        """Loss of an appearance-only step: colour + albedo smoothness."""
        return self.photo(self.rend.shade(ras, app.tex, app.sh)[0], ras, idx) + self.cfg.w_texture_tv * texture_tv(app.tex)

    def joint(self, ras: dict, image: Tensor, alpha: Tensor, lmk3: Tensor, idx: np.ndarray,
              deltas: tuple[Tensor, Tensor, Tensor], app: Appearance) -> Tensor:
        """Loss of a joint step: colour, silhouette, landmarks, priors on the changes ``deltas``, time, albedo smoothness.

        Terms are added one at a time in this order (the order fixes the float rounding of the result).
        """
        cfg = self.cfg
        loss = self.photo(image, ras, idx)
        if cfg.w_silhouette > 0:
            loss = loss + cfg.w_silhouette * self.silhouette(ras, alpha, idx)
        if cfg.w_landmarks > 0:
            loss = loss + cfg.w_landmarks * self.landmarks(lmk3, idx)
        for term in self.priors(*deltas):
            loss = loss + term
        loss = loss + cfg.w_temporal * self.temporal(*deltas)
        return loss + cfg.w_texture_tv * texture_tv(app.tex)

    def silhouette(self, ras: dict, alpha: Tensor, idx: np.ndarray) -> Tensor:
        """Rendered coverage (B,r,r,1) ``alpha`` on background, in a box around the projected face."""
        box = face_box(ras["pos"], self.rend.region_idx, self.t.r, self.cfg.silhouette_margin)
        return silhouette_term(alpha, self.t.msk[idx], box)

    def landmarks(self, lmk3: Tensor, idx: np.ndarray) -> Tensor:
        """Robust distance of the model's (B,478,3) landmarks (m) to the detections, inter-ocular units."""
        uv = project(lmk3, self.t.K[idx], self.t.w2c)[0]
        return landmark_term(uv, self.t.lm_det[idx], self.t.iod[idx], self.t.vmask[idx], self.cfg.landmark_delta)

    def priors(self, de: Tensor, dp: Tensor, dt: Tensor) -> Iterator[Tensor]:
        """Weighted squared changes of expression, joint rotations and translation from the landmark fit.

        A generator, so each term is built just before the caller adds it (the order of autograd's
        nodes, and so the rounding of the gradients, stays that of one long sum)."""
        cfg = self.cfg
        yield cfg.w_expression_reg * de.pow(2).sum(-1).mean()
        yield cfg.w_rotation_reg * dp.pow(2).sum((-1, -2)).mean()
        yield cfg.w_transl_reg * dt.pow(2).sum(-1).mean()

    def temporal(self, de: Tensor, dp: Tensor, dt: Tensor) -> Tensor:
        """Squared second differences of the changes along time (rotation x10, translation x100 in scale)."""
        return second_difference(de) + 100 * second_difference(dp) + 1e4 * second_difference(dt)


class PhotometricRefiner:
    """Runs the refinement's schedule (module docstring) over one sequence.

    Phases, one method each: :meth:`fit_appearance` (stage 1), :meth:`joint` (stage 2),
    :meth:`baseline`, :meth:`settle` (smoothing and reverting), :meth:`polish` and :meth:`judge`.
    The only randomness is the order of mini-batches, drawn from one generator in that order.

    Args:
        model: head model; targets: crops etc. at render resolution; shape (S,), expression (N,E),
        pose (N,J,3), transl (N,3): the landmark fit; cfg: settings; log: losses and timings; progress: show a bar.
    """

    def __init__(self, model: HeadModel, targets: PhotometricTargets, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                 transl: np.ndarray, cfg: PhotometricConfig, log: RunLog, progress: bool):
        self.cfg, self.t, self.log, self.progress = cfg, targets, log, progress
        self.N, self.B = targets.N, int(cfg.batch)
        self.batches = FrameBatches(self.N, self.B, np.random.default_rng(cfg.seed))
        self.rend = HeadRenderer(model, targets.K, targets.w2c, targets.S, targets.r, cfg.region)
        poser = SubmeshPoser(model, self.rend.vertex_ids, f32(shape))  # poses only what is drawn, identity blended once
        self.frames = FrameChanges(model, poser, shape, expression, pose, transl, _comparison_landmarks(model))
        self.objective = PhotometricObjective(cfg, self.rend, targets)
        # The landmark-fit geometry never changes: back-projection, stage 1, the baseline, its polish and
        # the error checks all draw it, so each frame is rasterized once.
        self.init_ras = RasterCache(self.rend, self.frames.initial, self.N, cfg.cache_mb * 0.5e6)
        self.cur_ras = self.init_ras  #: passes of the refined geometry once it is fixed (:meth:`settle`)

    def run(self) -> PhotometricResult:
        """All phases; the result."""
        cfg, log = self.cfg, self.log
        with log.timed("appearance"):
            app = self.fit_appearance()
        stage1 = tuple(x.clone() for x in app.values())  # stage 1's appearance: where the baseline starts
        schedule = self.batches.epochs(cfg.epochs)  # shared with the baseline
        with log.timed("joint"):
            self.joint(app, schedule)
        base = None
        if cfg.baseline and cfg.refine_geometry:
            with log.timed("baseline", cpu=True):
                base = self.baseline(stage1, schedule)
        with log.timed("errors"):
            reverted = self.settle(app)
        if cfg.refine_geometry and cfg.polish_epochs > 0:
            with log.timed("polish"):
                self.polish(app, base)
        with log.timed("errors", add=True):
            result = self.judge(app, base.values() if base is not None else stage1, reverted)
        log.finish()
        return result

    def fit_appearance(self) -> Appearance:
        """Stage 1: albedo and lighting from a back-projection of the crops, geometry frozen at the landmark fit."""
        cfg = self.cfg
        with torch.no_grad():
            tex0 = backproject_albedo(self.init_ras, self.t.img, self.t.msk, int(cfg.texture_size), self.B)
        app = Appearance(tex0, white_sh())
        app.restart(cfg.lr_texture, cfg.lr_sh)
        self.appearance_pass(self.init_ras, self.batches.epochs(cfg.appearance_epochs), app)
        return app

    def appearance_pass(self, raster: RasterCache, batches: list[np.ndarray], app: Appearance) -> None:
        """Appearance-only steps on each mini-batch of fixed geometry ``raster``."""
        for idx in batches:
            self.appearance_steps(raster(idx), idx, app)

    def appearance_steps(self, ras: dict, idx: np.ndarray, app: Appearance) -> None:
        """``iters_per_batch`` appearance-only steps on one mini-batch."""
        for _ in range(self.cfg.iters_per_batch):
            app.zero_grad()
            loss = self.objective.appearance(ras, idx, app)
            loss.backward()
            app.step()

    def joint(self, app: Appearance, schedule: list[np.ndarray]) -> None:
        """Stage 2: per-frame geometry (row-wise Adam) and appearance (lower texture rate) together."""
        cfg = self.cfg
        app.restart(cfg.lr_texture_joint, cfg.lr_sh)
        self.frames.start_optimisers((cfg.lr_expression, cfg.lr_rotation, cfg.lr_transl), cfg.epochs * cfg.iters_per_batch)
        with Progress(len(schedule), "photometric", self.progress, unit="batch") as bar:
            for idx in schedule:
                if cfg.refine_geometry:
                    self.joint_steps(idx, app)
                else:
                    self.appearance_steps(self.init_ras(idx), idx, app)
                bar.update()

    def joint_steps(self, idx: np.ndarray, app: Appearance) -> None:
        """``iters_per_batch`` joint steps on one mini-batch (normals kept from its first geometry)."""
        normals = self.rend.normals(self.frames.current(idx))
        for _ in range(self.cfg.iters_per_batch):
            deltas = self.frames.leaves(idx)
            v, lmk3 = self.frames.posed(idx, *deltas)
            ras = self.rend.raster(v, idx, normals)
            image, alpha = self.rend.shade(ras, app.tex, app.sh)
            loss = self.objective.joint(ras, image, alpha, lmk3, idx, deltas, app)
            app.zero_grad()
            loss.backward()
            app.step()
            self.frames.step(idx, tuple(d.grad for d in deltas))
            self.log.loss(loss.detach())

    def baseline(self, stage1: tuple[Tensor, Tensor], schedule: list[np.ndarray]) -> Appearance:
        """The fair baseline: stage 2's batches and rates for the appearance alone, geometry frozen at the landmark fit."""
        base = Appearance(*stage1)
        base.restart(self.cfg.lr_texture_joint, self.cfg.lr_sh)
        self.appearance_pass(self.init_ras, schedule, base)
        return base

    def settle(self, app: Appearance) -> np.ndarray:
        """Smooth the changes along time and put back frames they do not improve; (N,) bool of the frames put back."""
        cfg, frames = self.cfg, self.frames
        reverted = np.zeros(self.N, bool)
        if not cfg.refine_geometry:
            return reverted
        with torch.no_grad():
            for _ in range(cfg.smooth_passes):
                # Mini-batches see a few frames at a time; a light [1, 2, 1] / 4 filter along time removes
                # the frame-to-frame noise of the changes (jitter) and keeps their slow part.
                frames.smooth()
            # The refined geometry is fixed from here on (but for frames put back below): rasterized once
            # for the revert check, the polish and the final errors.
            self.cur_ras = RasterCache(self.rend, frames.current, self.N, cfg.cache_mb * 0.5e6)
            if cfg.keep_only_improved:
                # A frame keeps its refinement only if, under the refined appearance, it explains the
                # image better than the landmark fit (static or tiny clips give the geometry nothing to
                # gain, and its optimiser noise would only add error). The baseline plays no part here.
                values = app.values()
                e_lmk, e_cur = masked_errors(self.rend, self.init_ras, values, self.cur_ras, values, self.t.img, self.t.msk, self.B)
                reverted = e_cur > e_lmk
                frames.revert(reverted)
                self.cur_ras.forget(reverted)
        return reverted

    def polish(self, app: Appearance, base: Optional[Appearance]) -> None:
        """Smoothing and reverting moved the geometry after the albedo last saw it: a short appearance-only
        pass fits it to the final geometry. The baseline gets the same pass, each continuing its own
        stage-2 optimiser."""
        batches = self.batches.epochs(self.cfg.polish_epochs)
        self.appearance_pass(self.cur_ras, batches, app)
        if base is not None:
            with self.log.timed("baseline", cpu=True, add=True, wall=False):  # the baseline's CPU seconds include its polish
                self.appearance_pass(self.init_ras, batches, base)

    def judge(self, app: Appearance, base_app: tuple[Tensor, Tensor], reverted: np.ndarray) -> PhotometricResult:
        """Both fits' errors on one shared pixel set; the landmark fit back when the refined one does not win."""
        cfg = self.cfg
        values = app.values()
        with torch.no_grad():
            err_base, err_ref = masked_errors(self.rend, self.init_ras, base_app, self.cur_ras, values, self.t.img, self.t.msk, self.B)
            # Sequence-level safety net: when the refined fit does not explain the images better than
            # the landmark fit with the same appearance budget (near-static or very short clips: the
            # geometry has nothing to gain), the landmark fit and the baseline appearance are returned.
            # Reported as ``fallback``; the errors of both candidates are kept as measured.
            fallback = bool(cfg.fallback and cfg.baseline and cfg.refine_geometry and err_ref.mean() >= err_base.mean())
            if fallback:
                self.frames.reset()
                values = base_app
            expression, pose, transl = self.frames.final()
        has_base = cfg.baseline and cfg.refine_geometry
        return PhotometricResult(expression=expression, pose=pose, transl=transl,
                                 albedo=values[0].numpy().astype(np.float32), sh=values[1].numpy().astype(np.float32),
                                 errors_refined=err_ref, errors_landmark_only=err_base, reverted=reverted, fallback=fallback,
                                 baseline_albedo=base_app[0].numpy() if has_base else None,
                                 baseline_sh=base_app[1].numpy() if has_base else None, timings=self.log.timings,
                                 losses=self.log.losses)


def _comparison_landmarks(model: HeadModel):
    """The landmark head the refinement compares detections with: the landmark fit's (MediaPipe's measured
    view of the model) where it has a response table, else None (the sub-mesh's own landmarks are the same points)."""
    from .landmark_model import landmark_head

    lhead = landmark_head(model)
    return lhead if lhead.uses_response else None
