"""The 52 ARKit face blendshapes, and how a head model's expressions become morph targets under those names.

Names and order: Apple Developer Documentation, ``ARFaceAnchor.BlendShapeLocation``
(https://developer.apple.com/documentation/arkit/arfaceanchor/blendshapelocation), spelled as the string
values ARKit streams (``eyeBlinkLeft``, ..., ``tongueOut``; the order of Apple's page, which face-capture apps
such as Live Link Face also write). "Left" is the subject's left, as in ARKit.

Every exported head carries all 52 names as its first 52 morph targets; a target is one of:

* ``model``: the model's own shape of that name (ICT's ``eyeBlink_L`` spelling is converted).
* ``combined``: the model splits the shape into halves (ICT: ``browInnerUp_L``/``_R``, ``cheekPuff_L``/``_R``);
  the target is the sum of the halves' deltas, so weight w equals both halves at w.
* ``approximated``: the model lacks the shape but has the joint that performs it (FLAME's jaw and eyes): the
  target is that joint's rotation or shift baked into a morph through the skinning weights (exact at weight 0
  and 1; in between vertices move along the chord, for 25 degrees of eye rotation at most 2.4 % of the radius
  inward). Amplitudes: :data:`JOINT_APPROXIMATIONS`.
* ``empty``: the model has neither shape nor joint (``tongueOut``: no model has a tongue that moves on its
  own; FLAME's PCA expressions name no ARKit shape, so most of its targets): all deltas zero, so an ARKit
  stream driving it changes nothing rather than failing to find the name. Listed with the reason in the
  mesh's ``extras.arkit``.

After the 52 come the model's other expressions (``extra``): the halves of split shapes and non-ARKit
shapes (FLAME ``exp_000``...). **How a tracked performance plays exactly**: every model expression drives
exactly one target with its tracked coefficient: its ARKit-named target when it has one, else its extra
target (so ICT's halves drive ``browInnerUpLeft``/``Right`` and the combined ``browInnerUp`` stays 0);
combined, approximated and empty targets are 0 in the clip (FLAME's jaw and eyes move by their joints).
An engine driving the 52 ARKit names live uses the combined target instead of the halves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
ARKIT_SOURCE = "https://developer.apple.com/documentation/arkit/arfaceanchor/blendshapelocation"

JAW_OPEN_RAD = 0.32  #: like the built-in head's jawOpen (about 18 degrees)
EYE_LOOK_RAD = 0.44  #: 25 degrees of gaze at weight 1
#: ARKit name -> (joint, "rot" about a unit axis by an angle in radians | "move" by a vector in metres). Axes:
#: +X = subject's left, +Y up, +Z forward; rotating about +X by a positive angle turns the front downwards.
JOINT_APPROXIMATIONS: dict[str, tuple[str, str, tuple[float, float, float], float]] = {
    "jawOpen": ("jaw", "rot", (1.0, 0.0, 0.0), JAW_OPEN_RAD),
    "jawLeft": ("jaw", "move", (0.007, 0.0, 0.0), 1.0),
    "jawRight": ("jaw", "move", (-0.007, 0.0, 0.0), 1.0),
    "jawForward": ("jaw", "move", (0.0, 0.0, 0.006), 1.0),
    "eyeLookUpLeft": ("eye_left", "rot", (1.0, 0.0, 0.0), -EYE_LOOK_RAD),
    "eyeLookDownLeft": ("eye_left", "rot", (1.0, 0.0, 0.0), EYE_LOOK_RAD),
    "eyeLookInLeft": ("eye_left", "rot", (0.0, 1.0, 0.0), -EYE_LOOK_RAD),  # towards the nose: -X
    "eyeLookOutLeft": ("eye_left", "rot", (0.0, 1.0, 0.0), EYE_LOOK_RAD),
    "eyeLookUpRight": ("eye_right", "rot", (1.0, 0.0, 0.0), -EYE_LOOK_RAD),
    "eyeLookDownRight": ("eye_right", "rot", (1.0, 0.0, 0.0), EYE_LOOK_RAD),
    "eyeLookInRight": ("eye_right", "rot", (0.0, 1.0, 0.0), EYE_LOOK_RAD),  # towards the nose: +X
    "eyeLookOutRight": ("eye_right", "rot", (0.0, 1.0, 0.0), -EYE_LOOK_RAD),
}
_EMPTY_REASON = {"tongueOut": "the model has no tongue that moves on its own"}


def arkit_target_names(names: list[str]) -> list[str]:
    """Names in Apple ARKit spelling (``eyeBlink_L`` -> ``eyeBlinkLeft``), as engines' face rigs expect.

    ICT-FaceKit splits ARKit shapes with ``_L``/``_R`` suffixes (the subject's left/right, as in ARKit);
    other names (ARKit already, or FLAME's ``exp_000``) pass through unchanged.
    """
    out = []
    for n in names:
        if n.endswith("_L") or n.endswith("_R"):
            n = n[:-2] + ("Left" if n.endswith("_L") else "Right")
        out.append(n)
    if len(set(out)) != len(out):  # a model with both spellings: keep its own names rather than collide
        return list(names)
    return out


@dataclass(frozen=True)
class TargetSpec:
    """One exported morph target: its name, what it is made of and what drives it in a tracked clip."""

    name: str
    kind: str  #: "model" | "combined" | "approximated" | "empty" | "extra" (module docstring)
    sources: tuple[int, ...] = ()  #: model expressions whose deltas are summed (model, combined, extra)
    driven_by: Optional[int] = None  #: model expression whose tracked coefficient is this target's clip weight
    note: str = ""


def target_specs(expression_names: list[str], joint_names: list[str]) -> list[TargetSpec]:
    """The 52 ARKit targets (in :data:`ARKIT_NAMES` order) then the model's remaining expressions; none for a
    model without expression blendshapes (a rigid head: nothing would drive them)."""
    if not expression_names:
        return []
    names = arkit_target_names(list(expression_names))
    index = {n: i for i, n in enumerate(names)}
    used: set[int] = set()
    specs = []
    for a in ARKIT_NAMES:
        halves = (index.get(a + "Left"), index.get(a + "Right"))
        if a in index:
            specs.append(TargetSpec(a, "model", (index[a],), index[a]))
            used.add(index[a])
        elif None not in halves:
            specs.append(TargetSpec(a, "combined", halves, None, f"sum of {names[halves[0]]} and {names[halves[1]]}"))
        elif a in JOINT_APPROXIMATIONS and JOINT_APPROXIMATIONS[a][0] in joint_names:
            joint, how, vec, amount = JOINT_APPROXIMATIONS[a]
            what = f"rotation by {np.degrees(amount):+.0f} degrees about {vec}" if how == "rot" else f"shift by {vec} m"
            specs.append(TargetSpec(a, "approximated", (), None, f"the {joint} joint's {what}, baked through the skinning weights"))
        else:
            specs.append(TargetSpec(a, "empty", (), None, _EMPTY_REASON.get(a, "the model has no such shape and no joint for it")))
    specs += [TargetSpec(n, "extra", (i,), i) for i, n in enumerate(names) if i not in used]
    return specs


def _subtree_weights(lbs_weights: np.ndarray, parents: np.ndarray, joint: int) -> np.ndarray:
    """(V,) total skinning weight of ``joint`` and every joint below it (what moves when it moves)."""
    inside = np.zeros(len(parents), bool)
    for j in range(len(parents)):  # parents precede children
        inside[j] = j == joint or (parents[j] >= 0 and inside[parents[j]])
    return lbs_weights[:, inside].sum(1)


def _rotation(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def approximation_deltas(name: str, v_shaped: np.ndarray, joints_rest: np.ndarray, joint_names: list[str],
                         parents: np.ndarray, lbs_weights: np.ndarray) -> np.ndarray:
    """(V, 3) metres: the joint motion of :data:`JOINT_APPROXIMATIONS` ``[name]`` applied by linear blend skinning.

    Args:
        v_shaped: (V, 3) identity-applied rest vertices; joints_rest: (J, 3) rest joints; lbs_weights: (V, J).
    """
    joint, how, vec, amount = JOINT_APPROXIMATIONS[name]
    j = joint_names.index(joint)
    w = _subtree_weights(lbs_weights, parents, j)[:, None]
    if how == "move":
        return w * np.asarray(vec, np.float64) * amount
    q = v_shaped - joints_rest[j]
    return w * (q @ _rotation(vec, amount).T - q)


def target_deltas(specs: list[TargetSpec], exprdirs: np.ndarray, approximate) -> np.ndarray:
    """(V, 3, K) deltas of every target: the model's (summed) blendshapes, ``approximate(name)`` or zeros.

    Args:
        exprdirs: (V, 3, E) the model's expression blendshapes (metres per unit weight).
        approximate: name -> (V, 3) deltas for ``approximated`` targets (:func:`approximation_deltas`).
    """
    out = np.zeros(exprdirs.shape[:2] + (len(specs),))
    for k, s in enumerate(specs):
        if s.kind == "approximated":
            out[:, :, k] = approximate(s.name)
        elif s.sources:
            out[:, :, k] = exprdirs[:, :, list(s.sources)].sum(-1)
    return out


def clip_weights(specs: list[TargetSpec], expression: np.ndarray) -> np.ndarray:
    """(N, K) morph weights of a tracked clip from (N, E) model coefficients: each coefficient drives one target."""
    out = np.zeros((len(expression), len(specs)))
    for k, s in enumerate(specs):
        if s.driven_by is not None:
            out[:, k] = expression[:, s.driven_by]
    return out


def describe(specs: list[TargetSpec], expression_names: list[str]) -> dict:
    """What the glTF mesh's ``extras.arkit`` says: the source, each non-plain target's kind and why, the clip's rule."""
    return {
        "names": ARKIT_SOURCE,
        "combined": {s.name: s.note for s in specs if s.kind == "combined"},
        "approximated": {s.name: s.note for s in specs if s.kind == "approximated"},
        "empty": {s.name: s.note for s in specs if s.kind == "empty"},
        "extra": [s.name for s in specs if s.kind == "extra"],
        "drivenBy": [None if s.driven_by is None else expression_names[s.driven_by] for s in specs],
        "animation": "each model expression drives one target with its tracked coefficient (drivenBy: the model's "
                     "expression name per target); combined, approximated and empty targets are 0 in the clip",
    }
