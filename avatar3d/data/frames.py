"""Frames of a tracking directory, read lazily: image, mask, camera and fitted parameters per frame.

:class:`TrackedFrames` is what trainers, evaluations, the viewer and the photometric stage read a
tracking directory through (layout in :mod:`avatar3d.data.sequence`). The per-frame arrays of
``params.npz`` are small and loaded once; images and masks are decoded only when a frame is accessed,
so memory does not grow with the number of frames. The cameras come from ``params.npz`` (the source of
``transforms.json``, which holds the same cameras in the NeRF convention for other tools).

Optional downscaling (``resolution``) resizes images and masks with area averaging and scales the
intrinsics to match, keeping the pixel-centre convention: a point at crop pixel ``x`` (centres at
integers) lands at ``(x + 0.5) * s - 0.5`` in the resized image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple, Optional

import numpy as np

from ..errors import BadInputError
from ..render.camera import Camera, scale_intrinsics
from .sequence import TrackedSequence
from .split import Split, train_test_split

__all__ = ["FrameParams", "TrackedFrame", "TrackedFrames", "inside_mask", "CAPTURE_FILE"]

#: the capture stage's record of each crop's box in the source video (:mod:`avatar3d.capture.stage`)
CAPTURE_FILE = "capture.npz"


class FrameParams(NamedTuple):
    """Fitted head-model parameters of one frame (float32, the sequence's own sizes)."""

    shape: np.ndarray  #: (S,) identity, shared by all frames
    expression: np.ndarray  #: (E,)
    pose: np.ndarray  #: (J, 3) axis-angle per joint; [0] is the head rotation
    transl: np.ndarray  #: (3,) metres


class TrackedFrame(NamedTuple):
    """Everything about frame ``index``: ``image`` (H, W, 3) uint8 RGB and ``mask`` (H, W) uint8 (255 =
    foreground), None when the directory lacks the file."""

    index: int
    name: str
    image: Optional[np.ndarray]
    mask: Optional[np.ndarray]
    camera: Camera  #: float32, OpenCV axes, pixel centres at integers, in pixels of the (resized) image
    params: FrameParams
    valid: bool  #: False where the face was not detected (parameters interpolated)


class TrackedFrames:
    """The frames of the tracking directory ``directory`` (what ``avatar3d track --out`` wrote).

    Args:
        directory: a tracking output directory (``params.npz``, ``images/``, ``masks/``).
        resolution: resize images and masks to this width (height in proportion) and scale the
            intrinsics to match; None keeps the crop size.
        sequence: the directory's :class:`TrackedSequence` when the caller already holds it (e.g. the
            tracker, between saving and refining); loaded from ``params.npz`` otherwise.

    ``len(frames)``, ``frames[i]`` (a :class:`TrackedFrame`, decoded on access) and ``for f in frames``;
    :meth:`image`, :meth:`mask`, :meth:`camera` and :meth:`params` read one part of a frame; :meth:`split`
    gives the train/test frames every trainer and evaluation uses.
    """

    def __init__(self, directory: str | Path, resolution: Optional[int] = None, sequence: Optional[TrackedSequence] = None):
        self.directory = Path(directory)
        self.sequence = sequence if sequence is not None else TrackedSequence.load(self.directory)
        seq = self.sequence
        if resolution is not None and resolution < 1:
            raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
        self.scale = 1.0 if resolution is None else resolution / seq.width
        self.width = int(seq.width) if resolution is None else int(resolution)
        self.height = int(seq.height) if resolution is None else int(round(seq.height * self.scale))
        #: (N, 3, 3) intrinsics of every frame at this resolution (pixel centres at integers)
        self.K = seq.K if resolution is None else scale_intrinsics(seq.K, self.scale)

    def __len__(self) -> int:
        return self.sequence.num_frames

    def __getitem__(self, i: int) -> TrackedFrame:
        i = self._check(i)
        valid = True if self.sequence.valid is None else bool(self.sequence.valid[i])
        return TrackedFrame(i, self.name(i), self.image(i), self.mask(i), self.camera(i), self.params(i), valid)

    def __iter__(self) -> Iterator[TrackedFrame]:
        for i in range(len(self)):
            yield self[i]

    def split(self) -> Split:
        """The train/test frame indices of this sequence (:func:`~avatar3d.data.split.train_test_split`)."""
        return train_test_split(len(self))

    def _check(self, i: int) -> int:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"frame {i} is outside the sequence (0..{n - 1})")
        return int(i) % n

    def name(self, i: int) -> str:
        """The frame's file stem (``images/<name>.png``)."""
        i = self._check(i)
        names = self.sequence.frame_names
        return Path(names[i]).stem if i < len(names) else f"{i:06d}"

    def camera(self, i: int) -> Camera:
        i = self._check(i)
        return Camera(self.K[i], self.sequence.world_to_cam[i], self.width, self.height)

    def params(self, i: int) -> FrameParams:
        i, s = self._check(i), self.sequence
        return FrameParams(s.shape, s.expression[i], s.pose[i], s.transl[i])

    def file(self, sub: str, i: int) -> Optional[Path]:
        """``DIR/sub/<name>.png`` (or ``<index>.png``, ``<name>.jpg``) of frame ``i``; None when absent."""
        i = self._check(i)
        stem = self.name(i)
        for cand in (self.directory / sub / f"{stem}.png", self.directory / sub / f"{i:06d}.png", self.directory / sub / f"{stem}.jpg"):
            if cand.is_file():
                return cand
        return None

    def image(self, i: int) -> Optional[np.ndarray]:
        """(H, W, 3) uint8 RGB crop of frame ``i`` at this reader's size, or None when ``images/`` lacks it."""
        f = self.file("images", i)
        return None if f is None else np.ascontiguousarray(self._resize(_read(f, gray=False)[..., ::-1]))

    def mask(self, i: int) -> Optional[np.ndarray]:
        """(H, W) uint8 foreground mask of frame ``i`` (0..255) at this reader's size, or None."""
        f = self.file("masks", i)
        return None if f is None else self._resize(_read(f, gray=True))

    def inside(self, i: int) -> Optional[np.ndarray]:
        """(H, W) uint8 255 where frame ``i``'s crop shows the source video, 0 on the black padding of a crop that
        reaches past the video's edge (nothing was seen there: trainers and scores ignore it); None when the
        directory has no ``capture.npz`` (a crop without padding, e.g. a rendered capture)."""
        i = self._check(i)
        boxes = self._boxes()
        if boxes is None:
            return None
        res, source_size, box = boxes
        return self._resize((inside_mask(box[i], source_size, res) * 255).astype(np.uint8))

    def _boxes(self) -> Optional[tuple[int, tuple[int, int], np.ndarray]]:
        """(crop resolution, source (W, H), (N, 3) boxes) from ``capture.npz``, read once; None when absent."""
        if not hasattr(self, "_box_cache"):
            self._box_cache = None
            path = self.directory / CAPTURE_FILE
            if path.is_file():
                import json

                with np.load(path) as z:
                    meta = json.loads(str(z["meta"]))
                    boxes = np.asarray(z["boxes"])
                if len(boxes) == len(self) and int(meta["resolution"]) == self.sequence.width:
                    self._box_cache = (int(meta["resolution"]), tuple(meta["source_size"]), boxes)
        return self._box_cache

    def _resize(self, a: np.ndarray) -> np.ndarray:
        if a.shape[:2] == (self.height, self.width):
            return a
        import cv2

        return cv2.resize(a, (self.width, self.height), interpolation=cv2.INTER_AREA)


def inside_mask(box: np.ndarray, source_size: tuple[int, int], resolution: int) -> np.ndarray:
    """(R, R) float32 1 where the crop ``box`` = (x0, y0, size) of a source of ``source_size`` (W, H) pixels shows
    the source image, 0 on the black padding (no person there)."""
    x0, y0, size = (int(v) for v in box)
    W, H = source_size
    s = resolution / size
    m = np.zeros((resolution, resolution), np.float32)
    c0, r0 = int(np.floor(max(0, -x0) * s)), int(np.floor(max(0, -y0) * s))
    c1, r1 = int(np.ceil(min(size, W - x0) * s)), int(np.ceil(min(size, H - y0) * s))
    m[max(0, r0) : max(0, r1), max(0, c0) : max(0, c1)] = 1.0
    return m


def _read(path: Path, gray: bool) -> np.ndarray:
    """Decode one image file (BGR or grayscale uint8), one clear error when unreadable."""
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
    if a is None:
        raise BadInputError(f"{path} is not a readable image")
    return a
