"""A tracked sequence on disk: what ``avatar3d track`` writes and export/viewer/avatar read.

Layout of a tracking output directory ``DIR/``::

    images/000000.png ...     the square crop per frame (RGB)
    masks/000000.png ...      foreground mask per frame (8-bit)
    transforms.json           per-frame intrinsics + camera-to-world, NeRF/VHAP convention
    params.npz                model parameters (see :class:`TrackedSequence`)
    overlay.mp4, metrics.json

Conventions: the head model lives in its own frame (metres, +Y up, face towards +Z). The camera is
OpenCV-style (x right, y down, z forward) with intrinsics ``K`` in pixels of the crop; per-frame head
motion is stored as the model's root rotation + translation (``pose[:, 0]``, ``transl``), so the
camera is fixed (``world_to_cam``) unless the tracker moves it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BadInputError
from .atomic import atomic_path

PARAMS_FILE = "params.npz"
TRANSFORMS_FILE = "transforms.json"


@dataclass
class TrackedSequence:
    """Parameters of a head model fitted to N frames (arrays are NumPy, float32)."""

    model: str  #: spec given to ``load_head_model`` ("builtin", "ict", "flame=PATH")
    model_version: str
    fps: float
    shape: np.ndarray  #: (S,) identity shared by all frames
    expression: np.ndarray  #: (N, E)
    pose: np.ndarray  #: (N, J, 3) axis-angle per joint (model.joint_names order); [:, 0] is head rotation
    transl: np.ndarray  #: (N, 3) metres
    K: np.ndarray  #: (N, 3, 3) intrinsics in crop pixels, pixel centres at integers (the library's convention: no conversion)
    world_to_cam: np.ndarray  #: (N, 4, 4) OpenCV extrinsics
    width: int
    height: int
    joint_names: list[str] = field(default_factory=list)
    expression_names: list[str] = field(default_factory=list)
    valid: Optional[np.ndarray] = None  #: (N,) bool; False where detection failed (values interpolated)
    lighting: Optional[np.ndarray] = None  #: (9, 3) SH lighting, when photometric refinement ran
    frame_names: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.expression.shape[0])

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(getattr(self, k)) for k in ("shape", "expression", "pose", "transl", "K", "world_to_cam")}
        if self.valid is not None:
            arrays["valid"] = np.asarray(self.valid, bool)
        if self.lighting is not None:
            arrays["lighting"] = np.asarray(self.lighting, np.float32)
        meta = dict(model=self.model, model_version=self.model_version, fps=float(self.fps), width=int(self.width),
                    height=int(self.height), joint_names=list(self.joint_names), expression_names=list(self.expression_names),
                    frame_names=list(self.frame_names))
        with atomic_path(d / PARAMS_FILE) as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        return d / PARAMS_FILE

    @classmethod
    def load(cls, directory: str | Path) -> "TrackedSequence":
        d = Path(directory)
        p = d / PARAMS_FILE
        if not d.is_dir() or not p.is_file():
            raise BadInputError(f"{d} is not a tracking output directory (no {PARAMS_FILE}); create one with 'avatar3d track VIDEO --out {d}'")
        try:
            z = np.load(p, allow_pickle=False)
            meta = json.loads(str(z["meta"]))
            arrs = {k: z[k].astype(np.float32) for k in ("shape", "expression", "pose", "transl", "K", "world_to_cam")}
            valid = z["valid"].astype(bool) if "valid" in z.files else None
            lighting = z["lighting"] if "lighting" in z.files else None
        except Exception as e:
            raise BadInputError(f"{p} is corrupt or not an avatar3d params file ({type(e).__name__}: {e})") from None
        seq = cls(valid=valid, lighting=lighting, **meta, **arrs)
        N = seq.num_frames
        for k, want in (("pose", 3), ("transl", 2), ("K", 3), ("world_to_cam", 3)):
            a = getattr(seq, k)
            if a.ndim != want or a.shape[0] != N:
                raise BadInputError(f"{p}: '{k}' has shape {a.shape}, expected {N} frames")
        return seq
