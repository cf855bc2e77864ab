"""Viewer parameters: named sliders over a :class:`HeadModel` and parsing of ``--set`` / files.

Slider names (the ones ``--set NAME=VALUE`` and parameter files accept):

* every expression blendshape by its model name (``jawOpen``, ``browInnerUp``, ...), grouped by
  face part for the UI (brows, eyes, cheeks, nose, mouth, jaw, other);
* ``<joint>_pitch|yaw|roll`` in degrees for each non-root joint the model has (``jaw_pitch``,
  ``neck_yaw``, ``eye_left_yaw``...) and ``head_pitch|yaw|roll`` for the root;
* ``shape0`` .. ``shape{N-1}``: the first identity modes, in prior standard deviations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BadInputError, MissingFileError

__all__ = ["HeadParams", "GROUPS", "expression_group", "slider_specs", "SliderSpec", "apply_settings", "parse_settings", "load_param_file", "NUM_SHAPE_SLIDERS"]

#: UI groups of expression sliders, in display order.
GROUPS = ("brows", "eyes", "cheeks", "nose", "mouth", "jaw", "other")
NUM_SHAPE_SLIDERS = 10
_AXES = {"pitch": 0, "yaw": 1, "roll": 2}  # axis-angle component: about X (nod), Y (turn), Z (tilt)

# Keyword -> group; first match wins (ARKit, ICT and FLAME-style names).
_GROUP_KEYS = (("brow", "brows"), ("eye", "eyes"), ("cheek", "cheeks"), ("nose", "nose"), ("sneer", "nose"), ("jaw", "jaw"),
               ("mouth", "mouth"), ("lip", "mouth"), ("tongue", "mouth"), ("smile", "mouth"), ("pucker", "mouth"), ("funnel", "mouth"))


def expression_group(name: str) -> str:
    """UI group of an expression blendshape name (case-insensitive keyword match)."""
    low = name.lower()
    for key, group in _GROUP_KEYS:
        if key in low:
            return group
    return "other"


@dataclass
class HeadParams:
    """One pose of a head model: shape (S,), expression (E,), pose (J, 3) radians, transl (3,) metres."""

    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    transl: np.ndarray

    @classmethod
    def neutral(cls, model) -> "HeadParams":
        return cls(np.zeros(model.num_shape, np.float32), np.zeros(model.num_expression, np.float32),
                   np.zeros((model.num_joints, 3), np.float32), np.zeros(3, np.float32))

    def copy(self) -> "HeadParams":
        return HeadParams(self.shape.copy(), self.expression.copy(), self.pose.copy(), self.transl.copy())


@dataclass(frozen=True)
class SliderSpec:
    """A UI slider: its ``--set`` name, group, range and where it writes in :class:`HeadParams`."""

    name: str
    group: str  # an expression group, "pose" or "identity"
    lo: float
    hi: float
    kind: str  # "expression" | "pose" | "shape"
    index: int  # expression / shape index, or joint index for pose
    axis: int = 0  # pose only: 0 pitch, 1 yaw, 2 roll


def _joint_label(j: str) -> str:
    return "head" if j == "root" else j


def slider_specs(model) -> list[SliderSpec]:
    """All sliders of a model, expressions first (grouped), then joints, then identity."""
    lo, hi = model.expression_range
    specs = [SliderSpec(n, expression_group(n), float(lo), float(hi), "expression", i) for i, n in enumerate(model.expression_names)]
    specs.sort(key=lambda s: GROUPS.index(s.group))  # stable: model order inside a group
    limits = {"root": 45.0, "neck": 45.0, "jaw": 30.0}
    for j, jn in enumerate(model.joint_names):
        lim = limits.get(jn, 30.0)
        for ax, a in _AXES.items():
            specs.append(SliderSpec(f"{_joint_label(jn)}_{ax}", "pose", -lim, lim, "pose", j, a))
    for s in range(min(NUM_SHAPE_SLIDERS, model.num_shape)):
        specs.append(SliderSpec(f"shape{s}", "identity", -3.0, 3.0, "shape", s))
    return specs


def get_value(spec: SliderSpec, p: HeadParams, shape_std: np.ndarray | None = None) -> float:
    """Current slider value (degrees for pose, prior std for shape)."""
    if spec.kind == "expression":
        return float(p.expression[spec.index])
    if spec.kind == "pose":
        return float(np.rad2deg(p.pose[spec.index, spec.axis]))
    std = 1.0 if shape_std is None else float(shape_std[spec.index])
    return float(p.shape[spec.index] / std)


def set_value(spec: SliderSpec, p: HeadParams, value: float, shape_std: np.ndarray | None = None) -> None:
    """Write a slider value into ``p`` in place."""
    if spec.kind == "expression":
        p.expression[spec.index] = value
    elif spec.kind == "pose":
        p.pose[spec.index, spec.axis] = np.deg2rad(value)
    else:
        std = 1.0 if shape_std is None else float(shape_std[spec.index])
        p.shape[spec.index] = value * std


def parse_settings(items: Iterable[str]) -> dict[str, float]:
    """``["jawOpen=0.8", "jaw_pitch=10"]`` -> ``{"jawOpen": 0.8, "jaw_pitch": 10.0}``."""
    out: dict[str, float] = {}
    for it in items:
        name, sep, val = str(it).partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(val)
        except ValueError:
            raise BadInputError(f"--set expects NAME=NUMBER (e.g. jawOpen=0.8), got {it!r}") from None
    return out


def apply_settings(model, p: HeadParams, settings: dict[str, float]) -> HeadParams:
    """Apply ``{slider name: value}`` to a copy of ``p``; unknown names raise listing the valid ones."""
    specs = {s.name: s for s in slider_specs(model)}
    bad = [k for k in settings if k not in specs]
    if bad:
        raise BadInputError(f"unknown slider name(s) {', '.join(repr(b) for b in bad)} for the {model.name} head; valid names: {', '.join(specs)}")
    out = p.copy()
    std = model.shape_std.detach().cpu().numpy() if hasattr(model, "shape_std") else None
    for k, v in settings.items():
        set_value(specs[k], out, v, std)
    return out


def load_param_file(path: str | Path, model, base: HeadParams) -> HeadParams:
    """Read a parameter file: JSON ``{slider name: value}`` or ``.npz`` with shape/expression/pose/transl."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "Give a JSON file of {slider name: value} or an .npz with shape/expression/pose/transl arrays.")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise BadInputError(f"{path} is not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise BadInputError(f"{path} must hold a JSON object of {{slider name: number}}")
        try:
            return apply_settings(model, base, {str(k): float(v) for k, v in data.items()})
        except (TypeError, ValueError) as e:
            if isinstance(e, BadInputError):
                raise
            raise BadInputError(f"{path}: every value must be a number ({e})") from None
    if path.suffix.lower() == ".npz":
        z = np.load(path, allow_pickle=False)
        out = base.copy()
        for key, ref in (("shape", out.shape), ("expression", out.expression), ("pose", out.pose), ("transl", out.transl)):
            if key in z.files:
                a = np.asarray(z[key], np.float32)
                if a.ndim == ref.ndim + 1:  # a sequence: take its first frame
                    a = a[0]
                if a.size > ref.size:
                    raise BadInputError(f"{path}: '{key}' has {a.size} values, the {model.name} head takes at most {ref.size}")
                ref.reshape(-1)[: a.size] = a.reshape(-1)
        return out
    raise BadInputError(f"{path}: parameter files must be .json or .npz")
