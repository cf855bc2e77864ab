"""The capture stage of ``avatar3d track``: frames -> square crops, landmarks and masks on disk.

Two streaming passes over the source (memory stays flat with video length):

1. decode every frame, run the 478-point face mesh on the full frame, keep only the landmarks;
2. from all landmarks, compute a smoothed square crop per frame, decode again, cut + resize the
   crop, segment it, and write ``images/NNNNNN.png`` and ``masks/NNNNNN.png``.

Frames where no face is found are flagged (``valid = False``) and their landmarks interpolated
from neighbouring frames, never dropped. The result is cached in ``DIR/capture.npz`` so later
stages (or a resumed run) can skip this work. With an output directory the stage is recorded in its
manifest (:class:`~avatar3d.data.rundir.RunDirectory`): a redone capture first removes the crops and
masks of the previous one, so a rerun with fewer frames leaves none behind.

A video that ends before the frame count its header announces (a file cut off part-way) is captured up
to the cut; :attr:`CaptureResult.frames_expected` keeps the announced count so the caller can say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.atomic import atomic_path
from ..data.frames import CAPTURE_FILE, inside_mask
from ..data.rundir import RunDirectory
from ..errors import BadInputError
from .crop import apply_crop, compute_crops, interpolate_invalid, to_crop_coords
from .landmarks import NUM_LANDMARKS, FaceLandmarker
from .video import FrameSource, open_source

__all__ = ["CaptureResult", "run_capture", "CAPTURE_FILE"]


@dataclass
class CaptureResult:
    """Everything later stages need from capture (N frames, crop side ``resolution`` pixels)."""

    landmarks: np.ndarray  #: (N, 478, 3) in crop pixels (interpolated where not valid)
    valid: np.ndarray  #: (N,) bool, False where no face was detected
    boxes: np.ndarray  #: (N, 3) int crop (x0, y0, size) in source pixels
    source_size: tuple[int, int]  #: (width, height) of upright source frames
    resolution: int
    fps: float
    names: list[str]
    times: np.ndarray  #: (N,) seconds
    num_faces: np.ndarray  #: (N,) faces MediaPipe saw in each frame
    source: str = ""
    timings: dict = field(default_factory=dict)  #: stage -> seconds
    #: frames the source announced (header count after --fps/--max-frames); more than ``num_frames`` when cut off
    frames_expected: int = 0

    def __post_init__(self) -> None:
        self.frames_expected = max(int(self.frames_expected), self.num_frames)

    @property
    def num_frames(self) -> int:
        return len(self.valid)

    @property
    def ended_early(self) -> bool:
        """The source held fewer frames than it announced (e.g. a video cut off part-way)."""
        return self.frames_expected > self.num_frames

    def shortfall_message(self) -> Optional[str]:
        """One sentence saying that the source ended early, with the frames expected and found (None if not)."""
        if not self.ended_early:
            return None
        return (f"{self.source} ended after {self.num_frames} of the {self.frames_expected} frames it announces (the file is cut off); "
                f"tracked the {self.num_frames} frames it holds")

    def save(self, path: str | Path) -> None:
        import json

        meta = dict(source_size=list(self.source_size), resolution=self.resolution, fps=self.fps, names=self.names,
                    source=self.source, timings=self.timings, frames_expected=self.frames_expected)
        with atomic_path(path) as tmp:
            np.savez(tmp, landmarks=self.landmarks.astype(np.float32), valid=self.valid, boxes=self.boxes,
                     times=self.times, num_faces=self.num_faces, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: str | Path) -> "CaptureResult":
        import json

        z = np.load(path, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return cls(landmarks=z["landmarks"], valid=z["valid"].astype(bool), boxes=z["boxes"], times=z["times"],
                   num_faces=z["num_faces"], source_size=tuple(meta["source_size"]), resolution=int(meta["resolution"]),
                   fps=float(meta["fps"]), names=list(meta["names"]), source=meta.get("source", ""), timings=meta.get("timings", {}),
                   frames_expected=int(meta.get("frames_expected", 0)))


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, dynamic_ncols=True)


def detect_landmarks(src: FrameSource, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Pass 1: (N, 478, 3) source-pixel landmarks, (N,) valid, (N,) faces seen, names, (N,) times."""
    lmks, valid, nfaces, names, times = [], [], [], [], []
    video = src.info.kind == "video"
    with FaceLandmarker(video=video, small_faces=True) as fl, _progress(len(src), "landmarks", progress) as bar:
        for fr in src:
            p = fl(fr.image)
            if fr.image.shape[:2] != (src.info.height, src.info.width):
                raise BadInputError(f"{src.path}: frame {fr.name} is {fr.image.shape[1]}x{fr.image.shape[0]}, but the first frame is "
                                    f"{src.info.width}x{src.info.height}; all images of a sequence must have the same size")
            valid.append(p is not None)
            lmks.append(p if p is not None else np.zeros((NUM_LANDMARKS, 3), np.float32))
            nfaces.append(fl.num_faces_last)
            names.append(fr.name)
            times.append(fr.time)
            bar.update(1)
    if not lmks:
        raise BadInputError(f"{src.path} yielded no frames")
    return np.stack(lmks), np.array(valid, bool), np.array(nfaces, np.int32), names, np.array(times, np.float64)


def run_capture(
    source: str | Path | FrameSource,
    out_dir: Optional[str | Path] = None,
    resolution: int = 512,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    write_images: bool = True,
    progress: bool = True,
    resume: bool = True,
    run: Optional[RunDirectory] = None,
) -> CaptureResult:
    """Run the capture stage (see module docstring) and return its :class:`CaptureResult`.

    Args:
        source: video file, image folder, image, or an open :class:`FrameSource`.
        out_dir: where ``images/``, ``masks/`` and ``capture.npz`` go (None: nothing written).
        resolution: crop side in pixels.
        write_images: False skips pass 2 (crops and masks), e.g. for landmark-only benchmarks.
        resume: reuse ``out_dir/capture.npz`` when it matches this source and resolution.
        run: the (locked) run directory of ``out_dir``, whose manifest records the stage (default: one
            opened on ``out_dir`` without a lock).
    Raises:
        BadInputError: no face in any frame, or an unusable source.
    """
    if resolution < 64:
        raise ValueError(f"resolution must be at least 64 pixels, got {resolution}")
    src = source if isinstance(source, FrameSource) else open_source(source, fps=fps, max_frames=max_frames)
    out = Path(out_dir) if out_dir is not None else None
    cache = out / CAPTURE_FILE if out is not None else None
    if resume and cache is not None and cache.is_file():
        try:
            prev = CaptureResult.load(cache)
            if prev.source == str(src.path) and prev.resolution == resolution and len(src) in (prev.num_frames, prev.frames_expected) and \
                    (not write_images or (out / "masks" / f"{prev.names[-1]}.png").is_file()):
                return prev
        except Exception:
            pass  # stale or partial cache: recompute
    if out is not None:
        run = run or RunDirectory(out)
        settings = dict(source=str(src.path), resolution=resolution, fps=fps, max_frames=max_frames, write_images=write_images)
        run.replace_stage("capture", dirs=("images", "masks") if write_images else (), settings=settings)
    timings: dict = {}
    t0 = time.perf_counter()
    lmk_src, valid, nfaces, names, times = detect_landmarks(src, progress)
    timings["landmarks"] = time.perf_counter() - t0
    N = len(valid)
    if not valid.any():
        raise BadInputError(f"no face found in any of the {N} frame(s) of {src.path}")
    boxes = compute_crops(lmk_src, valid, src.info.fps)
    lmk_src = interpolate_invalid(lmk_src, valid).astype(np.float32)
    lmk = to_crop_coords(lmk_src, boxes, resolution).astype(np.float32)
    res = CaptureResult(landmarks=lmk, valid=valid, boxes=boxes, source_size=(src.info.width, src.info.height), resolution=resolution,
                        fps=src.info.fps, names=names, times=times, num_faces=nfaces, source=str(src.path), timings=timings,
                        frames_expected=src.expected_frames(N))
    if out is not None and write_images:
        t1 = time.perf_counter()
        write_crops(src, res, out, progress)
        timings["crops_masks"] = time.perf_counter() - t1
    if cache is not None:
        out.mkdir(parents=True, exist_ok=True)
        res.save(cache)
        crops = [f"{d}/{n}.png" for n in names for d in ("images", "masks")] if write_images else []
        run.record_stage("capture", [CAPTURE_FILE, *crops])
    return res


def write_crops(src: FrameSource, cap: CaptureResult, out: Path, progress: bool = True) -> None:
    """Pass 2: write ``images/`` (RGB crops) and ``masks/`` (8-bit foreground) for every frame."""
    import cv2

    from .segmentation import Segmenter

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fast: these are working files, not archives
    with Segmenter() as seg, _progress(cap.num_frames, "crops+masks", progress) as bar:
        for i, fr in enumerate(src):
            if i >= cap.num_frames:
                break
            crop = apply_crop(fr.image, cap.boxes[i], cap.resolution)
            mask = seg(crop) * inside_mask(cap.boxes[i], cap.source_size, cap.resolution)
            cv2.imwrite(str(out / "images" / f"{cap.names[i]}.png"), crop[..., ::-1], png)
            cv2.imwrite(str(out / "masks" / f"{cap.names[i]}.png"), np.round(mask * 255).astype(np.uint8), png)
            bar.update(1)
