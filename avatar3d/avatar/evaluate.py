"""The avatar's evaluation protocol: :func:`evaluate_run` scores an avatar directory on its held-out frames, with the
textured-mesh baseline on the same frames, and writes ``AVATAR_DIR/metrics.json``; :func:`evaluate_avatar` scores
a model on a :class:`~.dataset.FrameSet` (what training tests use).

Protocol (also written into every ``metrics.json``):

* **frames**: the held-out end of the split (:mod:`avatar3d.data.split`: the last 15% of the frames, at least 30,
  at most half) of the tracking directory the avatar was trained on (``avatar.pt``'s ``track_dir``; ``--track``
  when it moved), read at the avatar's resolution (``avatar.pt``'s ``resolution``); no trainer ever sees them.
  Each is rendered with its tracked parameters (expression, pose, translation) and camera.
* **target**: the video crop composited over white with its mask; pixels the video never showed (crop padding
  past the video's edge, :meth:`FrameSet.seen`) are white in both target and renders.
* **PSNR** (dB, peak 1, over the 3 channels) and **SSIM** (:mod:`.metrics`: 11 x 11 Gaussian window, sigma 1.5,
  scikit-image's numbers) per frame on the full crop, averaged over the frames (the published avatar papers'
  convention).
* **face** PSNR / SSIM: the same, restricted to the face region: pixels where the tracked mesh's front-most
  triangle is one of the head model's face triangles (facial skin and lips without ears and neck, eyeballs, eye
  sockets, mouth interior, teeth; :class:`~.baseline.FaceRegion`), inside the frame's mask (> 50%) and seen by the video. Face PSNR is the mean
  squared error over those pixels; face SSIM the mean of the SSIM map (each pixel's window centred on it; the
  5-pixel border that no whole window reaches is left out) over them. A frame without a face pixel has none.
* **LPIPS** (AlexNet, inputs scaled to [-1, 1]) on the full crop, only when the ``lpips`` package and the
  AlexNet weights are already on this machine (nothing is ever downloaded); otherwise reported unavailable with
  the reason.
* **baseline**: the tracked mesh with the best texture of the tracking directory (:mod:`.baseline`), rendered
  over white on the same frames and scored the same way; none when the directory has no texture.
* **difference**: avatar minus baseline, per metric.

Outputs: ``AVATAR_DIR/metrics.json`` (:func:`metrics_json`) and, asked for, ``AVATAR_DIR/heldout/<frame>.png``:
target | avatar | baseline | the avatar's error (mean absolute error over the channels, x4, inferno colours).
Both are written once every frame is scored (a failed run leaves an earlier result as it was); the avatar
directory is locked meanwhile (:class:`~avatar3d.data.rundir.RunDirectory`, stage ``eval``).
Shapes: n held-out frames of H x W pixels.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..data.atomic import file_sha256
from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..models.base import HeadModel
from ..render.camera import Camera
from .baseline import FaceRegion, MeshBaseline, mesh_baseline
from .dataset import FrameSet, load_frames
from .metrics import WINDOW, psnr, ssim, ssim_map
from .model import GaussianHead
from .train import AVATAR_FILE, read_avatar

__all__ = ["evaluate_avatar", "evaluate_run", "EvalResult", "Scores", "lpips_metric", "METRICS", "METRICS_FILE", "HELDOUT_DIR",
           "PROTOCOL"]

METRICS_FILE = "metrics.json"
HELDOUT_DIR = "heldout"
METRICS_FORMAT = "avatar3d-avatar-metrics"
STAGE = "eval"  #: the avatar directory's manifest stage
#: the protocol's metrics, in table order
METRICS = ("psnr", "ssim", "face_psnr", "face_ssim", "lpips")
#: torchvision's AlexNet weights, which LPIPS ("alex") builds on: used only when already in torch's hub cache
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
#: the protocol in words (metrics.json's "protocol")
PROTOCOL = {
    "frames": "the held-out end of the split (avatar3d.data.split: the last 15% of the frames, at least 30, at most half), "
              "never trained on, each rendered with its tracked parameters and camera, at the avatar's resolution",
    "target": "the video crop over white with its mask; pixels the video never showed (crop padding) are white in target and renders",
    "psnr": "dB, peak 1, mean squared error over all pixels and the 3 channels of a frame; mean over the frames",
    "ssim": "11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population covariances, over the window's valid part "
            "(scikit-image's structural_similarity numbers); mean over the frames",
    "face": "pixels whose front-most triangle of the tracked mesh is in the head model's face regions (facial skin and lips "
            "without ears and neck, eyeballs, eye sockets, mouth interior, teeth), inside the mask (> 50%) and seen by the video; face_psnr: PSNR over them; "
            "face_ssim: the SSIM map averaged over them (5-pixel border excluded); frames without face pixels are skipped",
    "lpips": "LPIPS AlexNet (lpips package), inputs in [-1, 1], full crop; only with weights already on this machine (never downloaded)",
    "baseline": "the tracked mesh with the best texture of the tracking directory (appearance maps under the capture light, "
                "else the photometric tracker's albedo under its SH light), over white, same frames and metrics; "
                "its texture was fitted on all frames, held-out ones included",
    "difference": "avatar minus baseline",
}


@dataclass
class Scores:
    """Per-frame scores of one renderer: (n,) float64 arrays, NaN where a frame has no value (no face pixel);
    ``lpips`` None when LPIPS is unavailable."""

    psnr: np.ndarray
    ssim: np.ndarray
    face_psnr: np.ndarray
    face_ssim: np.ndarray
    lpips: Optional[np.ndarray] = None

    def means(self) -> dict[str, Optional[float]]:
        """The mean of each metric over the frames that have it (None: no frame has it, or LPIPS unavailable)."""
        out: dict[str, Optional[float]] = {}
        for k in METRICS:
            v = getattr(self, k)
            ok = None if v is None else v[np.isfinite(v)]
            out[k] = float(ok.mean()) if ok is not None and ok.size else None
        return out

    def per_frame(self) -> dict[str, Optional[list[Optional[float]]]]:
        return {k: None if getattr(self, k) is None else [_num(x) for x in getattr(self, k)] for k in METRICS}


@dataclass
class EvalResult:
    """What :func:`evaluate_run` returns (and wrote to ``path``)."""

    avatar_dir: Path
    track_dir: Path
    frames: list[int]  #: frame numbers in the sequence
    names: list[str]  #: their file stems
    resolution: int  #: width in pixels
    avatar: Scores
    baseline: Optional[Scores]
    baseline_source: str  #: the baseline's texture in words, or why there is none
    lpips_note: str  #: what LPIPS ran with, or why it did not
    path: Path  #: metrics.json
    images: list[Path]  #: held-out comparison images written (empty unless asked for)
    seconds: float

    def rows(self) -> dict[str, Optional[dict[str, Optional[float]]]]:
        """The table: ``avatar``, ``baseline`` and ``difference`` (avatar minus baseline) means per metric."""
        a = self.avatar.means()
        b = self.baseline.means() if self.baseline is not None else None
        d = None if b is None else {k: (a[k] - b[k]) if a[k] is not None and b[k] is not None else None for k in METRICS}
        return {"avatar": a, "baseline": b, "difference": d}


def _num(x: float) -> Optional[float]:
    """JSON has no NaN: None instead."""
    return float(x) if math.isfinite(float(x)) else None


@torch.no_grad()
def evaluate_avatar(avatar: GaussianHead, frames: FrameSet, backend: str = "auto") -> dict[str, Any]:
    """Scores of ``avatar`` on ``frames`` (rendered one by one over white against the masked crops over white).

    Returns:
        ``psnr`` (dB, over every pixel of every frame), ``ssim`` (mean over frames), ``psnr_mask`` (dB over the
        masks' pixels, mask > 0.5), and per frame ``psnr_frames`` / ``ssim_frames`` (n,) arrays.
    """
    se, sm, n_pix, n_mask, ps, ss = 0.0, 0.0, 0, 0, [], []
    for i in range(len(frames)):
        rows = torch.tensor([i])
        img = avatar(frames.expression[rows], frames.pose[rows], frames.transl[rows], frames.camera(rows), backend=backend).image
        img = frames.seen(rows, img).clamp(0, 1)
        tgt = frames.targets(rows)
        err = (img - tgt).square()
        m = frames.masks[rows] > 127
        se += float(err.sum())
        sm += float(err[m].sum())
        n_pix += err.numel()
        n_mask += int(m.sum()) * 3
        ps.append(float(psnr(img, tgt)))
        ss.append(float(ssim(img, tgt)))
    return {"psnr": 10 * math.log10(n_pix / max(se, 1e-20)), "ssim": float(np.mean(ss)),
            "psnr_mask": 10 * math.log10(max(n_mask, 1) / max(sm, 1e-20)), "psnr_frames": np.asarray(ps), "ssim_frames": np.asarray(ss)}


# ---------------------------------------------------------------------------------------------- one frame's scores
def lpips_metric() -> tuple[Optional[Callable[[Tensor, Tensor], float]], str]:
    """LPIPS (AlexNet) of two (H, W, 3) images in [0, 1] when this machine already has everything it needs, and
    what it runs with; (None, why not) otherwise. Nothing is downloaded: the AlexNet weights must be in torch's
    hub cache (``$TORCH_HOME/hub/checkpoints``), the ``lpips`` package ships its own linear layers."""
    try:
        import lpips
    except ImportError:
        return None, "unavailable: the lpips package is not installed (pip install lpips; it is never downloaded by avatar3d)"
    weights = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS
    if not weights.is_file():
        return None, f"unavailable: the AlexNet weights are not in {weights.parent} (avatar3d never downloads them)"
    try:
        net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception as e:  # a broken install must not stop the other metrics
        return None, f"unavailable: the lpips package failed to load ({type(e).__name__}: {e})"

    def metric(a: Tensor, b: Tensor) -> float:
        with torch.no_grad():
            x, y = (t.permute(2, 0, 1)[None].float() * 2 - 1 for t in (a, b))
            return float(net(x, y).mean())

    return metric, f"lpips {getattr(lpips, '__version__', '?')}, AlexNet weights {weights}"


def frame_scores(image: Tensor, target: Tensor, face: Tensor, lpips: Optional[Callable[[Tensor, Tensor], float]] = None) -> dict[str, float]:
    """The protocol's scores (module docstring) of one (H, W, 3) ``image`` against its ``target`` in [0, 1] with the
    (H, W) bool ``face`` region: psnr, ssim, face_psnr, face_ssim (NaN without face pixels), lpips (NaN without it)."""
    smap = ssim_map(image, target)[0].mean(-1)  # (H-10, W-10): the SSIM of the window centred at each inner pixel
    h = WINDOW // 2
    inner = face[h:-h, h:-h]
    has_face = bool(face.any())
    return {"psnr": float(psnr(image, target)), "ssim": float(smap.mean()),
            "face_psnr": float(psnr(image, target, mask=face)) if has_face else math.nan,
            "face_ssim": float(smap[inner].mean()) if bool(inner.any()) else math.nan,
            "lpips": lpips(image, target) if lpips is not None else math.nan}


# ---------------------------------------------------------------------------------------------- inputs
def _avatar(avatar_dir: Path) -> tuple[GaussianHead, dict[str, Any]]:
    """The avatar of ``avatar_dir`` and its avatar.pt record (without the fields), one sentence per problem."""
    if not (avatar_dir / AVATAR_FILE).is_file():
        raise BadInputError(f"{avatar_dir} is not an avatar directory (it has no {AVATAR_FILE}); "
                            f"make one with `avatar3d avatar train TRACK_DIR --out {avatar_dir}`")
    rec = read_avatar(avatar_dir)  # a corrupt or foreign file: its sentence
    return rec.avatar, rec.record


def _tracking(avatar_dir: Path, meta: dict[str, Any], track_dir: Optional[Path]) -> Path:
    """The tracking directory to score on: ``track_dir`` if given, else the one the avatar was trained on."""
    from ..data.sequence import PARAMS_FILE

    if track_dir is not None:
        if not (track_dir / PARAMS_FILE).is_file():
            raise BadInputError(f"{track_dir} is not a tracking directory (it has no {PARAMS_FILE}); pass the folder "
                                f"`avatar3d track --out` wrote")
        return track_dir
    recorded = meta.get("track_dir")
    if not recorded:
        raise BadInputError(f"{avatar_dir / 'avatar.pt'} does not record its tracking directory; pass it with --track TRACK_DIR")
    if not (Path(recorded) / PARAMS_FILE).is_file():
        raise BadInputError(f"the tracking directory this avatar was trained on, {recorded}, is gone; "
                            f"pass where it is now with --track TRACK_DIR")
    return Path(recorded)


def _check_model(frames: TrackedFrames, model: HeadModel) -> None:
    """The tracking's parameters must belong to the avatar's head model."""
    seq = frames.sequence
    family = str(seq.model).partition("=")[0].strip().lower()
    if family != model.name or seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
        raise BadInputError(f"{frames.directory} was tracked with the head model {seq.model!r} ({seq.expression.shape[1]} expressions, "
                            f"{seq.pose.shape[1]} joints), but this avatar is bound to {model.name!r} ({model.num_expression}, "
                            f"{model.num_joints}): evaluate it on a tracking of its own head model")


def _frames(frames: TrackedFrames, which: Union[str, Sequence[int]]) -> list[int]:
    if isinstance(which, str):
        if which not in ("test", "train"):
            raise ValueError(f"frames must be 'test', 'train' or frame numbers, got {which!r}")
        idx = [int(i) for i in getattr(frames.split(), which)]
    else:
        idx = [int(i) for i in which]
        bad = [i for i in idx if not 0 <= i < len(frames)]
        if bad:
            raise BadInputError(f"frame {bad[0]} is outside {frames.directory}'s {len(frames)} frames")
    if not idx:
        raise BadInputError(f"{frames.directory} has {len(frames)} frames and holds none out; an evaluation needs at least 1 "
                            f"held-out frame (a longer video: the split holds out the last 15%, at most half)")
    return idx


# ---------------------------------------------------------------------------------------------- the run
def evaluate_run(avatar_dir: Union[str, Path], track_dir: Union[str, Path, None] = None, frames: Union[str, Sequence[int]] = "test",
                 save_images: bool = False, backend: str = "auto") -> EvalResult:
    """Score the avatar of ``avatar_dir`` and the textured-mesh baseline by the protocol (module docstring) and write
    ``avatar_dir/metrics.json`` (and, with ``save_images``, ``avatar_dir/heldout/*.png``).

    Args:
        avatar_dir: a folder written by :func:`~.train.train_avatar`.
        track_dir: its tracking directory when it moved (default: the one ``avatar.pt`` records).
        frames: ``"test"`` (the protocol), ``"train"`` (how well it fits what it saw), or frame numbers.
        save_images: also write the held-out comparison images.
        backend: the Gaussian rasterizer's.

    Raises:
        BadInputError: one sentence: not an avatar directory, a corrupt avatar.pt, the tracking directory gone or of
        another head model, no held-out frame. RunDirectoryBusyError: another run holds the avatar directory.
    """
    from ..data.rundir import RunDirectory

    t0 = time.perf_counter()
    avatar_dir = Path(avatar_dir)
    if not avatar_dir.is_dir():
        raise BadInputError(f"{avatar_dir} is not an avatar directory (no such folder); "
                            f"make one with `avatar3d avatar train TRACK_DIR --out {avatar_dir}`")
    with RunDirectory(avatar_dir) as run:
        avatar, meta = _avatar(avatar_dir)
        track = _tracking(avatar_dir, meta, None if track_dir is None else Path(track_dir))
        tracked = TrackedFrames(track, meta.get("resolution"))
        _check_model(tracked, avatar.head_model)
        idx = _frames(tracked, frames)
        fs = load_frames(tracked, idx, "held-out")
        baseline, source = mesh_baseline(track, avatar.head_model, tracked, avatar.shape)
        lpips, lpips_note = lpips_metric()
        ours, theirs, panels = _score(avatar, fs, baseline, lpips, save_images, backend)
        result = EvalResult(avatar_dir, track, idx, [tracked.name(i) for i in idx], fs.width, ours, theirs, source, lpips_note,
                            avatar_dir / METRICS_FILE, [], 0.0)
        result.images = [avatar_dir / HELDOUT_DIR / f"{n}.png" for n in result.names] if save_images else []
        result.seconds = time.perf_counter() - t0
        _write(run, result, meta, frames if isinstance(frames, str) else "chosen", panels)
    return result


def _score(avatar: GaussianHead, fs: FrameSet, baseline: Optional[MeshBaseline], lpips, keep: bool,
           backend: str) -> tuple[Scores, Optional[Scores], list[bytes]]:
    """Render and score every frame of ``fs`` (avatar, baseline); the comparison images (PNG bytes) when ``keep``."""
    from ..data.atomic import png_bytes

    face_region = FaceRegion(avatar.head_model)
    rows_a, rows_b, panels = [], [], []
    for r in range(len(fs)):
        rows = torch.tensor([r])
        cam = Camera(fs.K[r], fs.world_to_cam[r], fs.width, fs.height)
        with torch.no_grad():
            img = avatar(fs.expression[rows], fs.pose[rows], fs.transl[rows], fs.camera(rows), backend=backend).image
            verts = avatar.head_model(avatar.shape[None], fs.expression[rows], fs.pose[rows], fs.transl[rows]).vertices[0]
        img = fs.seen(rows, img.clamp(0, 1))[0]
        tgt = fs.seen(rows, fs.targets(rows))[0]  # masks may cover the padding too: white in both, always
        face = face_region(verts, cam) & (fs.masks[r] > 127) & (fs.inside[r] > 127)
        rows_a.append(frame_scores(img, tgt, face, lpips))
        base = None
        if baseline is not None:
            base = fs.seen(rows, baseline(verts, cam, int(fs.indices[r]))[None])[0]
            rows_b.append(frame_scores(base, tgt, face, lpips))
        if keep:
            panels.append(png_bytes(_panel(tgt, img, base)))  # encoded at once: a long clip's panels stay small
    return _scores(rows_a, lpips is not None), (_scores(rows_b, lpips is not None) if baseline is not None else None), panels


def _scores(rows: list[dict[str, float]], with_lpips: bool) -> Scores:
    col = lambda k: np.asarray([r[k] for r in rows], np.float64)  # noqa: E731
    return Scores(col("psnr"), col("ssim"), col("face_psnr"), col("face_ssim"), col("lpips") if with_lpips else None)


def _panel(target: Tensor, image: Tensor, baseline: Optional[Tensor]) -> np.ndarray:
    """(H, 4W, 3) uint8: target | avatar | baseline (white when none) | the avatar's error (x4, inferno)."""
    import cv2

    u8 = lambda t: (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    err = ((image - target).abs().mean(-1) * 4).clamp(0, 1)
    heat = cv2.applyColorMap(u8(err), cv2.COLORMAP_INFERNO)[..., ::-1]
    base = u8(baseline) if baseline is not None else np.full_like(u8(image), 255)
    return np.concatenate([u8(target), u8(image), base, heat], 1)


# ---------------------------------------------------------------------------------------------- outputs
def metrics_json(result: EvalResult, meta: dict[str, Any], frames: str) -> dict[str, Any]:
    """The content of ``metrics.json``: rows, per-frame values, frames, protocol, provenance and versions."""
    import platform

    from .. import __version__

    per_frame = {"avatar": result.avatar.per_frame(), "baseline": result.baseline.per_frame() if result.baseline else None}
    return {"format": METRICS_FORMAT, "version": 1, "avatar_dir": str(result.avatar_dir.resolve()),
            "avatar": {"model": meta.get("model"), "steps": meta.get("steps"), "sha256": file_sha256(result.avatar_dir / AVATAR_FILE)},
            "track_dir": str(result.track_dir.resolve()), "resolution": result.resolution, "frame_set": frames,
            "frames": result.frames, "frame_names": result.names, "rows": result.rows(),
            "baseline": {"available": result.baseline is not None, "source": result.baseline_source},
            "lpips": {"available": result.avatar.lpips is not None, "note": result.lpips_note},
            "per_frame": per_frame, "protocol": PROTOCOL, "seconds": round(result.seconds, 3),
            "versions": {"avatar3d": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()}}


def _write(run, result: EvalResult, meta: dict[str, Any], frames: str, panels: list[bytes]) -> None:
    """metrics.json and the images at once (all or nothing), then the previous run's images that are not rewritten go."""
    from ..data.atomic import write_all

    files: dict[Path, Any] = {result.path: (json.dumps(metrics_json(result, meta, frames), indent=1, allow_nan=False) + "\n").encode()}
    files.update(zip(result.images, panels))
    old = (run.stage(STAGE) or {}).get("files", [])
    write_all(files)
    for rel in old:
        p = run.path / rel
        if p not in files and p.parent == run.path / HELDOUT_DIR and p.is_file():  # only our own images are ever removed
            p.unlink()
    run.record_stage(STAGE, list(files), {"frames": frames, "track_dir": str(result.track_dir), "images": bool(result.images)})
