"""MediaPipe's view of a head model at fit time: the shipped response table and correction network.

The landmark fit compares detections with the landmarks MediaPipe *reports* for the model, not
with the mesh's own: a linear table (per expression and identity coefficient and per landmark, a
rest-frame displacement per unit coefficient, plus an offset of the neutral landmarks) and a small
network (:class:`DetectorCorrection`) that adds the non-linear rest as a function of the expressions
and the head and eye rotations. Both are measured on renders and trained offline by
:mod:`avatar3d.calibration` (which imports this module, never the other way round) and ship as
``tracking/data/detector_response_<model>.npz``; this module only reads that file and runs the network.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..models.base import HeadModel

__all__ = ["DetectorCorrection", "ROTATED_JOINTS", "RESPONSE_TABLES", "joint_indices", "load_response", "response_path"]

#: Joints whose rotations the correction sees (the head turn, and the eyes for the iris and lid points).
ROTATED_JOINTS = ("root", "eye_left", "eye_right")
#: The linear tables of a response file: ``expression`` (E, 478, 3), ``shape`` (S, 478, 3), ``offset`` (478, 3) metres.
RESPONSE_TABLES = ("expression", "shape", "offset")
_DATA = Path(__file__).resolve().parent / "data"
_warned: set = set()
_cache: dict = {}


class DetectorCorrection(nn.Module):
    """(B, 3, L) rest-frame landmark displacement (metres) from expressions and joint rotations.

    A two-layer SiLU network into ``rank`` coefficients of a learned displacement basis (the
    displacements are smooth over the face, and the narrow layer keeps the file and the fit's
    per-iteration cost small).

    Args:
        num_expression: E. joints: indices of :data:`ROTATED_JOINTS` in the model's joints.
        num_landmarks: L. hidden, rank: layer widths.
    """

    def __init__(self, num_expression: int, joints: tuple[int, ...], num_landmarks: int = 478, hidden: int = 256, rank: int = 64):
        super().__init__()
        self.register_buffer("joints", torch.as_tensor(joints, dtype=torch.long))
        self.num_landmarks = int(num_landmarks)
        F = num_expression + 9 * len(joints)
        self.net = nn.Sequential(nn.Linear(F, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, rank))
        self.basis = nn.Linear(rank, 3 * num_landmarks)
        nn.init.zeros_(self.basis.weight)  # starts at "no correction"
        nn.init.zeros_(self.basis.bias)

    #: output scale: the basis works in centimetres, which keeps its weights O(1)
    unit = 0.01

    def features(self, expression: Tensor, rot: Tensor) -> Tensor:
        """(B, E + 9 K) inputs: expressions and (R - I) of the rotated joints, from (B, E) and (B, J, 3, 3)."""
        R = rot[:, self.joints] - torch.eye(3, dtype=rot.dtype, device=rot.device)
        return torch.cat([expression, R.flatten(1)], 1)

    def forward(self, expression: Tensor, rot: Tensor) -> Tensor:
        """(B, 3, L) metres for expressions (B, E) and local joint rotations (B, J, 3, 3)."""
        return self.basis(self.net(self.features(expression, rot))).view(-1, 3, self.num_landmarks) * self.unit

    def to_arrays(self) -> dict[str, np.ndarray]:
        """float16 weights (and the sizes) for an ``.npz``: ~0.4 MB."""
        out = {f"correction.{k}": v.detach().numpy().astype(np.float16) for k, v in self.state_dict().items() if k != "joints"}
        out["correction.joints"] = self.joints.numpy()
        return out

    @classmethod
    def from_arrays(cls, z: dict) -> "DetectorCorrection":
        """Inverse of :meth:`to_arrays`."""
        w0, basis = z["correction.net.0.weight"], z["correction.basis.weight"]
        joints = tuple(int(j) for j in z["correction.joints"])
        m = cls(w0.shape[1] - 9 * len(joints), joints, basis.shape[0] // 3, w0.shape[0], basis.shape[1])
        state = {k[len("correction."):]: torch.as_tensor(np.asarray(v, np.float32)) for k, v in z.items()
                 if k.startswith("correction.") and k != "correction.joints"}
        m.load_state_dict({**state, "joints": m.joints})  # strict: a missing or extra weight is an error
        for p in m.parameters():
            p.requires_grad_(False)
        return m


def joint_indices(model: HeadModel) -> tuple[int, ...]:
    """Indices of :data:`ROTATED_JOINTS` in ``model``'s joints (a :class:`DetectorCorrection`'s ``joints``)."""
    missing = [j for j in ROTATED_JOINTS if j not in model.joint_names]
    if missing:
        raise ValueError(f"head model {model.name!r} has no joint(s) {missing} for the detector correction")
    return tuple(model.joint_names.index(j) for j in ROTATED_JOINTS)


def response_path(model_name: str) -> Path:
    """Where the shipped response table of ``model_name`` lives."""
    return _DATA / f"detector_response_{model_name}.npz"


def load_response(model: HeadModel, path: Optional[Path] = None, correction: bool = True) -> Optional[dict]:
    """The response tables of ``model`` (:data:`RESPONSE_TABLES`) as tensors (and, with ``correction``, its
    :class:`DetectorCorrection` under ``correction`` where the file has one), or None when none ships or
    they are stale (warns once)."""
    p = Path(path) if path is not None else response_path(model.name)
    if not p.is_file():
        return None
    key = (str(p), p.stat().st_mtime_ns)
    if key not in _cache:  # every fit and every project_landmarks call asks
        with np.load(p) as f:
            _cache[key] = {k: f[k] for k in f.files}
    z = _cache[key]
    P = int(model.lmk_faces.shape[0])
    ok = (str(z["version"]) == str(model.version) and [str(s) for s in z["expression_names"]] == list(model.expression_names)
          and z["expression"].shape == (model.num_expression, P, 3) and z["shape"].shape == (model.num_shape, P, 3))
    if not ok:
        if p not in _warned:
            _warned.add(p)
            warnings.warn(f"{p.name} was measured on another version of head model {model.name!r}; the landmark fit uses the mesh's own "
                          f"landmark motion (regenerate: python -m avatar3d.calibration {model.name})", stacklevel=2)
        return None
    out = {k: torch.as_tensor(z[k], dtype=torch.float32) for k in RESPONSE_TABLES}
    if correction and "correction.joints" in z:
        if "correction" not in z:  # built once per file: the network is shared by every head that loads it
            z["correction"] = DetectorCorrection.from_arrays(z)
        out["correction"] = z["correction"]
    return out
