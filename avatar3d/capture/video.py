"""Streaming frame sources: a video file, a folder of images, or one image.

Frames come out one at a time as upright RGB ``uint8`` arrays (H, W, 3), so memory does not grow
with the length of the video. Video rotation metadata (the display-matrix side data phones write
for portrait clips) is honoured, so portrait videos come out upright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import BadInputError, MissingFileError

__all__ = ["Frame", "SourceInfo", "FrameSource", "open_source", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")


@dataclass
class Frame:
    """One decoded frame: ``image`` is upright RGB uint8 (H, W, 3); ``time`` in seconds."""

    index: int  #: 0-based index in the output sequence (after --fps / --max-frames)
    time: float
    image: np.ndarray
    name: str  #: e.g. "000012" for videos, the file stem for images


@dataclass
class SourceInfo:
    """What we know about a source before decoding it."""

    path: Path
    kind: str  #: "video", "images" (folder) or "image"
    width: int  #: upright width in pixels
    height: int  #: upright height in pixels
    fps: float  #: output frame rate (source rate, or the requested --fps)
    num_frames: int  #: frames the source will yield (estimate for videos without a frame count)
    rotation: int  #: counter-clockwise degrees applied to make frames upright (0, 90, 180, 270)
    #: ``num_frames`` is the header's count (not estimated from the duration or the --fps subsampling)
    count_exact: bool = True


def upright(image: np.ndarray, rotation_ccw: float) -> np.ndarray:
    """Rotate (H, W, C) ``image`` counter-clockwise by ``rotation_ccw`` degrees (multiple of 90)."""
    k = int(round(rotation_ccw / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _read_image(p: Path) -> np.ndarray:
    """Upright RGB uint8 image (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise BadInputError(f"{p} is not a readable image ({e})") from None


class FrameSource:
    """Iterate the frames of ``path`` (video file, image folder or image), streaming.

    Args:
        path: a video file (mp4/mov/webm/...), a folder of images (sorted by name), or an image.
        fps: output frame rate; frames are subsampled by timestamp (None keeps every frame).
            Ignored for images (each image is one frame at ``fps`` or 25).
        max_frames: stop after this many output frames (None: all).
    """

    def __init__(self, path: str | Path, fps: Optional[float] = None, max_frames: Optional[int] = None):
        self.path = Path(path)
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be a positive number, got {fps}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.fps_request = fps
        self.max_frames = max_frames
        if not self.path.exists():
            raise MissingFileError(self.path, "Pass a video file (mp4/mov/webm), a folder of images, or an image.")
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not self._files:
                raise BadInputError(f"folder {self.path} contains no images (expected {', '.join(IMAGE_EXTENSIONS)})")
            self.info = self._image_info("images")
        elif self.path.suffix.lower() in IMAGE_EXTENSIONS:
            self._files = [self.path]
            self.info = self._image_info("image")
        else:
            if self.path.stat().st_size == 0:
                raise BadInputError(f"{self.path} is empty (zero bytes): not a video")
            self._files = []
            self.info = self._probe_video()

    # ------------------------------------------------------------------ images
    def _image_info(self, kind: str) -> SourceInfo:
        first = _read_image(self._files[0])
        n = len(self._files) if self.max_frames is None else min(len(self._files), self.max_frames)
        return SourceInfo(self.path, kind, first.shape[1], first.shape[0], float(self.fps_request or 25.0), n, 0)

    # ------------------------------------------------------------------ video
    def _open(self):
        import av

        try:
            container = av.open(str(self.path))
        except Exception as e:  # av raises InvalidDataError, FileNotFoundError, ... with ffmpeg text
            raise BadInputError(f"{self.path} is not a readable video or image ({type(e).__name__}: {e})") from None
        if not container.streams.video:
            container.close()
            raise BadInputError(f"{self.path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-threaded decoding: a large speed-up on 2 cores
        return container, stream

    def _probe_video(self) -> SourceInfo:
        container, stream = self._open()
        try:
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            declared = int(stream.frames or 0)  # read while the container is open (PyAV >= 18.1.1 refuses after close)
            n_src = declared
            if n_src <= 0 and stream.duration and stream.time_base:
                n_src = int(round(float(stream.duration * stream.time_base) * rate))
            # Decode the first frame: it proves the file is decodable and gives the rotation.
            first = None
            try:
                for first in container.decode(stream):
                    break
            except Exception as e:
                raise BadInputError(f"{self.path} could not be decoded ({type(e).__name__}: {e})") from None
            if first is None:
                raise BadInputError(f"{self.path} contains no video frames (zero-length video)")
            rot = int(round(float(getattr(first, "rotation", 0) or 0) / 90.0)) % 4 * 90
            w, h = first.width, first.height
            if rot in (90, 270):
                w, h = h, w
        finally:
            container.close()
        fps = float(self.fps_request) if self.fps_request else rate
        n = max(1, n_src)
        if self.fps_request and self.fps_request < rate:
            n = max(1, int(math.ceil(n_src * self.fps_request / rate)))
        exact = declared > 0 and not (self.fps_request and self.fps_request < rate)
        if self.max_frames is not None:
            exact = exact or n > self.max_frames + 1  # a cap well below the (estimated) count is reached exactly
            n = min(n, self.max_frames)
        self._src_rate = rate
        return SourceInfo(self.path, "video", w, h, fps, n, rot, exact)

    def expected_frames(self, found: int) -> int:
        """The frame count this source announced, given that iterating it yielded ``found`` frames.

        ``found`` itself when they agree or differ by one frame on an estimated count (a duration
        rounding, not a cut-off file); otherwise :attr:`SourceInfo.num_frames`.
        """
        n = self.info.num_frames
        return n if found < n - (0 if self.info.count_exact else 1) else found

    def __len__(self) -> int:
        return self.info.num_frames

    def __iter__(self) -> Iterator[Frame]:
        if self.info.kind != "video":
            for i, p in enumerate(self._files):
                if self.max_frames is not None and i >= self.max_frames:
                    return
                yield Frame(i, i / self.info.fps, _read_image(p), p.stem)
            return
        container, stream = self._open()
        out = 0
        step = 1.0 / self.fps_request if self.fps_request and self.fps_request < self._src_rate else None
        next_t = 0.0
        t0: Optional[float] = None
        try:
            for k, fr in enumerate(container.decode(stream)):
                t = float(fr.time) if fr.time is not None else k / self._src_rate
                if t0 is None:
                    t0 = t
                t -= t0
                if step is not None:
                    # Keep the first frame at or after each output tick (half a source frame of slack).
                    if t + 0.5 / self._src_rate < next_t:
                        continue
                    next_t += step * max(1, math.floor((t + 0.5 / self._src_rate - next_t) / step) + 1)
                img = upright(fr.to_ndarray(format="rgb24"), float(getattr(fr, "rotation", 0) or 0))
                yield Frame(out, t, img, f"{out:06d}")
                out += 1
                if self.max_frames is not None and out >= self.max_frames:
                    break
        except BadInputError:
            raise
        except Exception as e:
            if out == 0:
                raise BadInputError(f"{self.path} could not be decoded ({type(e).__name__}: {e})") from None
            # A truncated file: keep what decoded (the caller sees fewer frames than announced).
        finally:
            container.close()


def open_source(path: str | Path, fps: Optional[float] = None, max_frames: Optional[int] = None) -> FrameSource:
    """Open a video file, image folder or image as a :class:`FrameSource` (clear error if unusable)."""
    return FrameSource(path, fps=fps, max_frames=max_frames)
