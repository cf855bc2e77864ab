"""Split a head into parts by region (skin, eyes, teeth, mouth interior), one glTF primitive each.

A face belongs to a region when all three of its vertices do (so the skin triangles bordering the mouth stay
skin); the first matching region in :data:`PART_REGIONS` wins (teeth sit inside the mouth interior region).
ICT-FaceKit's thin helper shells around the eyes (tear line, eye blend, occlusion: ``eye_auxiliary``) and its
eyelash cards are left out: upstream draws them with alpha textures we do not have, and drawn opaque the shells
hide the eyeballs and the lash cards paint black bands under the eyes.
Each part keeps the model's vertex indices (``MeshPart.split.src``), so morph targets and skin weights are
gathered per part from the same model arrays.

Eyes get per-vertex colours (sclera, iris, pupil; :func:`eye_colors`) that move with the eyeball, so gaze shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mesh import SplitMesh, split_seams

#: part name -> the model regions it takes, in priority order ("skin" takes what is left).
PART_REGIONS: dict[str, tuple[str, ...]] = {
    "teeth": ("teeth",),
    "eyes": ("eyes",),
    "hidden": ("eye_auxiliary", "eyelashes"),  # not exported (see the module docstring)
    "mouth": ("mouth_interior",),
}
PARTS = ("skin", "eyes", "teeth", "mouth")  #: exported parts, in primitive order

#: Linear-RGB colours of the eye (sRGB about: sclera 0.97, iris 0.42 / 0.30 / 0.20 brown, pupil 0.05).
SCLERA, IRIS, PUPIL = (0.93, 0.91, 0.88), (0.15, 0.075, 0.033), (0.004, 0.003, 0.003)
IRIS_RADIUS_M, PUPIL_RADIUS_M = 0.0059, 0.0022  #: human averages: 11.8 mm iris, 4.4 mm pupil (indoor light)


@dataclass
class MeshPart:
    """One exported primitive: a named part of the model's triangles with one UV per vertex."""

    name: str  #: one of :data:`PARTS`
    face_ids: np.ndarray  #: (F_p,) int, the model's triangles in this part
    split: SplitMesh  #: its vertices (``src``: model vertex of each), UVs and faces (into its vertices)


def face_labels(faces: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """(F,) part name of every triangle ("skin", a :data:`PART_REGIONS` key, "hidden" = not exported).

    Args:
        faces: (F, 3) vertex indices; regions: name -> (V,) bool masks (the model's ``regions``).
    """
    labels = np.full(len(faces), "skin", dtype=object)
    free = np.ones(len(faces), bool)
    for part, names in PART_REGIONS.items():
        for name in names:
            if name in regions:
                inside = np.asarray(regions[name], bool)[faces].all(1) & free
                labels[inside] = part
                free &= ~inside
    return labels


def mesh_parts(faces: np.ndarray, uv_faces: np.ndarray, uvs: np.ndarray, regions: dict[str, np.ndarray]) -> list[MeshPart]:
    """The non-empty exported parts in :data:`PARTS` order, each split at its UV seams.

    Args:
        faces, uv_faces: (F, 3) vertex / UV indices; uvs: (T, 2); regions: name -> (V,) bool masks.
    """
    labels = face_labels(faces, regions)
    out = []
    for name in PARTS:
        ids = np.flatnonzero(labels == name)
        if len(ids):
            out.append(MeshPart(name, ids, split_seams(faces[ids], uv_faces[ids], uvs)))
    return out


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def eye_colors(verts: np.ndarray, eyes: list[np.ndarray]) -> np.ndarray:
    """(V, 3) linear RGB: sclera, iris and pupil around each eyeball's front axis (other vertices: sclera).

    Each eye's centre is its vertices' bounding-box middle; a vertex in front of it (+Z, the rest gaze)
    within :data:`IRIS_RADIUS_M` of the axis through the centre is iris, within :data:`PUPIL_RADIUS_M`
    pupil, with 0.4 mm soft edges. Works for single spheres (built-in, FLAME) and nested shells (ICT).

    Args:
        verts: (V, 3) rest vertices, metres; eyes: (V,) bool mask per eyeball.
    """
    col = np.tile(np.asarray(SCLERA, np.float64), (len(verts), 1))
    for mask in eyes:
        e = verts[mask]
        if not len(e):
            continue
        c = 0.5 * (e.min(0) + e.max(0))
        r = np.linalg.norm(e[:, :2] - c[:2], axis=1)
        front = (e[:, 2] > c[2]).astype(np.float64)
        iris = front * _smoothstep((IRIS_RADIUS_M - r) / 0.0004 + 0.5)
        pupil = front * _smoothstep((PUPIL_RADIUS_M - r) / 0.0004 + 0.5)
        ring = 0.6 + 0.4 * _smoothstep((IRIS_RADIUS_M - 0.0008 - r) / 0.0008)  # a darker limbal ring
        rgb = (1 - iris)[:, None] * SCLERA + (iris * ring)[:, None] * IRIS
        col[mask] = (1 - pupil)[:, None] * rgb + pupil[:, None] * PUPIL
    return col


def eye_masks(regions: dict[str, np.ndarray], verts: np.ndarray) -> list[np.ndarray]:
    """(V,) bool mask per eyeball: the model's per-eye regions, else its ``eyes`` region split at x = 0."""
    for left, right in (("eye_left", "eye_right"), ("left_eyeball", "right_eyeball")):
        if left in regions and right in regions:
            return [np.asarray(regions[left], bool), np.asarray(regions[right], bool)]
    if "eyes" not in regions:
        return []
    eyes = np.asarray(regions["eyes"], bool)
    return [eyes & (verts[:, 0] >= 0), eyes & (verts[:, 0] < 0)]
