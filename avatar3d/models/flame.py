"""FLAME 2020 / 2023 as a :class:`HeadModel`, read without chumpy on NumPy 2.

Users download ``generic_model.pkl`` (FLAME 2020) or ``flame2023.pkl`` (FLAME 2023) after registering
at https://flame.is.tue.mpg.de. Those are Python 2 pickles holding chumpy objects; we read them with
:mod:`avatar3d.models.pickle_compat` (allow-listed globals only, so a hostile file cannot run code).

Mapping to :class:`HeadModelData` (checked against ``smplx``'s FLAME layer to 1e-5, see
``tests/test_flame.py``):

* ``shapedirs[:, :, :300]`` -> identity (``n_shape`` leading modes), ``[:, :, 300:]`` -> expression
  ``exp_000``.. (``n_expr`` leading modes). FLAME's coefficients are unit-variance PCA weights, so
  ``shape_std`` is 1 and the expression range is taken as +-3 std.
* ``posedirs`` (V, 3, 36) -> (36, 3V) as smplx does; joints are regressed after identity *and*
  expression blendshapes (``joints_from_expression``), also as smplx/FLAME do.
* Joints: FLAME's order is global, neck, jaw, eye, eye. We name them root, neck, jaw, eye_left,
  eye_right where *left is the subject's left*: with the face looking down +Z and +Y up that is the
  eye at +X. FLAME's joint 3 is normally that eye (smplx calls it ``leye``); the loader checks the
  rest-pose joint positions and reorders (weights, regressor, correctives, parents) if a file has
  them the other way round.
* Frame and units: FLAME is already in metres, +Y up, face towards +Z -- our convention -- so no
  conversion is applied. The loader checks this (eyes above the jaw, eyes in front of the neck) and
  refuses a file that is not.
* Regions from ``FLAME_masks.pkl`` when present (face, scalp, left/right_eyeball -> eyes, boundary ->
  neck_boundary, the lips' rim of the mouth hole -> mouth_interior, plus every FLAME mask under its own
  name); without it, **rough** regions are derived from the skinning weights and mesh boundary loops.
* UVs from ``FLAME_texture.npz`` (``vt``/``ft``; the texture space goes to
  ``extras["texture_space"]``, basis loaded lazily); without it a **spherical projection** (one UV per
  vertex, with a seam at the back of the head).
* Landmarks: ``landmark_embedding.npy`` (``full_lmk_faces_idx`` / ``full_lmk_bary_coords``) -> 68
  points; ``mediapipe_landmark_embedding.npz`` (105 of MediaPipe's points) -> ``extras
  ["mediapipe_partial"]``; the full 478 come from :func:`avatar3d.models.embedding.
  compute_mediapipe_embedding` on the neutral mesh (cached by the model file's hash) when it succeeds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import BadInputError, MissingFileError
from ..paths import cache_dir
from .base import HeadModel, HeadModelData
from .pickle_compat import UnsafePickleError, load_npy_object, load_pickle

__all__ = ["load_flame", "read_flame_data", "status", "detect_version", "FlameTextureSpace", "FLAME_URL", "FLAME_JOINTS"]

FLAME_URL = "https://flame.is.tue.mpg.de"
HOW_TO_GET = f"Register at {FLAME_URL}, download FLAME 2020 (generic_model.pkl) or FLAME 2023 (flame2023.pkl), and pass flame=/path/to/that file (or set $AVATAR3D_FLAME)."
FLAME_JOINTS = ["root", "neck", "jaw", "eye_left", "eye_right"]
MODEL_FILE_NAMES = ("flame2023.pkl", "generic_model.pkl", "flame2020.pkl", "flame2023_Open.pkl", "flame2023_no_jaw.pkl", "FLAME2020/generic_model.pkl", "FLAME2023/flame2023.pkl")
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
COMPANIONS = {
    "masks": ("FLAME_masks.pkl", "FLAME_masks/FLAME_masks.pkl"),
    "landmarks": ("landmark_embedding.npy",),
    "mediapipe_landmarks": ("mediapipe_landmark_embedding.npz",),
    "texture": ("FLAME_texture.npz",),
}
PathLike = Union[str, Path]
Companion = Union[PathLike, bool, None]


# ----------------------------------------------------------------------------- files
def _model_file(path: Optional[PathLike]) -> Path:
    if path is None:
        env = os.environ.get("AVATAR3D_FLAME")
        if not env:
            raise MissingFileError("FLAME model file", HOW_TO_GET)
        path = env
    p = Path(path).expanduser()
    if p.is_dir():
        for name in MODEL_FILE_NAMES:
            if (p / name).is_file():
                return p / name
        raise MissingFileError(p / "generic_model.pkl", f"No FLAME model in folder {p}. {HOW_TO_GET}")
    if not p.is_file():
        raise MissingFileError(p, HOW_TO_GET)
    return p


def _companion(kind: str, given: Companion, folder: Path) -> Optional[Path]:
    """Explicit path (must exist), ``False`` (skip), or ``None``/``True``: look beside the model."""
    if given is False:
        return None
    if given is not None and given is not True:
        p = Path(given).expanduser()
        if not p.is_file():
            raise MissingFileError(p, f"The FLAME {kind} file comes with the FLAME downloads at {FLAME_URL}.")
        return p
    for name in COMPANIONS[kind]:
        if (folder / name).is_file():
            return folder / name
    if given is True:
        raise MissingFileError(folder / COMPANIONS[kind][0], f"The FLAME {kind} file comes with the FLAME downloads at {FLAME_URL}.")
    return None


def _read_pickle(path: Path, what: str) -> Any:
    try:
        return load_pickle(path)
    except UnsafePickleError as e:
        raise BadInputError(f"Refusing to load {path}: {e}.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, OSError) as e:
        raise BadInputError(f"{path} is not a readable {what} (truncated or corrupt: {type(e).__name__}: {e}); expected the file as downloaded from {FLAME_URL}.") from None


def detect_version(path: PathLike, raw: Optional[dict] = None) -> str:
    """"2020", "2023", "2023-no-jaw" or "unknown", from a version key if the file has one, else its name."""
    if raw is not None:
        for key in ("version", "flame_version"):
            if key in raw and isinstance(raw[key], (str, int)):
                return str(raw[key])
    name = Path(path).name.lower()
    if "2023" in name:
        return "2023-no-jaw" if "no_jaw" in name else "2023"
    if "2020" in name or name == "generic_model.pkl" or "2020" in str(Path(path).parent).lower():
        return "2020"
    if "2019" in name or "2017" in name:
        return name.split(".")[0]
    return "unknown"


# ----------------------------------------------------------------------------- validation
def _array(raw: dict, key: str, path: Path) -> np.ndarray:
    val = raw[key]
    if sp.issparse(val):
        return np.asarray(val.todense())
    try:
        return np.asarray(val)
    except Exception as e:  # noqa: BLE001 - anything odd stored under a FLAME key
        raise BadInputError(f"{path}: FLAME key {key!r} is not an array ({type(val).__name__}: {e}).") from None


def _check_raw(raw: Any, path: Path) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict):
        raise BadInputError(f"{path} holds a {type(raw).__name__}, not a FLAME model dict with keys {', '.join(REQUIRED_KEYS)}.")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise BadInputError(f"{path} is not a FLAME model: missing key(s) {', '.join(missing)} (a FLAME pickle has {', '.join(REQUIRED_KEYS)}).")
    a = {k: _array(raw, k, path) for k in REQUIRED_KEYS}
    v = a["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
        raise BadInputError(f"{path}: v_template must be (V, 3) vertices (5023 in FLAME), got {v.shape}.")
    V = len(v)
    expect = {
        "f": ((None, 3), "(F, 3) triangles"),
        "shapedirs": ((V, 3, None), f"({V}, 3, 400) shape+expression basis"),
        "posedirs": ((V, 3, 36), f"({V}, 3, 36) pose correctives"),
        "J_regressor": ((5, V), f"(5, {V}) joint regressor"),
        "weights": ((V, 5), f"({V}, 5) skinning weights"),
        "kintree_table": ((2, 5), "(2, 5) kinematic tree"),
    }
    for k, (shape, desc) in expect.items():
        s = a[k].shape
        if len(s) != len(shape) or any(e is not None and e != g for e, g in zip(shape, s)):
            raise BadInputError(f"{path}: FLAME {k} must be {desc}, got {s}.")
    f = a["f"]
    if np.issubdtype(f.dtype, np.floating) and np.isfinite(f).all() and (f == np.round(f)).all():
        f = a["f"] = f.astype(np.int64)  # faces stored as a chumpy Ch come back as floats
    if not np.issubdtype(f.dtype, np.integer) or f.min() < 0 or f.max() >= V:
        raise BadInputError(f"{path}: FLAME faces f must be integer indices in 0..{V - 1}.")
    for k in ("v_template", "shapedirs", "posedirs", "weights", "J_regressor"):
        if not np.issubdtype(a[k].dtype, np.floating) or not np.isfinite(a[k]).all():
            raise BadInputError(f"{path}: FLAME {k} must be finite floating-point numbers.")
    return a


def _parents(kintree: np.ndarray) -> np.ndarray:
    # Row 0 holds parents with the root's stored as uint32 max (4294967295) or -1.
    par = kintree[0].astype(np.int64)
    par[0] = -1
    return par


def _eye_order(joints: np.ndarray, path: Path) -> list[int]:
    """FLAME joint indices for root, neck, jaw, subject's-left eye, subject's-right eye."""
    eyes, jaw, root = joints[3:5], joints[2], joints[0]
    # Frame check: both eyes above the jaw joint and in front of the root (face towards +Z, +Y up).
    # A warning, not an error: the maths still works in another frame, only the naming may not.
    if not (eyes[:, 1].min() > jaw[1] and eyes[:, 2].min() > root[2]):
        warnings.warn(f"{path}: FLAME joints are not in the expected frame (+Y up, face towards +Z); eyes at {eyes.round(3).tolist()}, "
                      f"jaw at {jaw.round(3).tolist()}: eye_left/eye_right may be swapped.", stacklevel=3)
    return [0, 1, 2, 3, 4] if eyes[0, 0] >= eyes[1, 0] else [0, 1, 2, 4, 3]


# ----------------------------------------------------------------------------- regions
def _boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Vertex ids of each boundary loop (edges used by exactly one triangle)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    b = uniq[cnt == 1]
    if len(b) == 0:
        return []
    n = int(faces.max()) + 1
    adj = sp.coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n, n))
    ncomp, lab = sp.csgraph.connected_components(adj, directed=False)
    verts = np.unique(b)
    return [verts[lab[verts] == c] for c in np.unique(lab[verts])]


def _mouth_loop(v: np.ndarray, loops: list[np.ndarray], neck: Optional[np.ndarray], eyes: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """The boundary loop of the mouth opening: centred, in front, below the eyes, not the neck hole
    (FLAME also has eye-socket loops: those sit beside the midline and are skipped)."""
    eye_y = joints[3:5, 1].mean()
    half_ipd = 0.5 * abs(joints[3, 0] - joints[4, 0])
    best, best_score = np.zeros(0, np.int64), -np.inf
    for lp in loops:
        if neck is not None and np.isin(lp, neck).mean() > 0.5:
            continue
        if eyes[lp].mean() > 0.5:
            continue
        c = v[lp].mean(0)
        if c[1] >= eye_y or c[2] <= joints[2, 2] or abs(c[0]) > 0.5 * half_ipd:
            continue
        score = c[2] - abs(c[0])
        if score > best_score:
            best, best_score = lp, score
    return best


def _regions_from_masks(masks: dict, v: np.ndarray, faces: np.ndarray, joints: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    V = len(v)
    out: dict[str, np.ndarray] = {}
    for name, idx in masks.items():
        idx = np.asarray(idx)
        if idx.dtype == bool and idx.shape == (V,):
            m = idx
        else:
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (idx.size and (idx.min() < 0 or idx.max() >= V)):
                raise BadInputError(f"{path}: FLAME mask {name!r} must be vertex indices in 0..{V - 1}.")
            m = np.zeros(V, bool)
            m[idx] = True
        out[str(name)] = m
    need = [k for k in ("face", "scalp", "left_eyeball", "right_eyeball", "boundary") if k not in out]
    if need:
        raise BadInputError(f"{path}: FLAME masks file lacks {', '.join(need)} (expected FLAME_masks.pkl from {FLAME_URL}).")
    eyes = out["left_eyeball"] | out["right_eyeball"]
    mouth = np.zeros(V, bool)
    mouth[_mouth_loop(v, _boundary_loops(faces), np.flatnonzero(out["boundary"]), eyes, joints)] = True
    if "lips" in out and (mouth & out["lips"]).any():
        mouth &= out["lips"]
    regions = {"face": out["face"], "scalp": out["scalp"], "eyes": eyes, "mouth_interior": mouth, "neck_boundary": out["boundary"]}
    regions.update({k: m for k, m in out.items() if k not in regions})
    return regions


def _regions_geometric(v: np.ndarray, faces: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> dict[str, np.ndarray]:
    """Rough regions without FLAME_masks.pkl: eyes from skinning, neck/mouth from boundary loops,
    face/scalp from position relative to the eyes (documented as approximate)."""
    V = len(v)
    eyes = weights[:, 3:5].max(1) > 0.5
    loops = _boundary_loops(faces)
    neck = np.zeros(V, bool)
    if loops:
        neck[min(loops, key=lambda lp: v[lp, 1].mean())] = True
    mouth = np.zeros(V, bool)
    mouth[_mouth_loop(v, loops, np.flatnonzero(neck), eyes, joints)] = True
    head = ~eyes
    lo, hi = v[head].min(0), v[head].max(0)
    eye_y, chin_y = joints[3:5, 1].mean(), joints[2, 1]
    span = hi - lo
    front = v[:, 2] > joints[0, 2] + 0.25 * (hi[2] - joints[0, 2])
    face = head & front & (v[:, 1] < eye_y + 0.35 * (hi[1] - eye_y)) & (v[:, 1] > chin_y - 0.5 * (chin_y - lo[1])) & (np.abs(v[:, 0]) < 0.4 * span[0])
    scalp = head & ~face & (v[:, 1] > eye_y + 0.1 * (hi[1] - eye_y))
    return {"face": face, "scalp": scalp, "eyes": eyes, "mouth_interior": mouth, "neck_boundary": neck}


# ----------------------------------------------------------------------------- UVs and texture
class FlameTextureSpace:
    """FLAME's PCA texture space (``FLAME_texture.npz``): ``mean`` (H, W, 3), ``basis(n)`` (H, W, 3, n).

    The basis is large (512x512x3x200 in the real file), so it is read only when asked for.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        with np.load(self.path, allow_pickle=False) as z:
            keys = set(z.files)
            for k in ("mean", "tex_dir", "vt", "ft"):
                if k not in keys:
                    raise BadInputError(f"{self.path}: FLAME texture space must have mean, tex_dir, vt, ft; missing {k!r}.")
            self.mean = np.asarray(z["mean"], np.float32)
            self.vt = np.asarray(z["vt"], np.float64)
            self.ft = np.asarray(z["ft"], np.int64)
        if self.mean.ndim != 3 or self.mean.shape[2] != 3:
            raise BadInputError(f"{self.path}: texture mean must be (H, W, 3), got {self.mean.shape}.")
        self._basis: Optional[np.ndarray] = None

    def basis(self, n: Optional[int] = None) -> np.ndarray:
        """(H, W, 3, n) texture PCA directions (all when n is None)."""
        if self._basis is None:
            with np.load(self.path, allow_pickle=False) as z:
                self._basis = np.asarray(z["tex_dir"], np.float32)
        return self._basis if n is None else self._basis[..., :n]

    def texture(self, coeffs: np.ndarray) -> np.ndarray:
        """(H, W, 3) texture for (n,) coefficients, in the file's value range (0..255 for FLAME)."""
        c = np.asarray(coeffs, np.float32)
        return self.mean + self.basis(len(c)) @ c

    def __repr__(self) -> str:
        return f"FlameTextureSpace({self.path.name}, {self.mean.shape[1]}x{self.mean.shape[0]})"


def _spherical_uvs(v: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(V, 2) UVs by longitude/latitude around ``center``; u = 0.5 at the front (+Z)."""
    d = v - center
    r = np.linalg.norm(d, axis=1) + 1e-12
    u = 0.5 + np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi)
    w = 0.5 + np.arcsin(np.clip(d[:, 1] / r, -1, 1)) / np.pi
    return np.stack([u, w], 1)


# ----------------------------------------------------------------------------- landmarks
def _landmarks68(path: Path, F: int) -> tuple[np.ndarray, np.ndarray, dict]:
    try:
        emb = load_npy_object(path)
    except UnsafePickleError as e:
        raise BadInputError(f"Refusing to load {path}: {e}.") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as e:
        raise BadInputError(f"{path} is not a readable FLAME landmark embedding ({type(e).__name__}: {e}).") from None
    if not isinstance(emb, dict) or "full_lmk_faces_idx" not in emb or "full_lmk_bary_coords" not in emb:
        raise BadInputError(f"{path}: expected a landmark_embedding.npy dict with full_lmk_faces_idx and full_lmk_bary_coords.")
    f = np.asarray(emb["full_lmk_faces_idx"]).reshape(-1).astype(np.int64)
    b = np.asarray(emb["full_lmk_bary_coords"], np.float64).reshape(-1, 3)
    if f.shape != (68,) or b.shape != (68, 3) or f.min() < 0 or f.max() >= F:
        raise BadInputError(f"{path}: full_lmk_faces_idx/full_lmk_bary_coords must be 68 triangles in 0..{F - 1} and (68, 3) barycentrics.")
    extra = {k: np.asarray(emb[k]) for k in ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords") if k in emb}
    return f, b, extra


def _mediapipe_partial(path: Path, F: int) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        need = [k for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices") if k not in z.files]
        if need:
            raise BadInputError(f"{path}: mediapipe_landmark_embedding.npz lacks {', '.join(need)}.")
        f, b, i = (np.asarray(z[k]) for k in ("lmk_face_idx", "lmk_b_coords", "landmark_indices"))
    n = len(i)
    if f.shape != (n,) or b.shape != (n, 3) or f.min() < 0 or f.max() >= F or i.min() < 0 or i.max() >= 478:
        raise BadInputError(f"{path}: expected matching (N,) lmk_face_idx in 0..{F - 1}, (N, 3) lmk_b_coords and (N,) landmark_indices in 0..477.")
    return {"landmark_indices": i.astype(np.int64), "lmk_faces": f.astype(np.int64), "lmk_bary": b.astype(np.float64)}


def _file_hash(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _mediapipe_full(data: HeadModelData, model_path: Path, texture: Optional[FlameTextureSpace]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """478-point embedding via MediaPipe on renders of the neutral mesh, cached by the model file's
    hash (a failure is cached too, so a mesh MediaPipe cannot read costs its renders only once)."""
    key = _file_hash(model_path)
    cpath, failed = cache_dir("flame") / f"mp478-{key}.npz", cache_dir("flame") / f"mp478-{key}.failed"
    if cpath.is_file():
        with np.load(cpath) as z:
            return z["lmk_faces"].astype(np.int64), z["lmk_bary"].astype(np.float64)
    if failed.is_file():
        return None
    try:
        from .embedding import compute_mediapipe_embedding
    except ImportError:
        return None
    kw: dict[str, Any] = {}
    if texture is not None:
        tex = texture.mean / (255.0 if texture.mean.max() > 1.5 else 1.0)
        kw = {"texture": np.clip(tex, 0, 1), "uvs": data.uvs, "uv_faces": data.uv_faces}
    eyes = [data.regions["left_eyeball"], data.regions["right_eyeball"]] if "left_eyeball" in data.regions else None
    try:
        faces, bary = compute_mediapipe_embedding(data.v_template, data.faces, eyeball_masks=eyes, **kw)
        faces, bary = np.asarray(faces, np.int64), np.asarray(bary, np.float64)
        if faces.shape != (478,) or bary.shape != (478, 3) or faces.min() < 0 or faces.max() >= len(data.faces):
            raise ValueError(f"embedding has shapes {faces.shape} and {bary.shape}")
    except Exception as e:  # noqa: BLE001 - optional step: a failed detection leaves landmarks unset
        warnings.warn(f"FLAME: could not place the 478 MediaPipe landmarks automatically ({e}); landmarks stay unset.", stacklevel=3)
        failed.write_text(str(e))
        return None
    np.savez(cpath, lmk_faces=faces, lmk_bary=bary)
    return faces, bary


# ----------------------------------------------------------------------------- public API
def read_flame_data(
    path: Optional[PathLike] = None,
    masks: Companion = None,
    landmarks: Companion = None,
    mediapipe_landmarks: Companion = None,
    texture: Companion = None,
    n_shape: int = 300,
    n_expr: int = 100,
    embed_mediapipe: bool = True,
) -> HeadModelData:
    """Read a FLAME pickle (+ optional companion files) into :class:`HeadModelData`.

    Args:
        path: the model file (or a folder holding it); None uses ``$AVATAR3D_FLAME``.
        masks, landmarks, mediapipe_landmarks, texture: companion file paths; None looks for the
            published file names beside the model, False skips, True requires them.
        n_shape, n_expr: leading identity (<= 300) and expression (<= 100) modes to keep.
        embed_mediapipe: place MediaPipe's 478 landmarks on the neutral mesh (renders + MediaPipe, a
            few seconds once, then cached by file hash); on failure a warning and no 478 landmarks.
    Raises:
        MissingFileError with the registration URL; BadInputError (a ValueError) naming what was
        expected for corrupt/truncated files, wrong keys or shapes, or a refused (unsafe) pickle.
    """
    mpath = _model_file(path)
    raw = _read_pickle(mpath, "FLAME model pickle")
    a = _check_raw(raw, mpath)
    version = detect_version(mpath, raw)
    v = a["v_template"].astype(np.float64)
    faces = a["f"].astype(np.int64)
    D = a["shapedirs"].shape[2]
    # FLAME 2020/2023 store 300 identity + 100 expression modes; very old small releases 10 + 10.
    s_total, e_total = (300, D - 300) if D > 300 else (D // 2, D - D // 2)
    for nm, n, tot in (("n_shape", n_shape, s_total), ("n_expr", n_expr, e_total)):
        if not isinstance(n, (int, np.integer)) or not 0 < n <= tot:
            raise ValueError(f"{nm} must be an integer in 1..{tot} for {mpath.name} ({D} blendshape modes), got {n!r}")
    shapedirs = a["shapedirs"][:, :, :n_shape].astype(np.float64)
    exprdirs = a["shapedirs"][:, :, s_total : s_total + n_expr].astype(np.float64)
    posedirs = a["posedirs"].reshape(-1, a["posedirs"].shape[-1]).T.astype(np.float64)  # (36, 3V), smplx layout
    jreg = a["J_regressor"].astype(np.float64)
    weights = a["weights"].astype(np.float64)
    parents = _parents(a["kintree_table"])
    if not (parents[1:] >= 0).all() or not (parents[1:] < np.arange(1, 5)).all():
        raise BadInputError(f"{mpath}: FLAME kintree_table must list each joint's parent before it (root, neck, jaw, eyes), got {a['kintree_table'][0].tolist()}.")
    order = _eye_order(jreg @ v, mpath)
    if order != [0, 1, 2, 3, 4]:
        inv = np.argsort(order)
        jreg, weights = jreg[order], weights[:, order]
        parents = np.array([-1] + [int(inv[parents[j]]) for j in order[1:]])
        posedirs = posedirs.reshape(4, 9, -1)[[j - 1 for j in order[1:]]].reshape(36, -1)
    joints_rest = jreg @ v

    folder = mpath.parent
    extras: dict[str, Any] = {"flame_path": str(mpath), "flame_joint_index": order, "bs_style": raw.get("bs_style"), "bs_type": raw.get("bs_type")}
    notes: list[str] = []
    mask_path = _companion("masks", masks, folder)
    if mask_path is not None:
        mdict = _read_pickle(mask_path, "FLAME masks pickle")
        if not isinstance(mdict, dict):
            raise BadInputError(f"{mask_path}: expected a dict of FLAME vertex masks, got {type(mdict).__name__}.")
        regions = _regions_from_masks(mdict, v, faces, joints_rest, mask_path)
    else:
        regions = _regions_geometric(v, faces, weights, joints_rest)
        notes.append("regions are rough (derived geometrically; pass FLAME_masks.pkl for the official masks)")

    tex_path = _companion("texture", texture, folder)
    tex_space = FlameTextureSpace(tex_path) if tex_path is not None else None
    if tex_space is not None and tex_space.ft.shape == faces.shape and tex_space.ft.max() < len(tex_space.vt):
        uvs, uv_faces = tex_space.vt, tex_space.ft
        extras["texture_space"] = tex_space
    else:
        if tex_space is not None:
            raise BadInputError(f"{tex_path}: texture ft must be {faces.shape} indices into vt, got {tex_space.ft.shape}.")
        uvs, uv_faces = _spherical_uvs(v, joints_rest[3:5].mean(0) * [0, 1, 0] + [0, 0, joints_rest[0, 2]]), faces
        notes.append("UVs are a spherical projection (pass FLAME_texture.npz for FLAME's UV layout)")

    lmk68_f = lmk68_b = None
    lpath = _companion("landmarks", landmarks, folder)
    if lpath is not None:
        lmk68_f, lmk68_b, dyn = _landmarks68(lpath, len(faces))
        extras["landmark_embedding"] = dyn
    mp_path = _companion("mediapipe_landmarks", mediapipe_landmarks, folder)
    if mp_path is not None:
        extras["mediapipe_partial"] = _mediapipe_partial(mp_path, len(faces))
    extras["notes"] = notes

    data = HeadModelData(
        name="flame",
        version=version,
        v_template=v,
        faces=faces,
        uvs=np.asarray(uvs, np.float64),
        uv_faces=np.asarray(uv_faces, np.int64),
        shapedirs=shapedirs,
        exprdirs=exprdirs,
        expression_names=[f"exp_{i:03d}" for i in range(n_expr)],
        joint_names=list(FLAME_JOINTS),
        parents=parents,
        j_regressor=jreg,
        lbs_weights=weights,
        posedirs=posedirs,
        regions=regions,
        lmk68_faces=lmk68_f,
        lmk68_bary=lmk68_b,
        shape_std=np.ones(n_shape),
        expression_range=(-3.0, 3.0),
        extras=extras,
        joints_from_expression=True,
    )
    if embed_mediapipe:
        full = _mediapipe_full(data, mpath, tex_space)
        if full is not None:
            data.lmk_faces, data.lmk_bary = full
            if data.lmk68_faces is None:  # no landmark_embedding.npy: map the 478 to iBUG 68
                try:
                    from .embedding import ibug68_from_mediapipe

                    data.lmk68_faces, data.lmk68_bary = ibug68_from_mediapipe(*full)
                    notes.append("68 landmarks derived from the MediaPipe embedding (pass landmark_embedding.npy for FLAME's own)")
                except Exception as e:  # noqa: BLE001 - optional: the 478 are still usable
                    warnings.warn(f"FLAME: no 68-point landmarks ({e}).", stacklevel=2)
    try:
        data.validate()
    except ValueError as e:
        raise BadInputError(f"{mpath}: {e}") from None
    return data


def load_flame(
    path: Optional[PathLike] = None,
    masks: Companion = None,
    landmarks: Companion = None,
    mediapipe_landmarks: Companion = None,
    texture: Companion = None,
    n_shape: int = 300,
    n_expr: int = 100,
    dtype: torch.dtype = torch.float32,
    embed_mediapipe: bool = True,
    **kw: Any,
) -> HeadModel:
    """FLAME 2020/2023 as a :class:`HeadModel` (see module docstring and :func:`read_flame_data`)."""
    if kw:
        raise TypeError(f"load_flame got unexpected argument(s) {', '.join(kw)}")
    data = read_flame_data(path, masks=masks, landmarks=landmarks, mediapipe_landmarks=mediapipe_landmarks, texture=texture, n_shape=n_shape, n_expr=n_expr, embed_mediapipe=embed_mediapipe)
    return HeadModel(data, dtype=dtype)


def status() -> tuple[bool, str]:
    """For ``avatar3d info``: whether a FLAME file is configured via ``$AVATAR3D_FLAME``."""
    env = os.environ.get("AVATAR3D_FLAME")
    if not env:
        return False, f"needs flame=PATH (or $AVATAR3D_FLAME); register at {FLAME_URL} to download FLAME 2020/2023"
    try:
        p = _model_file(env)
    except MissingFileError:
        return False, f"$AVATAR3D_FLAME={env} does not exist; register at {FLAME_URL} to download FLAME 2020/2023"
    return True, f"FLAME {detect_version(p)} at {p}"
