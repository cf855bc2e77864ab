"""Training a Gaussian head avatar on a tracking directory: :func:`train_avatar`, built on :class:`AvatarTrainer`.

Per step (3DGS's recipe on bound Gaussians): ``batch`` training frames (each epoch a fresh permutation) are
rendered with their tracked parameters over white and compared with their masked crops over white:

    loss = L1 (pixels of the mouth weighted 1 + mouth_weight) + ssim_weight * (1 - SSIM) + sum_k w_k reg_k

(regularisers of :meth:`GaussianHead.regulariser`). Adam per field (one optimiser per per-Gaussian field,
as gsplat's, so densification can carry their moments) at :meth:`GaussianHead.learning_rates` times
``lr_scale``; the position fields decay exponentially to ``position_lr_final`` of theirs. The densification
strategy (:mod:`.strategy`) runs between backward and the step.

Safety: a step whose loss is not finite, or that leaves a parameter non-finite, is undone from an
in-memory snapshot (taken every ``snapshot_every`` steps) and the run continues; checkpoints
(``checkpoint.pt``, written atomically every ``checkpoint_every_s`` seconds and at the end) hold the whole
state (fields, Adam moments, densification accumulators, the frame order and every random generator), so
``resume=True`` continues where one left off. The avatar directory (a :class:`~avatar3d.data.rundir.RunDirectory`:
one run at a time; an earlier run's avatar is replaced only on request, and only once the new one is finished; what later
stages wrote about it, e.g. ``avatar3d avatar eval``'s ``metrics.json``, goes with it, as the manifest lists them):

====================  ==========================================================================
``avatar.pt``         the trained avatar (:func:`load_avatar`): format, head model name, its state, the tracking
                      directory it was trained on (``track_dir``, absolute), its ``resolution`` (pixels), ``steps``,
                      ``preset`` and ``iterations`` asked, and every ``options`` field (``asdict``)
``checkpoint.pt``     the training state (:meth:`AvatarTrainer.state_dict`) with ``track_dir``, ``resolution`` and
                      ``init_colours``
``train_log.csv``     step, seconds (wall, counting on over resumed runs), loss, PSNR of the step's frames, Gaussians
``train_curve.png``   loss and PSNR against wall time (:mod:`.plot`), redrawn with every checkpoint
====================  ==========================================================================
"""

from __future__ import annotations

import copy
import math
import time
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.atomic import atomic_path, write_text
from ..data.frames import TrackedFrames
from ..data.rundir import RunDirectory
from ..errors import BadInputError
from ..models.base import HeadModel
from ..train.report import Progress
from .backproject import backproject_colours
from .coverage import cover_silhouettes
from .dataset import MIN_TRAIN_FRAMES, FrameSet, initial_texture, load_frames
from .metrics import psnr, ssim
from .model import GaussianHead, HeadInit, driving_expressions
from .plot import write_curve
from .refine import FrameRefinement
from .strategy import DensifyOptions, DensifyStrategy
from .unseen import hide_unseen

__all__ = ["AvatarOptions", "AvatarTrainer", "TrainResult", "train_avatar", "load_avatar", "read_avatar", "AvatarRecord", "FORMAT",
           "CHECKPOINT_FILE", "AVATAR_FILE", "LOG_FILE", "CURVE_FILE", "TrainingStopped", "checkpoint_options", "check_backend",
           "make_appearance", "APPEARANCES", "RELIGHT_REGULARISERS"]

FORMAT = "avatar3d-gaussian-avatar"
VERSION = 1
CHECKPOINT_FILE = "checkpoint.pt"
AVATAR_FILE = "avatar.pt"
LOG_FILE = "train_log.csv"
CURVE_FILE = "train_curve.png"
STAGE = "train"  #: the avatar directory's manifest stage (:mod:`avatar3d.data.rundir`)
#: fields whose learning rate decays exponentially (3DGS decays the means')
POSITION_FIELDS = ("offset", "expr_offset")
#: weights of the relightable appearance's regularisers (:class:`~avatar3d.avatar.relight.PBRAppearance`)
RELIGHT_REGULARISERS = {"residual": 1.0, "albedo_prior": 0.05, "roughness_prior": 0.01, "specular_prior": 0.01,
                        "light_grey": 1e-3, "light_smooth": 1e-3, "normal": 0.1}
#: regularisers whose weight falls linearly to 0 over the first half of the run (the normals' tie to the mesh)
DECAYING = ("normal",)
#: the appearances an avatar file may name (:func:`make_appearance`)
APPEARANCES = ("sh1", "pbr")


@dataclass
class AvatarOptions:
    """Settings of a training run (learning rates per field are the model's; see the module docstring).

    Attributes:
        resolution: train at this width in pixels (None: the crops' size).
        iterations: optimiser steps; batch: frames per step.
        init: where the Gaussians start; backproject: start their colours from the training frames
        (:mod:`.backproject`; where no frame sees one, the texture's or grey); cover: add Gaussians where the
        masks reach beyond the mesh (hair, neck: :mod:`.coverage`); densify: the densification
        schedule (None: a fixed set).
        blendshapes: at most this many expression coefficients (those varying most) drive per-Gaussian blendshapes.
        ssim_weight, mouth_weight: loss weights; regularisers: weight per regulariser name.
        lr_scale: multiplies every learning rate; position_lr_final: the position fields' last-step fraction.
        seed: every random choice (frame order, splits) follows from it.
        checkpoint_every_s: seconds between checkpoints; snapshot_every: steps between in-memory snapshots.
        progress: show a progress bar; backend: the Gaussian rasterizer's.
        refine: refine each training frame's expression, pose and translation jointly with the avatar
        (:mod:`.refine`; held-out frames keep their tracked ones).
        relightable: train the relightable appearance (:class:`~avatar3d.avatar.relight.PBRAppearance`: albedo,
        roughness, specular and normals under a trained capture light) instead of SH colour; the regularisers of
        :data:`DECAYING` fall linearly to 0 over the first half of the run.
        preset: the name of the :mod:`.presets` preset these options came from (None: set by hand).
    """

    resolution: Optional[int] = None
    iterations: int = 3000
    batch: int = 1
    init: HeadInit = field(default_factory=HeadInit)
    backproject: bool = True
    cover: bool = True
    blendshapes: int = 16
    densify: Optional[DensifyOptions] = field(default_factory=DensifyOptions)
    ssim_weight: float = 0.2
    mouth_weight: float = 1.0
    regularisers: dict[str, float] = field(default_factory=lambda: {"offset": 0.01, "scale": 1.0, "expr_offset": 1.0,
                                                                    "expr_colour": 1.0, "refine": 1.0, **RELIGHT_REGULARISERS})
    lr_scale: float = 1.0
    position_lr_final: float = 0.01
    seed: int = 0
    checkpoint_every_s: float = 300.0
    snapshot_every: int = 200
    progress: bool = False
    backend: str = "auto"
    refine: bool = False
    relightable: bool = False
    preset: Optional[str] = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AvatarOptions":
        """The options ``asdict`` wrote (a checkpoint's); fields this version lacks are dropped, new ones take defaults."""
        return _from_dict(cls, d)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Dataclass ``cls`` from ``asdict`` output, nested dataclass fields (``X`` or ``Optional[X]``) rebuilt too."""
    hints = typing.get_type_hints(cls)
    kw = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v, t = d[f.name], hints[f.name]
        inner = [a for a in typing.get_args(t) if is_dataclass(a)] or ([t] if is_dataclass(t) else [])
        kw[f.name] = _from_dict(inner[0], v) if inner and isinstance(v, dict) else v
    return cls(**kw)


@dataclass
class TrainResult:
    """What :func:`train_avatar` returns."""

    avatar: GaussianHead
    out: Path  #: the avatar directory
    steps: int  #: optimiser steps taken in total (also before a resume)
    seconds: float  #: wall seconds of this call
    history: list[dict[str, float]]  #: one row per step: step, seconds, loss, psnr, gaussians
    init_colours: str  #: where the colours started (the frames, else "appearance/albedo.png", "albedo.png" or "grey")
    restored: int = 0  #: steps undone because of a non-finite loss or parameter
    resumed_from: int = 0  #: steps the checkpoint held when this call began (0: a new run)
    options: Optional[AvatarOptions] = None  #: the run's settings

    def psnr(self, last: int = 50) -> float:
        """Training PSNR (dB): the mean over the last ``last`` steps' frames (NaN before any step)."""
        vals = [h["psnr"] for h in self.history[-last:] if math.isfinite(h["psnr"])]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def minutes(self) -> float:
        """Wall minutes of the whole run, over every resumed part."""
        return (self.history[-1]["seconds"] if self.history else self.seconds) / 60.0


class TrainingStopped(KeyboardInterrupt):
    """Ctrl-C stopped :func:`train_avatar` between two steps, after writing a checkpoint of ``step`` of ``iterations``."""

    def __init__(self, step: int, iterations: int, out: Path):
        super().__init__(f"avatar training stopped at step {step} of {iterations}; resume it with resume=True")
        self.step, self.iterations, self.out = step, iterations, out


class AvatarTrainer:
    """The whole training state (explicit, checkpointable) and one step of it.

    Args:
        avatar: the model to train; frames: the training frames; options: the run's settings.
    """

    def __init__(self, avatar: GaussianHead, frames: FrameSet, options: AvatarOptions):
        self.avatar, self.frames, self.options = avatar, frames, options
        self.step_count = 0
        self.rng = np.random.default_rng(options.seed)
        self.generator = torch.Generator().manual_seed(options.seed)
        self.queue: list[int] = []  # the rest of this epoch's frame order
        lrs = avatar.learning_rates()
        self.lrs = {k: v * options.lr_scale for k, v in lrs.items() if k in avatar.params}
        self.lrs.update({f"appearance.{k}": lrs[k] * options.lr_scale for k in avatar.appearance.parameters()})
        self.optimizers = self._optimizers()
        E, J = avatar.head_model.num_expression, avatar.head_model.num_joints
        self.refine = FrameRefinement(len(frames), E, J) if options.refine else None
        self.refine_optimizer = self.refine.optimizer(options.lr_scale) if self.refine is not None else None
        self.strategy = DensifyStrategy(options.densify) if options.densify is not None else None
        self.strategy_state = self.strategy.initial_state(avatar.num_gaussians) if self.strategy else {}
        self.history: list[dict[str, float]] = []
        self.restored = 0
        self._snapshot: Optional[dict[str, Any]] = None

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per per-Gaussian field, and per global appearance tensor (``appearance.<name>``: the light)."""
        params = {**self.avatar.params, **{f"appearance.{k}": p for k, p in self.avatar.appearance.parameters().items()}}
        return {k: torch.optim.Adam([p], lr=self.lrs[k], eps=1e-15) for k, p in params.items()}

    # ------------------------------------------------------------------ one step
    def _rows(self) -> Tensor:
        B = min(self.options.batch, len(self.frames))
        while len(self.queue) < B:
            self.queue += [int(i) for i in self.rng.permutation(len(self.frames))]
        rows, self.queue = self.queue[:B], self.queue[B:]
        return torch.as_tensor(rows, dtype=torch.long)

    def _set_learning_rates(self) -> None:
        frac = self.step_count / max(1, self.options.iterations - 1)
        for k, opt in self.optimizers.items():
            decay = self.options.position_lr_final ** min(frac, 1.0) if k in POSITION_FIELDS else 1.0
            for g in opt.param_groups:
                g["lr"] = self.lrs[k] * decay

    def loss(self, rows: Tensor) -> tuple[Tensor, Tensor, Any]:
        """Loss of training rows ``rows`` (B,), the rendered images (B, H, W, 3) and the render."""
        fs, o = self.frames, self.options
        params = (fs.expression[rows], fs.pose[rows], fs.transl[rows])
        if self.refine is not None:
            params = self.refine(rows, *params)
        r = self.avatar(*params, fs.camera(rows), mouth=o.mouth_weight > 0, backend=o.backend)
        target = fs.targets(rows)
        image = fs.seen(rows, r.image)
        l1 = (image - target).abs().mean(-1)  # (B, H, W)
        if r.mouth is not None:
            l1 = l1 * (1.0 + o.mouth_weight * r.mouth[..., 0].detach())
        loss = l1.mean() + o.ssim_weight * (1.0 - ssim(image, target))
        reg = self.avatar.regulariser()
        if self.refine is not None:
            reg["refine"] = self.refine.regulariser()
        fade = max(0.0, 1.0 - 2.0 * self.step_count / max(1, o.iterations))
        loss = loss + sum(o.regularisers.get(k, 0.0) * (fade if k in DECAYING else 1.0) * v for k, v in reg.items())
        return loss, target, r

    def _bad(self, loss: Tensor) -> bool:
        """A non-finite loss, or one 10x the median of the last 50 steps (an explosion)."""
        if not bool(torch.isfinite(loss)):
            return True
        recent = [h["loss"] for h in self.history[-50:]]
        return len(recent) >= 50 and float(loss) > 10 * float(np.median(recent))

    def step(self) -> dict[str, float]:
        """One optimiser step; returns its log row (loss NaN where the step was undone)."""
        rows = self._rows()
        self._set_learning_rates()
        for opt in self._all_optimizers():
            opt.zero_grad(set_to_none=True)
        loss, target, r = self.loss(rows)
        if self._bad(loss.detach()):
            return self._restore()
        if self._snapshot is None or self.step_count % max(1, self.options.snapshot_every) == 0:
            self._snapshot = self.state_dict()  # parameters that just gave a sound loss
        if self.strategy is not None:
            self.strategy.step_pre_backward(r.means2d)
        loss.backward()
        if self.strategy is not None:
            self.strategy.step_post_backward(self.avatar, self.optimizers, self.strategy_state, self.step_count, r.means2d,
                                             r.radii, self.frames.width, self.frames.height, r.world_scale.amax(0), self.generator)
        for opt in self._all_optimizers():
            opt.step()
        self.step_count += 1
        row = {"step": float(self.step_count), "loss": float(loss.detach()),
               "psnr": float(psnr(self.frames.seen(rows, r.image.detach()).clamp(0, 1), target)), "gaussians": float(self.avatar.num_gaussians)}
        self.history.append(row)
        return row

    def _all_optimizers(self) -> list[torch.optim.Optimizer]:
        return list(self.optimizers.values()) + ([self.refine_optimizer] if self.refine_optimizer is not None else [])

    def _restore(self) -> dict[str, float]:
        """Undo back to the last snapshot and go on with the frames after the offending ones."""
        restored = self.restored + 1
        if restored > 20 or self._snapshot is None:
            raise RuntimeError("the avatar's training diverged (non-finite or exploding loss) and could not recover; "
                               "lower the learning rates (lr_scale)")
        queue = self.queue
        self.load_state_dict(self._snapshot)
        self.queue, self.restored = queue, restored
        return {"step": float(self.step_count), "loss": float("nan"), "psnr": float("nan"), "gaussians": float(self.avatar.num_gaussians)}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (tensors cloned)."""
        return {"format": FORMAT, "version": VERSION, "kind": "checkpoint", "model": self.avatar.head_model.name,
                "appearance": self.avatar.appearance.name, "step": self.step_count, "avatar": self.avatar.avatar_state(),
                "optimizers": {k: copy.deepcopy(o.state_dict()) for k, o in self.optimizers.items()},
                "strategy": {k: v.clone() for k, v in self.strategy_state.items()}, "queue": list(self.queue),
                "rng": copy.deepcopy(self.rng.bit_generator.state), "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(), "history": list(self.history), "restored": self.restored,
                "options": asdict(self.options),
                "refine": None if self.refine is None else {"params": {k: v.detach().clone() for k, v in self.refine.state_dict().items()},
                                                            "optimizer": copy.deepcopy(self.refine_optimizer.state_dict())}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the avatar's fields are replaced, any number of Gaussians)."""
        av = state["avatar"]
        params = {k[len("params."):]: v.clone() for k, v in av.items() if k.startswith("params.")}
        self.avatar.shape.copy_(av["shape"])
        self.avatar.expr_index = av["expr_index"].clone()
        self.avatar.set_fields(params, av["parent"].clone())
        self.avatar.appearance.load_state({k[len("appearance."):]: v for k, v in av.items() if k.startswith("appearance.")})
        self.optimizers = self._optimizers()
        for k, o in self.optimizers.items():
            o.load_state_dict(copy.deepcopy(state["optimizers"][k]))
        self.strategy_state = {k: v.clone() for k, v in state["strategy"].items()}
        self.step_count, self.queue = int(state["step"]), list(state["queue"])
        self.rng.bit_generator.state = copy.deepcopy(state["rng"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history, self.restored = list(state["history"]), int(state.get("restored", 0))
        if self.refine is not None and state.get("refine") is not None:
            self.refine.load_state_dict(state["refine"]["params"])
            self.refine_optimizer = self.refine.optimizer(self.options.lr_scale)
            self.refine_optimizer.load_state_dict(copy.deepcopy(state["refine"]["optimizer"]))

    def save_checkpoint(self, path: Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (a reader never sees half a checkpoint)."""
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)


# ---------------------------------------------------------------------------------------------- files
def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: one sentence, not a pickle traceback
        raise BadInputError(f"{path} is not a readable avatar {what} ({type(e).__name__}); delete it and train again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInputError(f"{path} is not an avatar3d Gaussian avatar {what}")
    kind = "checkpoint" if what == "checkpoint" else "avatar"
    if state.get("kind") != kind:  # e.g. an avatar.pt copied over the checkpoint
        raise BadInputError(f"{path} is an avatar3d Gaussian avatar {state.get('kind')}, not an avatar {what}")
    return state


def save_avatar(avatar: GaussianHead, path: Path, extra: Optional[dict[str, Any]] = None) -> Path:
    """Write the trained avatar (fields and buffers, head model name, appearance) to ``path`` atomically."""
    state = {"format": FORMAT, "version": VERSION, "kind": "avatar", "model": avatar.head_model.name,
             "appearance": avatar.appearance.name, "avatar": avatar.avatar_state(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


class AvatarRecord(NamedTuple):
    """What :func:`read_avatar` returns: the avatar and what its file records about it."""

    avatar: GaussianHead
    path: Path  #: the ``avatar.pt`` read
    track_dir: Optional[Path]  #: the tracking directory it was trained on (absolute; it may have moved since), None if unrecorded
    resolution: Optional[int]  #: the width it was trained at (pixels), None if unrecorded
    record: dict[str, Any]  #: the file's other entries (model, steps, options, init_colours, ...), without the fields


def read_avatar(path: str | Path, head_model: Optional[HeadModel] = None) -> AvatarRecord:
    """The avatar of ``AVATAR_DIR/avatar.pt`` (or that file) with its record; the head model is loaded by name unless
    given. One sentence (:class:`BadInputError`) for a missing, corrupt or foreign file or a head model that cannot load."""
    p = Path(path)
    p = p / AVATAR_FILE if p.is_dir() or not p.suffix else p
    if not p.is_file():
        raise BadInputError(f"{p.parent} is not an avatar directory (it has no {AVATAR_FILE}); "
                            f"train one with `avatar3d avatar train TRACK_DIR --out {p.parent}`")
    state = _read(p, "file")
    model = head_model if head_model is not None else _head_model(state["model"])
    if model.name != state["model"]:
        raise BadInputError(f"{p} was trained on the head model {state['model']!r}, not {model.name!r}")
    track, res = state.get("track_dir"), state.get("resolution")
    appearance = make_appearance(state.get("appearance", "sh1"), p)
    return AvatarRecord(GaussianHead.from_state(model, state["avatar"], appearance), p, Path(track) if isinstance(track, str) and track else None,
                        int(res) if res else None, {k: v for k, v in state.items() if k != "avatar"})


def load_avatar(path: str | Path, head_model: Optional[HeadModel] = None) -> GaussianHead:
    """The avatar of ``AVATAR_DIR/avatar.pt`` (or that file): :func:`read_avatar` without the record."""
    return read_avatar(path, head_model).avatar


def make_appearance(name: str, path: Optional[Path] = None, capture: Optional[Any] = None, albedo_prior: bool = False) -> Any:
    """An empty appearance of the kind ``name`` (:data:`APPEARANCES`) for an avatar file ``path`` to fill; ``capture``
    (an environment map) and ``albedo_prior``: a relightable one's start (:class:`~avatar3d.avatar.relight.PBRAppearance`)."""
    from .appearance import SHAppearance

    if name == "sh1":
        return SHAppearance()
    if name == "pbr":
        from .relight import PBRAppearance

        return PBRAppearance(capture, albedo_prior)
    raise BadInputError(f"{path or 'this avatar'} has the appearance {name!r}, which this version cannot read "
                        f"(it reads {', '.join(APPEARANCES)}); update avatar3d or train the avatar again")


def _capture_light(track_dir: Path) -> Any:
    """The appearance stage's estimate of the capture light (``TRACK_DIR/appearance/environment.hdr``), None if absent
    or unreadable (then a relightable avatar starts from grey)."""
    from ..render.lighting import EnvironmentMap

    path = track_dir / "appearance" / "environment.hdr"
    try:
        return EnvironmentMap.read(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _head_model(spec: str) -> HeadModel:
    from ..errors import Avatar3DError
    from ..models import load_head_model

    try:
        return load_head_model(spec)
    except (Avatar3DError, OSError, ValueError) as e:
        raise BadInputError(f"the head model {spec!r} of this tracking cannot be loaded ({e})") from None


def _write_log(history: list[dict[str, float]], path: Path) -> None:
    lines = ["step,seconds,loss,psnr,gaussians"]
    lines += [f"{int(h['step'])},{h.get('seconds', 0.0):.3f},{h['loss']:.6f},{h['psnr']:.4f},{int(h['gaussians'])}" for h in history]
    write_text(path, "\n".join(lines) + "\n")


def _save_progress(trainer: AvatarTrainer, out: Path, run: dict[str, Any]) -> None:
    """The checkpoint (the trainer's state and ``run``: tracking directory, resolution), ``train_log.csv`` and
    ``train_curve.png``, each written atomically."""
    state = trainer.state_dict()
    state.update(run)
    with atomic_path(out / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)
    _write_log(trainer.history, out / LOG_FILE)
    write_curve(trainer.history, out / CURVE_FILE)


def checkpoint_options(out: str | Path) -> Optional[AvatarOptions]:
    """The options of the run whose checkpoint is in the avatar directory ``out`` (None when it has none)."""
    ckpt = Path(out) / CHECKPOINT_FILE
    if not ckpt.is_file():
        return None
    return AvatarOptions.from_dict(_read(ckpt, "checkpoint").get("options", {}))


def _resume_state(out: Path, resume: bool, restart: bool) -> Optional[dict[str, Any]]:
    """The checkpoint to continue (None: a new run), after the rule that an earlier run is never replaced silently."""
    ckpt, avatar = out / CHECKPOINT_FILE, out / AVATAR_FILE
    if restart:
        return None
    if resume:
        if ckpt.is_file():
            return _read(ckpt, "checkpoint")
        if avatar.is_file():
            raise BadInputError(f"{out} holds an avatar but not its {CHECKPOINT_FILE}, so its training cannot continue: pass --restart to "
                                "train a new one in its place, or choose another --out")
        return None
    if ckpt.is_file() or avatar.is_file():
        what = "a trained avatar" if avatar.is_file() else "an unfinished training run"
        raise BadInputError(f"{out} already holds {what}: pass --resume to continue it (with a larger --iterations to train a "
                            f"finished one further), --restart to train a new one in its place, or choose another --out")
    return None


def _check_resumable(state: dict[str, Any], ckpt: Path, model: HeadModel, track_dir: Path, resolution: int) -> None:
    """One sentence when the checkpoint belongs to another head model, tracking directory or resolution."""
    if state.get("model") != model.name:
        raise BadInputError(f"{ckpt} belongs to an avatar of the head model {state.get('model')!r}, not {model.name!r}")
    if state.get("track_dir") not in (None, str(track_dir)):
        raise BadInputError(f"{ckpt} was trained on {state['track_dir']}, not {track_dir}: give that tracking directory, pass --restart "
                            "to train a new avatar, or choose another --out")
    if state.get("resolution") not in (None, resolution):
        raise BadInputError(f"{ckpt} was trained at {state['resolution']} pixels, not {resolution}: resume at that resolution, pass "
                            "--restart to train a new avatar, or choose another --out")


def check_backend(backend: str) -> None:
    """One sentence when the Gaussian rasterizer ``backend`` cannot train here (training runs on the CPU for now)."""
    from ..render.gaussians import BACKENDS

    if backend not in BACKENDS:
        raise BadInputError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend in ("cuda", "gsplat") and not torch.cuda.is_available():
        raise BadInputError(f"--backend {backend} needs an NVIDIA GPU with CUDA, and PyTorch sees none on this machine: "
                            "use --backend cpu (or auto)")
    if backend in ("cuda", "gsplat"):
        raise BadInputError(f"--backend {backend}: the avatar trains on the CPU for now (its frames and Gaussians live in "
                            "main memory): use --backend cpu (or auto)")


class _CtrlC:
    """Within the block, Ctrl-C (SIGINT) only sets :attr:`pressed` (the loop checkpoints and stops between steps);
    a second Ctrl-C interrupts at once. Outside the main thread, signals cannot be caught: nothing changes."""

    def __init__(self):
        self.pressed = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def __enter__(self) -> "_CtrlC":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# ---------------------------------------------------------------------------------------------- entry points
def prepare(track_dir: str | Path, options: AvatarOptions) -> tuple[TrackedFrames, HeadModel, FrameSet]:
    """The tracking directory checked and read: its frames, head model and training frames (one sentence per problem)."""
    frames = TrackedFrames(track_dir, options.resolution)
    split = frames.split()
    if len(split.train) < MIN_TRAIN_FRAMES:
        raise BadInputError(f"{track_dir} has {len(frames)} frames, {len(split.train)} of them for training; an avatar needs at least "
                            f"{MIN_TRAIN_FRAMES} training frames (a longer video)")
    model = _head_model(frames.sequence.model)
    seq = frames.sequence
    if seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
        raise BadInputError(f"{track_dir}'s parameters ({seq.expression.shape[1]} expressions, {seq.pose.shape[1]} joints) do not fit "
                            f"the head model {model.name!r} ({model.num_expression}, {model.num_joints})")
    return frames, model, load_frames(frames, split.train)


def train_avatar(track_dir: str | Path, out: str | Path, options: AvatarOptions = AvatarOptions(), resume: bool = False,
                 restart: bool = False) -> TrainResult:
    """Train an avatar on the training frames of ``track_dir`` and write it to ``out`` (see the module docstring).

    ``out`` is owned by one run at a time (:class:`~avatar3d.data.rundir.RunDirectory`), and an earlier run there is
    never replaced silently: ``resume`` continues from ``out/checkpoint.pt`` (a new run when there is none); with the
    same ``options`` it goes on exactly as if it had never stopped (``options`` replace the checkpoint's: more
    ``iterations`` extend a finished run, the position learning rates' decay stretched to the new length; see
    :func:`checkpoint_options`); ``restart`` trains a new avatar in place of the one there. ``avatar.pt`` is written
    (atomically) only at the end, so a failed or stopped run leaves an earlier one intact.

    Ctrl-C checkpoints between two steps and raises :class:`TrainingStopped` (a ``KeyboardInterrupt``).

    Raises:
        BadInputError: unusable input, or an earlier run in ``out`` without ``resume`` / ``restart`` (one sentence);
        RunDirectoryBusyError: another run writes ``out``.
    """
    t0 = time.perf_counter()
    out, track_dir = Path(out), Path(track_dir).resolve()
    check_backend(options.backend)
    with RunDirectory(out) as rundir:
        state = _resume_state(out, resume, restart)
        frames, model, train = prepare(track_dir, options)
        if state is not None:
            _check_resumable(state, out / CHECKPOINT_FILE, model, track_dir, frames.width)
        avatar, source = _initial_avatar(track_dir, frames, model, train, options, project=state is None)
        source = state.get("init_colours", source) if state is not None else source
        run = {"track_dir": str(track_dir), "resolution": frames.width, "init_colours": source}
        trainer = AvatarTrainer(avatar, train, options)
        if state is not None:
            trainer.load_state_dict(state)
        elif restart:  # the earlier run's progress files go now; its avatar.pt only when the new one replaces it
            for f in (CHECKPOINT_FILE, LOG_FILE, CURVE_FILE):
                (out / f).unlink(missing_ok=True)
        start = trainer.step_count
        _loop(trainer, out, run, t0)
        _save_progress(trainer, out, run)
        settings = {**run, "steps": trainer.step_count, "preset": options.preset, "iterations": options.iterations}
        if trainer.step_count > start or not (out / AVATAR_FILE).is_file():
            _forget_later_stages(rundir)
            settings["hidden_unseen"] = hide_unseen(avatar, train, backend=options.backend)  # after the checkpoint: it keeps them
            save_avatar(avatar, out / AVATAR_FILE, {**settings, "options": asdict(options)})
        rundir.record_stage(STAGE, [AVATAR_FILE, CHECKPOINT_FILE, LOG_FILE, CURVE_FILE], settings)
    return TrainResult(avatar, out, trainer.step_count, time.perf_counter() - t0, trainer.history, source, trainer.restored,
                       start, options)


def _forget_later_stages(rundir: RunDirectory) -> None:
    """Remove what later stages (``avatar3d avatar eval``'s ``metrics.json``, ...) wrote about the avatar about to be
    replaced, as the directory's manifest lists it: they would describe the old one."""
    for name in list(rundir.manifest()["stages"]):
        if name != STAGE:
            rundir.drop_stage(name)


def _initial_avatar(track_dir: Path, frames: TrackedFrames, model: HeadModel, train: FrameSet, options: AvatarOptions,
                    project: bool = True) -> tuple[GaussianHead, str]:
    """The Gaussians before the first step and where their colours came from (``project=False``: no projection of the
    frames, for a run whose checkpoint replaces every field anyway)."""
    texture, source = initial_texture(track_dir)
    torch.manual_seed(options.seed)
    appearance = None
    if options.relightable:  # the appearance maps' albedo (when they are the texture) is its albedo and prior
        appearance = make_appearance("pbr", capture=_capture_light(track_dir), albedo_prior=source == "appearance/albedo.png")
    avatar = GaussianHead.initialise(model, torch.as_tensor(frames.sequence.shape), texture, appearance, options=options.init,
                                     expr_index=driving_expressions(train.expression, options.blendshapes))
    if options.backproject and project:
        colours, seen = backproject_colours(avatar, train, backend=options.backend)
        avatar.appearance.set_base_colour(avatar.params, colours, seen > 0)
        source = f"frames ({int((seen > 0).sum())} of {avatar.num_gaussians} Gaussians seen), else {source}"
    if options.cover:
        cover_silhouettes(avatar, train, backend=options.backend)
    return avatar, source


def _loop(trainer: AvatarTrainer, out: Path, run: dict[str, Any], t0: float) -> None:
    """Steps until ``options.iterations``, with a progress bar, checkpoints and Ctrl-C; ``seconds`` in the log
    count on from the checkpoint's (the wall time of the whole run)."""
    options = trainer.options
    offset = trainer.history[-1].get("seconds", 0.0) if trainer.history else 0.0
    last_save = time.perf_counter()
    todo = max(0, options.iterations - trainer.step_count)
    with Progress(todo, "avatar", options.progress, unit="step", dynamic_ncols=True) as bar, _CtrlC() as ctrl_c:
        while trainer.step_count < options.iterations:
            if ctrl_c.pressed:  # between steps, so the checkpoint holds whole steps only
                _save_progress(trainer, out, run)
                raise TrainingStopped(trainer.step_count, options.iterations, out)
            row = trainer.step()
            row["seconds"] = offset + time.perf_counter() - t0
            if bar.bar is not None and math.isfinite(row["loss"]):
                bar.bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{row['psnr']:.2f} dB", gaussians=int(row["gaussians"]), refresh=False)
            bar.update()
            if time.perf_counter() - last_save > options.checkpoint_every_s:
                _save_progress(trainer, out, run)
                last_save = time.perf_counter()
