"""What the viewer shows: a head model on its own, or a tracked sequence (model + per-frame params)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.frames import TrackedFrames
from ..data.sequence import TrackedSequence
from ..data.source import resolve_head_source
from ..errors import BadInputError
from .materials import SurfaceMaps, load_surface_maps
from .params import HeadParams

__all__ = ["ViewerSource", "open_source"]


@dataclass
class ViewerSource:
    """A model plus, for a tracked sequence, its frames (params, camera, image, mask) read through :class:`TrackedFrames`,
    and the appearance stage's PBR maps when there are some (``TRACK_DIR/appearance/`` or given)."""

    model: object  # HeadModel
    label: str
    frames: Optional[TrackedFrames] = None
    maps: Optional[SurfaceMaps] = None

    @property
    def sequence(self) -> Optional[TrackedSequence]:
        return self.frames.sequence if self.frames is not None else None

    @property
    def directory(self) -> Optional[Path]:
        return self.frames.directory if self.frames is not None else None

    @property
    def num_frames(self) -> int:
        return len(self.frames) if self.frames is not None else 0

    @property
    def fps(self) -> float:
        return float(self.sequence.fps) if self.sequence is not None else 30.0

    def _check_frame(self, i: int) -> int:
        if self.frames is None:
            raise BadInputError(f"{self.label} is a head model, not a tracked sequence; --frame needs a tracking output directory")
        if not 0 <= i < self.num_frames:
            raise BadInputError(f"frame {i} is outside the sequence (0..{self.num_frames - 1})")
        return i

    def frame_params(self, i: int) -> HeadParams:
        """Fitted parameters of frame ``i`` (pose in model joint order, radians), padded to the model's sizes."""
        f, m = self.frames.params(self._check_frame(i)), self.model
        p = HeadParams.neutral(m)
        p.shape[: min(len(f.shape), m.num_shape)] = f.shape[: m.num_shape]
        p.expression[: min(len(f.expression), m.num_expression)] = f.expression[: m.num_expression]
        p.pose[: min(len(f.pose), m.num_joints)] = f.pose[: m.num_joints]
        p.transl[:] = f.transl
        return p

    def frame_camera(self, i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``K`` (3, 3), OpenCV ``world_to_cam`` (4, 4), width, height of frame ``i``."""
        c = self.frames.camera(self._check_frame(i))
        return c.K.numpy().astype(np.float64), c.world_to_cam.numpy().astype(np.float64), c.width, c.height

    def frame_image(self, i: int) -> Optional[np.ndarray]:
        """(H, W, 3) uint8 source frame, or None when ``images/`` lacks it."""
        return self.frames.image(self._check_frame(i))

    def frame_mask(self, i: int) -> Optional[np.ndarray]:
        """(H, W) bool tracking mask, or None."""
        m = self.frames.mask(self._check_frame(i))
        return None if m is None else m > 127


def open_source(spec: str, model=None, appearance: Optional[str | Path] = None) -> ViewerSource:
    """``builtin`` / ``ict[=PATH]`` / ``flame=PATH`` or a tracking output directory.

    ``model`` overrides the head model (tests and scripts that build their own). ``appearance``: a folder
    written by ``avatar3d appearance`` (default: the tracking directory's ``appearance/`` when it has one).
    """
    from ..export.appearance import find_appearance

    src = resolve_head_source(spec)
    if model is None:
        from ..models import load_head_model

        model = load_head_model(src.model_spec)
    folder = appearance if appearance is not None else find_appearance(src.directory if src.sequence is not None else None)
    maps = load_surface_maps(folder, model.name) if folder is not None else None
    if src.sequence is None:
        return ViewerSource(model, str(spec), maps=maps)
    seq, p = src.sequence, src.directory
    if seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
        raise BadInputError(f"{p}: the sequence has {seq.expression.shape[1]} expressions and {seq.pose.shape[1]} joints, "
                            f"but the {model.name} head has {model.num_expression} and {model.num_joints}")
    return ViewerSource(model, str(p), TrackedFrames(p, sequence=seq), maps=maps)
