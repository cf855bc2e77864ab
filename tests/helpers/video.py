"""Small H.264 test videos written with PyAV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = 10, rotation: Optional[float] = None,
                faststart: bool = False) -> Path:
    """Encode (H, W, 3) uint8 RGB ``frames`` as an H.264 mp4 at ``fps``; return ``path``.

    ``rotation`` (degrees) sets the stream's display rotation; ``faststart`` puts the index at the
    front of the file. No frames gives an empty 32 x 32 video.
    """
    c = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    s = c.add_stream("libx264", rate=fps)
    s.height, s.width = frames[0].shape[:2] if len(frames) else (32, 32)
    s.pix_fmt = "yuv420p"
    if rotation is not None:
        s.set_display_rotation(rotation)
    for f in frames:
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path
