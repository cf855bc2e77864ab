"""ICT-FaceKit Light (USC ICT, MIT licence) as a :class:`HeadModel`.

Source: the ``FaceXModel/`` folder of https://github.com/ICT-VGL/ICT-FaceKit, the repository
archive as GitHub serves it (zip), or a tar(.xz/.gz) holding that folder. One neutral mesh
(26,719 vertices, quads + triangles, UVs, a full head with eyes, teeth and mouth interior), 100
PCA identity meshes and 53 ARKit-named expression meshes (``vertex_indices.json`` lists them).

Conversions: ICT is in centimetres, +Y up, face towards +Z -> we scale to metres, axes unchanged.
Identity mode i = identity{i}.obj - neutral; these meshes already sit at one standard deviation
(their RMS displacement falls from ~4 mm to ~0.07 mm over the 100 modes, and upstream's
``FaceModel.randomize_identity`` draws weights from a unit normal), so coefficients are ~N(0, 1)
and ``shape_std`` is 1. Expression e = {name}.obj - neutral, weights in [0, 1].

The first load parses ~150 OBJ files (a few seconds) and writes a compact ``.npz`` (float32 /
int32) to ``cache_dir("models")/ict-compiled``, keyed by the source's file names, sizes and
modification times; later loads read only that (well under a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from ..data.atomic import atomic_path
from ..errors import Avatar3DError, BadInputError, MissingFileError
from ..paths import cache_dir
from .base import HeadModel, HeadModelData
from .obj_io import parse_obj, parse_obj_vertices

__all__ = [
    "load_ict",
    "read_ict_data",
    "status",
    "find_ict",
    "install_dir",
    "facex_dir",
    "is_archive",
    "iter_source",
    "render_face_mask",
    "region_colors",
    "vertex_embedding",
    "ICT_REPO_URL",
    "ICT_LMK68_VERTICES",
    "ICT_PARTS",
]

ICT_REPO_URL = "https://github.com/ICT-VGL/ICT-FaceKit"
HOW_TO_GET = (
    f"Get ICT-FaceKit Light from its GitHub repository {ICT_REPO_URL} (the FaceXModel folder) or run "
    "'avatar3d models download ict' (offline: 'avatar3d models download ict --from FILE' with the downloaded zip), "
    "or point $AVATAR3D_ICT at the FaceXModel folder."
)
CACHE_VERSION = 3  # bump when the compiled layout changes
CM_TO_M = 0.01

#: Vertex ranges (inclusive start, exclusive end) of the parts, from the upstream README.
ICT_PARTS: dict[str, tuple[int, int]] = {
    "face": (0, 9409),
    "head_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021),
    "eyeball_right": (23021, 24591),
    "lacrimal_left": (24591, 24795),
    "lacrimal_right": (24795, 24999),
    "eye_blend_left": (24999, 25023),
    "eye_blend_right": (25023, 25047),
    "eye_occlusion_left": (25047, 25199),
    "eye_occlusion_right": (25199, 25351),
    "eyelashes_left": (25351, 26035),
    "eyelashes_right": (26035, 26719),
}
SCLERA = {"left": (21451, 22221), "right": (23021, 23791)}
NUM_VERTICES = 26719

#: Multi-PIE / iBUG 68 landmark vertices documented in the upstream README (0-based).
ICT_LMK68_VERTICES = np.array([
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695,
    2081, 0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517,
    5966,
], dtype=np.int64)

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------- locating the data
def install_dir() -> Path:
    """Where ``avatar3d models download ict`` installs the FaceXModel folder."""
    return cache_dir("models") / "ict"


def facex_dir(p: Path) -> Optional[Path]:
    """The folder holding generic_neutral_mesh.obj at or just below ``p`` (FaceXModel layouts)."""
    for c in (p, p / "FaceXModel", p / "ICT-FaceKit" / "FaceXModel", p / "ICT-FaceKit-master" / "FaceXModel"):
        if (c / "generic_neutral_mesh.obj").is_file():
            return c
    return None


def is_archive(p: Path) -> bool:
    """Whether ``p`` is a file with an archive suffix ICT-FaceKit may come as (zip, tar, tar.xz/gz/bz2)."""
    n = p.name.lower()
    return p.is_file() and (n.endswith((".zip", ".tar", ".tar.xz", ".txz", ".tar.gz", ".tgz", ".tar.bz2")))


def find_ict(path: Optional[PathLike] = None) -> Path:
    """Resolve an ICT source: a FaceXModel folder (or a folder above it) or an archive.

    ``None`` tries ``$AVATAR3D_ICT`` then the cache install; raises :class:`MissingFileError`.
    """
    if path is None:
        env = os.environ.get("AVATAR3D_ICT")
        if env:
            return find_ict(env)
        d = facex_dir(install_dir())
        if d is not None:
            return d
        raise MissingFileError("ICT-FaceKit FaceXModel/generic_neutral_mesh.obj", HOW_TO_GET)
    p = Path(path).expanduser()
    if is_archive(p):
        return p
    if p.is_dir():
        d = facex_dir(p)
        if d is not None:
            return d
    if p.is_file() and p.name == "generic_neutral_mesh.obj":
        return p.parent
    raise MissingFileError(p / "FaceXModel/generic_neutral_mesh.obj" if p.is_dir() else p, HOW_TO_GET)


def status() -> tuple[bool, str]:
    """(available, where) for ``avatar3d info`` / ``avatar3d models list``."""
    try:
        src = find_ict(None)
    except MissingFileError:
        return False, f"not installed (run 'avatar3d models download ict' or see {ICT_REPO_URL})"
    how = "$AVATAR3D_ICT" if os.environ.get("AVATAR3D_ICT") else "cache install"
    return True, f"{src} ({how})"


# ----------------------------------------------------------------------------- reading sources
def _wanted(name: str) -> bool:
    return "FaceXModel/" in name.replace("\\", "/") and name.endswith((".obj", "vertex_indices.json"))


def _is_licence(name: str) -> bool:
    """The repository's top-level LICENSE / README.md (kept beside an install: MIT asks for it)."""
    parts = name.replace("\\", "/").strip("/").split("/")
    return parts[-1] in ("LICENSE", "README.md") and len(parts) <= 2


def iter_source(src: Path, licence: bool = False) -> Iterator[tuple[str, bytes]]:
    """Yield (basename, bytes) of every FaceXModel OBJ/JSON file in a folder or archive, streaming;
    with ``licence`` also the repository's LICENSE and README.md (names prefixed by ``../``)."""
    if src.is_dir():
        for f in sorted(src.iterdir()):
            if f.suffix == ".obj" or f.name == "vertex_indices.json":
                yield f.name, f.read_bytes()
        for extra in ("LICENSE", "README.md") if licence else ():
            if (src.parent / extra).is_file():
                yield "../" + extra, (src.parent / extra).read_bytes()
        return
    name = src.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(src) as z:
                for info in z.infolist():
                    if _wanted(info.filename):
                        yield info.filename.rsplit("/", 1)[-1], z.read(info)
                    elif licence and _is_licence(info.filename):
                        yield "../" + info.filename.rsplit("/", 1)[-1], z.read(info)
            return
        # Stream mode ('r|*') decompresses once, front to back: no random access needed.
        with tarfile.open(src, mode="r|*") as t:
            for m in t:
                keep = _wanted(m.name)
                if m.isfile() and (keep or (licence and _is_licence(m.name))):
                    fh = t.extractfile(m)
                    if fh is not None:
                        yield ("" if keep else "../") + m.name.rsplit("/", 1)[-1], fh.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise BadInputError(f"{src} is not a readable ICT-FaceKit archive ({e}); {HOW_TO_GET}") from None


def _source_key(src: Path) -> str:
    """Cache key, cheap to compute (no need to hash ~400 MB on every load).

    Folders: content-based (every file's name, size, first and last 4 KiB, plus the whole neutral
    mesh), so a copied or reinstalled FaceXModel reuses the cache. Archives: name, size, mtime and
    the first MiB.
    """
    from .embedding import EMBED_VERSION  # the cache stores the 478-point embedding

    h = hashlib.sha1(f"ict-v{CACHE_VERSION}-emb{EMBED_VERSION}".encode())
    if src.is_dir():
        for f in sorted(src.iterdir()):
            if f.suffix == ".obj" or f.name == "vertex_indices.json":
                size = f.stat().st_size
                h.update(f"{f.name}:{size};".encode())
                with open(f, "rb") as fh:
                    if f.name == "generic_neutral_mesh.obj":
                        h.update(fh.read())
                    else:
                        h.update(fh.read(4096))
                        fh.seek(max(0, size - 4096))
                        h.update(fh.read())
    else:
        st = src.stat()
        h.update(f"{src.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        with open(src, "rb") as fh:  # first MiB guards against a same-size replacement
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def _compiled_path(src: Path) -> Path:
    return cache_dir("models") / "ict-compiled" / f"ict-{_source_key(src)}.npz"


# ----------------------------------------------------------------------------- geometry helpers
def _point_regressor(P: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Min-norm weights w (N,) with sum(w) = 1 and w @ P = target: a joint as an affine combination
    of vertices, so it follows identity changes smoothly."""
    n = len(P)
    A = np.vstack([P.T, np.ones((1, n))])  # (4, N)
    b = np.concatenate([target, [1.0]])
    w0 = np.full(n, 1.0 / n)
    corr = np.linalg.lstsq(A, b - A @ w0, rcond=None)[0]
    return w0 + corr


def _sphere_centre(P: np.ndarray) -> np.ndarray:
    """Least-squares sphere centre of (N, 3) points."""
    A = np.c_[2 * P, np.ones(len(P))]
    x = np.linalg.lstsq(A, (P**2).sum(1), rcond=None)[0]
    return x[:3]


def vertex_embedding(faces: np.ndarray, vertex_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Express vertices as (triangle (N,), barycentric (N, 3)): the first triangle using each
    vertex, with weight 1 on that corner, so the point follows the vertex exactly."""
    faces = np.asarray(faces)
    vid = np.asarray(vertex_ids, dtype=np.int64)
    flat = faces.ravel()
    first = np.full(int(max(flat.max(), vid.max())) + 1, -1, dtype=np.int64)
    pos = np.arange(len(flat))[::-1]
    first[flat[::-1]] = pos  # reversed writes: the first occurrence wins
    k = first[vid]
    if (k < 0).any():
        raise ValueError("vertex_embedding: some vertices are not used by any face")
    bary = np.zeros((len(vid), 3), np.float32)
    bary[np.arange(len(vid)), k % 3] = 1.0
    return k // 3, bary


def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Vertex sets of the open-edge loops (edges used by exactly one triangle), one array per loop."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = np.asarray(faces, dtype=np.int64)
    n = int(f.max()) + 1
    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    key = e[:, 0] * n + e[:, 1]  # 1-D keys sort far faster than unique(axis=0)
    uniq, cnt = np.unique(key, return_counts=True)
    once = uniq[cnt == 1]
    a, b = once // n, once % n
    g = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    verts = np.unique(np.concatenate([a, b]))
    return [verts[lab[verts] == k] for k in np.unique(lab[verts])]


def _mask(V: int, *ranges: tuple[int, int]) -> np.ndarray:
    m = np.zeros(V, bool)
    for a, b in ranges:
        m[a:b] = True
    return m


# ----------------------------------------------------------------------------- parse + compile
def _parse_source(src: Path) -> dict[str, np.ndarray]:
    """Read every file of the source once and build the compact arrays (metres, float32/int32)."""
    meshes: dict[str, np.ndarray] = {}
    neutral = None
    names_json: Optional[list[str]] = None
    for name, data in iter_source(src):
        if name == "generic_neutral_mesh.obj":
            neutral = parse_obj(data, name)
        elif name == "vertex_indices.json":
            try:
                names_json = list(json.loads(data.decode("utf-8"))["expressions"])
            except (ValueError, KeyError):
                names_json = None
        elif name.endswith(".obj"):
            meshes[name[:-4]] = parse_obj_vertices(data, name)
    if neutral is None:
        raise MissingFileError(f"{src}: FaceXModel/generic_neutral_mesh.obj", HOW_TO_GET)
    V = len(neutral.vertices)
    if V != NUM_VERTICES:
        raise BadInputError(f"{src}: generic_neutral_mesh.obj has {V} vertices; ICT-FaceKit Light has {NUM_VERTICES}")
    ident = sorted(k for k in meshes if k.startswith("identity"))
    if not ident:
        raise BadInputError(f"{src}: no identityNNN.obj files beside generic_neutral_mesh.obj; {HOW_TO_GET}")
    expr_names = names_json or sorted(k for k in meshes if not k.startswith("identity"))
    missing = [e for e in expr_names if e not in meshes]
    if missing:
        raise BadInputError(f"{src}: expression meshes missing: {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}")
    for k in ident + expr_names:
        if meshes[k].shape != (V, 3):
            raise BadInputError(f"{src}: {k}.obj has {len(meshes[k])} vertices, expected {V}")
    v0 = neutral.vertices
    shapedirs = np.stack([meshes[k] - v0 for k in ident], -1) * CM_TO_M
    exprdirs = np.stack([meshes[k] - v0 for k in expr_names], -1) * CM_TO_M
    faces, uv_faces, poly = neutral.triangles()
    uvs = neutral.uvs if len(neutral.uvs) else np.zeros((1, 2))
    mats = np.array(neutral.materials + [""])  # -1 -> ""
    # Neck boundary: the open-edge loop of the skin (face + head/neck) that reaches lowest
    # (computed here, once, so cached loads need no graph code).
    skin_faces = faces[_mask(V, ICT_PARTS["face"], ICT_PARTS["head_neck"])[faces].all(1)]
    neck = min(_boundary_loops(skin_faces), key=lambda ids: v0[ids, 1].min())
    return {
        "v_template": (v0 * CM_TO_M).astype(np.float32),
        "faces": faces.astype(np.int32),
        "uvs": uvs.astype(np.float32),
        "uv_faces": np.maximum(uv_faces, 0).astype(np.int32),
        "face_polygon": poly.astype(np.int32),
        "face_material": neutral.poly_material[poly].astype(np.int32),
        "materials": mats[:-1].astype(str),
        "shapedirs": shapedirs.astype(np.float32),
        "exprdirs": exprdirs.astype(np.float32),
        "expression_names": np.array(expr_names, dtype=str),
        "identity_names": np.array(ident, dtype=str),
        "neck_boundary": neck.astype(np.int32),
    }


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (tests and tools may load concurrently)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)  # uncompressed: loading 50 MB raw is much faster than inflating it


def _load_compiled(src: Path, use_cache: bool = True) -> tuple[dict[str, np.ndarray], Path]:
    cpath = _compiled_path(src)
    if use_cache and cpath.is_file():
        try:
            with np.load(cpath, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, cpath
        except (OSError, ValueError, EOFError):
            pass  # corrupt/partial cache: rebuild below
    arrays = _parse_source(src)
    if use_cache:
        _save_npz(cpath, arrays)
    return arrays, cpath


def _build_data(a: dict[str, np.ndarray], src: Path) -> HeadModelData:
    """HeadModelData from the compiled arrays: regions, skeleton, skinning, landmarks."""
    v = a["v_template"].astype(np.float64)
    faces = a["faces"].astype(np.int64)
    V = len(v)
    P = ICT_PARTS
    regions = {
        "face": _mask(V, P["face"]),
        "scalp": _mask(V, P["head_neck"]),
        "eyes": _mask(V, P["eyeball_left"], P["eyeball_right"]),
        "mouth_interior": _mask(V, P["mouth_socket"], P["gums_tongue"], P["teeth"]),
        "teeth": _mask(V, P["teeth"]),
        "eye_left": _mask(V, P["eyeball_left"]),
        "eye_right": _mask(V, P["eyeball_right"]),
        "eye_sockets": _mask(V, P["eye_socket_left"], P["eye_socket_right"]),
        # thin helper meshes (tear line, blend, occlusion shells, lash strips): renderers may skip them
        "eye_auxiliary": _mask(V, (P["lacrimal_left"][0], P["eye_occlusion_right"][1])),
        "eyelashes": _mask(V, P["eyelashes_left"], P["eyelashes_right"]),
        "narrow_face": _mask(V, (0, 6706)),
    }
    regions["neck_boundary"] = np.zeros(V, bool)
    regions["neck_boundary"][a["neck_boundary"]] = True

    # Skeleton: root near the head/neck pivot, one joint per eyeball centre (left = +X).
    c_left = _sphere_centre(v[SCLERA["left"][0]:SCLERA["left"][1]])
    c_right = _sphere_centre(v[SCLERA["right"][0]:SCLERA["right"][1]])
    eye_mid = 0.5 * (c_left + c_right)
    # The atlanto-occipital pivot sits roughly 4-5 cm below and 9 cm behind the eye centres.
    root_target = eye_mid + np.array([0.0, -0.045, -0.09])
    jreg = np.zeros((3, V))
    hn = np.arange(*P["head_neck"])
    jreg[0, hn] = _point_regressor(v[hn], root_target)
    for j, (side, c) in enumerate((("left", c_left), ("right", c_right)), start=1):
        ids = np.arange(*SCLERA[side])
        jreg[j, ids] = _point_regressor(v[ids], c)
    lbs = np.zeros((V, 3))
    lbs[:, 0] = 1.0
    for j, part in ((1, "eyeball_left"), (2, "eyeball_right")):
        lbs[P[part][0]:P[part][1]] = 0.0
        lbs[P[part][0]:P[part][1], j] = 1.0

    f68, b68 = vertex_embedding(faces, ICT_LMK68_VERTICES)
    data = HeadModelData(
        name="ict",
        version="ICT-FaceKit Light",
        v_template=v.astype(np.float32),
        faces=faces,
        uvs=a["uvs"],
        uv_faces=a["uv_faces"].astype(np.int64),
        shapedirs=a["shapedirs"],
        exprdirs=a["exprdirs"],
        expression_names=[str(s) for s in a["expression_names"]],
        joint_names=["root", "eye_left", "eye_right"],
        parents=np.array([-1, 0, 0]),
        j_regressor=jreg.astype(np.float32),
        lbs_weights=lbs.astype(np.float32),
        regions=regions,
        lmk68_faces=f68,
        lmk68_bary=b68,
        shape_std=np.ones(a["shapedirs"].shape[2], np.float32),
        expression_range=(0.0, 1.0),
        extras={
            "source": str(src),
            "face_material": a["face_material"],
            "materials": [str(s) for s in a["materials"]],
            "lmk68_vertices": ICT_LMK68_VERTICES.copy(),
            "units_from_source": CM_TO_M,
        },
    )
    if "lmk_faces" in a:
        data.lmk_faces, data.lmk_bary = a["lmk_faces"].astype(np.int64), a["lmk_bary"]
    return data


def render_face_mask(data: HeadModelData) -> np.ndarray:
    """(F,) bool: triangles an opaque renderer / ray caster should draw (no helper shells, lashes)."""
    hidden = data.regions["eye_auxiliary"] | data.regions["eyelashes"]
    return ~hidden[data.faces].any(1)


def region_colors(data: HeadModelData) -> np.ndarray:
    """(V, 3) float RGB in [0, 1]: plausible flat colours per part (skin, sclera, iris, mouth, teeth)."""
    V = len(data.v_template)
    col = np.tile(np.array([0.80, 0.62, 0.52]), (V, 1))  # skin
    col[data.regions["mouth_interior"]] = (0.45, 0.15, 0.15)
    col[data.regions["teeth"]] = (0.92, 0.90, 0.84)
    v = np.asarray(data.v_template, dtype=np.float64)
    for side in ("left", "right"):
        a, b = ICT_PARTS[f"eyeball_{side}"]
        col[a:b] = (0.93, 0.92, 0.90)  # sclera
        # ICT's eyeballs are two nested shells textured upstream; without textures paint the iris
        # (radius ~5.9 mm) and pupil around the front-most point of the eyeball, on both shells.
        e = v[a:b]
        apex = e[np.argmax(e[:, 2])]
        r = np.linalg.norm(e[:, :2] - apex[:2], axis=1)
        front = e[:, 2] > e[:, 2].mean()
        col[a:b][front & (r < 0.0059)] = (0.33, 0.22, 0.13)
        col[a:b][front & (r < 0.0022)] = (0.04, 0.03, 0.03)
    return col


def _attach_embedding(data: HeadModelData, a: dict[str, np.ndarray], cpath: Path, use_cache: bool) -> None:
    """Compute the MediaPipe 478-point embedding once (renders + MediaPipe) and store it in the cache."""
    from .embedding import compute_mediapipe_embedding

    eyes = [data.regions["eye_left"], data.regions["eye_right"]]
    lf, lb = compute_mediapipe_embedding(
        data.v_template, data.faces, vertex_colors=region_colors(data), eyeball_masks=eyes, face_mask=render_face_mask(data)
    )
    data.lmk_faces, data.lmk_bary = lf.astype(np.int64), lb.astype(np.float32)
    if use_cache:
        a = dict(a, lmk_faces=lf.astype(np.int32), lmk_bary=lb.astype(np.float32))
        _save_npz(cpath, a)


def read_ict_data(path: Optional[PathLike] = None, *, landmarks: bool = True, use_cache: bool = True) -> HeadModelData:
    """Read ICT-FaceKit Light into :class:`HeadModelData` (see module docstring).

    Args:
        path: FaceXModel folder (or a folder above it), a zip/tar(.xz) archive, or None
            ($AVATAR3D_ICT, then the cache install).
        landmarks: attach the MediaPipe 478 embedding (computed and cached on first use; needs
            MediaPipe and Open3D). The 68-point embedding uses the documented vertices always.
        use_cache: read/write the compiled ``.npz`` cache.
    """
    src = find_ict(path)
    a, cpath = _load_compiled(src, use_cache)
    data = _build_data(a, src)
    if landmarks and data.lmk_faces is None:
        try:
            _attach_embedding(data, a, cpath, use_cache)
        except (ImportError, Avatar3DError) as e:  # no MediaPipe/Open3D or no detection: still usable
            warnings.warn(f"ICT: MediaPipe landmark embedding unavailable ({e}); the 478 landmarks will be zeros", stacklevel=2)
    data.validate()
    return data


def load_ict(path: Optional[PathLike] = None, *, landmarks: bool = True, use_cache: bool = True, dtype=None) -> HeadModel:
    """ICT-FaceKit Light as a :class:`HeadModel` (see :func:`read_ict_data` for arguments)."""
    import torch

    data = read_ict_data(path, landmarks=landmarks, use_cache=use_cache)
    return HeadModel(data, dtype=dtype or torch.float32)
