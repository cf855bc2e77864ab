"""A small, fast Wavefront OBJ reader for head-model meshes.

Reads positions (``v``), texture coordinates (``vt``) and polygon faces (``f``) with their UV
indices and material groups (``usemtl``); triangulates polygons as fans, applying the *same* split
to position and UV indices so seams stay consistent. Normals (``vn``) and other statements are
ignored. Parsing goes through NumPy on whole blocks of text, so a 26k-vertex mesh reads in tens
of milliseconds (ICT-FaceKit has ~150 such files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from ..errors import BadInputError, MissingFileError

__all__ = ["ObjMesh", "read_obj", "read_obj_vertices", "parse_obj", "parse_obj_vertices", "triangulate"]

PathLike = Union[str, Path]


@dataclass
class ObjMesh:
    """Contents of an OBJ file. V positions, T uvs, P polygons, F triangles."""

    vertices: np.ndarray  #: (V, 3) float64, file units
    uvs: np.ndarray  #: (T, 2) float64 (empty (0, 2) when the file has none)
    poly_sizes: np.ndarray  #: (P,) int32 corners per polygon
    poly_vertices: np.ndarray  #: (sum(poly_sizes),) int32 0-based position index per corner
    poly_uvs: np.ndarray  #: (sum(poly_sizes),) int32 0-based uv index per corner (-1 when absent)
    poly_material: np.ndarray  #: (P,) int32 index into ``materials`` (-1 before any usemtl)
    materials: list[str] = field(default_factory=list)

    @property
    def num_polygons(self) -> int:
        return len(self.poly_sizes)

    def triangles(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fan-triangulate: (F, 3) position indices, (F, 3) uv indices, (F,) source polygon index."""
        return triangulate(self.poly_sizes, self.poly_vertices, self.poly_uvs)


def triangulate(sizes: np.ndarray, corners: np.ndarray, uv_corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fan-triangulate polygons given as flat corner lists.

    Polygon p with corners c0..c(n-1) becomes triangles (c0, ck, ck+1) for k = 1..n-2. A quad
    therefore splits along its c0-c2 diagonal, identically for positions and UVs.

    Args:
        sizes: (P,) corners per polygon (>= 3); corners/uv_corners: (sum(sizes),) indices.
    Returns:
        (F, 3) position triangles, (F, 3) uv triangles, (F,) polygon index of each triangle.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size and sizes.min() < 3:
        raise BadInputError(f"OBJ polygon with {int(sizes.min())} corners; every face needs at least 3")
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if sizes.size else np.zeros(0, np.int64)
    ntri = sizes - 2
    poly = np.repeat(np.arange(len(sizes)), ntri)
    # k-th triangle of each polygon: running count within its polygon
    k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    base = start[poly]
    idx = np.stack([base, base + k + 1, base + k + 2], 1)
    corners = np.asarray(corners)
    uv_corners = np.asarray(uv_corners)
    return corners[idx].astype(np.int32), uv_corners[idx].astype(np.int32), poly.astype(np.int32)


def _floats(lines: list[bytes], ncols: int, path: Path, what: str) -> np.ndarray:
    """Parse whitespace-separated numbers from statement bodies into (N, ncols)."""
    if not lines:
        return np.zeros((0, ncols))
    rows = [ln.split()[:ncols] for ln in lines]
    if any(len(r) < ncols for r in rows):
        raise BadInputError(f"{path}: a '{what}' line has fewer than {ncols} numbers")
    try:
        return np.array(b" ".join(b" ".join(r) for r in rows).split(), dtype=np.float64).reshape(-1, ncols)
    except ValueError as e:
        raise BadInputError(f"{path}: cannot parse '{what}' numbers ({e})") from None


def _read_bytes(path: PathLike) -> tuple[Path, bytes]:
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "Check the path to the OBJ file.")
    return path, path.read_bytes()


def read_obj_vertices(path: PathLike) -> np.ndarray:
    """Only the (V, 3) float64 positions of an OBJ file (fast path for blendshape targets)."""
    path, data = _read_bytes(path)
    return parse_obj_vertices(data, path)


def parse_obj_vertices(data: bytes, path: PathLike = "<obj>") -> np.ndarray:
    """(V, 3) float64 positions from the bytes of an OBJ file; ``path`` only names it in errors."""
    v = [ln[2:] for ln in data.split(b"\n") if ln.startswith(b"v ")]
    if not v:
        raise BadInputError(f"{path}: no vertices ('v' lines) in this OBJ file")
    try:
        return np.array(b" ".join(v).split(), dtype=np.float64).reshape(-1, 3)
    except ValueError:
        return _floats(v, 3, path, "v")  # slower path that tolerates w / vertex colours


def read_obj(path: PathLike) -> ObjMesh:
    """Read positions, uvs and polygon faces (with uv indices and materials) of an OBJ file."""
    path, data = _read_bytes(path)
    return parse_obj(data, path)


def parse_obj(data: bytes, path: PathLike = "<obj>") -> ObjMesh:
    """Parse the bytes of an OBJ file (see :func:`read_obj`); ``path`` only names it in errors."""
    v: list[bytes] = []
    vt: list[bytes] = []
    faces: list[list[bytes]] = []
    fmat: list[int] = []
    materials: list[str] = []
    cur = -1
    for ln in data.split(b"\n"):
        if ln.startswith(b"v "):
            v.append(ln[2:])
        elif ln.startswith(b"vt "):
            vt.append(ln[3:])
        elif ln.startswith(b"f "):
            faces.append(ln[2:].split())
            fmat.append(cur)
        elif ln.startswith(b"usemtl"):
            name = ln[6:].strip().decode("utf-8", "replace")
            if name not in materials:
                materials.append(name)
            cur = materials.index(name)
    verts = _floats(v, 3, path, "v")
    uvs = _floats(vt, 2, path, "vt")
    if not faces:
        raise BadInputError(f"{path}: no faces ('f' lines) in this OBJ file")
    sizes = np.fromiter((len(f) for f in faces), dtype=np.int32, count=len(faces))
    corners = [c.split(b"/") for f in faces for c in f]
    try:
        pv = np.array([c[0] for c in corners], dtype=np.int64)
        pt = np.array([c[1] if len(c) > 1 and c[1] else b"0" for c in corners], dtype=np.int64)
    except ValueError as e:
        raise BadInputError(f"{path}: cannot parse face indices ({e})") from None
    # OBJ indices are 1-based; negative ones count back from the end of the list so far (rare:
    # resolved against the full list, which is right for files that declare all vertices first).
    pv = np.where(pv < 0, len(verts) + pv, pv - 1)
    pt = np.where(pt < 0, len(uvs) + pt, pt - 1)
    if pv.min() < 0 or pv.max() >= len(verts):
        raise BadInputError(f"{path}: a face refers to a vertex outside 1..{len(verts)}")
    if len(uvs) and (pt.max() >= len(uvs)):
        raise BadInputError(f"{path}: a face refers to a texture coordinate outside 1..{len(uvs)}")
    return ObjMesh(
        vertices=verts,
        uvs=uvs,
        poly_sizes=sizes,
        poly_vertices=pv.astype(np.int32),
        poly_uvs=pt.astype(np.int32),
        poly_material=np.asarray(fmat, dtype=np.int32),
        materials=materials,
    )
