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
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import BadInputError, MissingFileError

__all__ = ["HeadParams", "GROUPS", "expression_group", "slider_specs", "SliderSpec", "apply_settings", "parse_settings", "load_param_file", "NUM_SHAPE_SLIDERS",
           "REACH", "check_value"]

#: UI groups of expression sliders, in display order.
GROUPS = ("brows", "eyes", "cheeks", "nose", "mouth", "jaw", "other")
NUM_SHAPE_SLIDERS = 10
#: ``--set`` and parameter files may push a slider past its range (jawOpen=1.5 exaggerates), up to this many times
#: its largest end: far beyond, the head leaves the frame or overflows float32 and the image comes out blank.
REACH = 10.0
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
            value = float(val)
        except ValueError:
            raise BadInputError(f"--set expects NAME=NUMBER (e.g. jawOpen=0.8), got {it!r}") from None
        if not math.isfinite(value):
            raise BadInputError(f"--set {it}: the value must be a finite number (e.g. jawOpen=0.8)")
        out[name.strip()] = value
    return out


def check_value(spec: SliderSpec, value: float) -> None:
    """Refuse a slider value that is not finite or lies beyond :data:`REACH` times the slider's range."""
    if not math.isfinite(value):
        raise BadInputError(f"{spec.name}={value:g}: the value must be a finite number")
    bound = REACH * max(abs(spec.lo), abs(spec.hi), 1.0)
    if abs(value) > bound:
        raise BadInputError(f"{spec.name}={value:g} is out of reach: the {spec.name} slider spans {spec.lo:g} to {spec.hi:g}, "
                            f"and values up to {bound:g} either way are accepted")


def apply_settings(model, p: HeadParams, settings: dict[str, float]) -> HeadParams:
    """Apply ``{slider name: value}`` to a copy of ``p``; unknown names raise listing the valid ones."""
    specs = {s.name: s for s in slider_specs(model)}
    bad = [k for k in settings if k not in specs]
    if bad:
        raise BadInputError(f"unknown slider name(s) {', '.join(repr(b) for b in bad)} for the {model.name} head; valid names: {', '.join(specs)}")
    out = p.copy()
    std = model.shape_std.detach().cpu().numpy() if hasattr(model, "shape_std") else None
    for k, v in settings.items():
        check_value(specs[k], v)
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
                raise BadInputError(f"{path}: {e}") from None
            raise BadInputError(f"{path}: every value must be a number ({e})") from None
    if path.suffix.lower() == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise BadInputError(f"{path} is not a readable .npz file ({e})") from None
        out = base.copy()
        for key, ref in (("shape", out.shape), ("expression", out.expression), ("pose", out.pose), ("transl", out.transl)):
            if key in z.files:
                try:
                    raw = z[key]
                except ValueError:  # numpy refuses object arrays without allow_pickle (and we never unpickle)
                    raise BadInputError(f"{path}: '{key}' is an object array, which avatar3d does not load (it would need "
                                        f"unpickling); save it as a plain numeric array") from None
                if raw.dtype.kind not in "biuf":
                    raise BadInputError(f"{path}: '{key}' must hold numbers, not {raw.dtype}")
                a = np.asarray(raw, np.float32)
                if not np.isfinite(a).all():
                    raise BadInputError(f"{path}: '{key}' holds NaN or infinite values")
                if a.ndim == ref.ndim + 1:  # a sequence: take its first frame
                    a = a[0]
                if a.size > ref.size:
                    raise BadInputError(f"{path}: '{key}' has {a.size} values, the {model.name} head takes at most {ref.size}")
                ref.reshape(-1)[: a.size] = a.reshape(-1)
        return out
    raise BadInputError(f"{path}: parameter files must be .json or .npz")
