"""What the viewer shows: a head model on its own, or a tracked sequence (model + per-frame params)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInputError
from ..data.sequence import PARAMS_FILE, TrackedSequence
from .params import HeadParams

__all__ = ["ViewerSource", "open_source"]


@dataclass
class ViewerSource:
    """A model plus, for a tracked sequence, its frames (params, camera, image, mask)."""

    model: object  # HeadModel
    label: str
    sequence: Optional[TrackedSequence] = None
    directory: Optional[Path] = None

    @property
    def num_frames(self) -> int:
        return self.sequence.num_frames if self.sequence is not None else 0

    @property
    def fps(self) -> float:
        return float(self.sequence.fps) if self.sequence is not None else 30.0

    def _check_frame(self, i: int) -> int:
        if self.sequence is None:
            raise BadInputError(f"{self.label} is a head model, not a tracked sequence; --frame needs a tracking output directory")
        if not 0 <= i < self.num_frames:
            raise BadInputError(f"frame {i} is outside the sequence (0..{self.num_frames - 1})")
        return i

    def frame_params(self, i: int) -> HeadParams:
        """Fitted parameters of frame ``i`` (pose in model joint order, radians)."""
        i, s, m = self._check_frame(i), self.sequence, self.model
        p = HeadParams.neutral(m)
        p.shape[: min(len(s.shape), m.num_shape)] = s.shape[: m.num_shape]
        p.expression[: min(s.expression.shape[1], m.num_expression)] = s.expression[i, : m.num_expression]
        p.pose[: min(s.pose.shape[1], m.num_joints)] = s.pose[i, : m.num_joints]
        p.transl[:] = s.transl[i]
        return p

    def frame_camera(self, i: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """``K`` (3, 3), OpenCV ``world_to_cam`` (4, 4), width, height of frame ``i``."""
        i, s = self._check_frame(i), self.sequence
        return s.K[i].astype(np.float64), s.world_to_cam[i].astype(np.float64), int(s.width), int(s.height)

    def _frame_file(self, sub: str, i: int) -> Optional[Path]:
        if self.directory is None:
            return None
        names = self.sequence.frame_names
        stem = Path(names[i]).stem if i < len(names) else f"{i:06d}"
        for cand in (self.directory / sub / f"{stem}.png", self.directory / sub / f"{i:06d}.png", self.directory / sub / f"{stem}.jpg"):
            if cand.is_file():
                return cand
        return None

    def frame_image(self, i: int) -> Optional[np.ndarray]:
        """(H, W, 3) uint8 source frame, or None when ``images/`` lacks it."""
        from PIL import Image

        f = self._frame_file("images", self._check_frame(i))
        return np.asarray(Image.open(f).convert("RGB")) if f else None

    def frame_mask(self, i: int) -> Optional[np.ndarray]:
        """(H, W) bool tracking mask, or None."""
        from PIL import Image

        f = self._frame_file("masks", self._check_frame(i))
        return (np.asarray(Image.open(f).convert("L")) > 127) if f else None


def open_source(spec: str, model=None) -> ViewerSource:
    """``builtin`` / ``ict[=PATH]`` / ``flame=PATH`` or a tracking output directory.

    ``model`` overrides the head model (tests and scripts that build their own).
    """
    p = Path(str(spec))
    if p.is_dir():
        if not (p / PARAMS_FILE).is_file():
            raise BadInputError(f"{p} is a directory but not a tracked sequence (no {PARAMS_FILE}); expected a model name (builtin, ict, flame=PATH) or an 'avatar3d track' output directory")
        seq = TrackedSequence.load(p)
        if model is None:
            from ..models import load_head_model

            model = load_head_model(seq.model)
        if seq.expression.shape[1] != model.num_expression or seq.pose.shape[1] != model.num_joints:
            raise BadInputError(f"{p}: the sequence has {seq.expression.shape[1]} expressions and {seq.pose.shape[1]} joints, "
                                f"but the {model.name} head has {model.num_expression} and {model.num_joints}")
        return ViewerSource(model, str(p), seq, p)
    if model is None:
        from ..models import load_head_model

        model = load_head_model(str(spec))
    return ViewerSource(model, str(spec))
