"""Synthetic FLAME-format files, for tests and demos (the real FLAME cannot be shipped).

:func:`write_synthetic_flame` writes a ``generic_model.pkl``-style pickle with FLAME's real key set and
shapes -- ``v_template`` (5023, 3), ``f`` (9976, 3), ``shapedirs`` (5023, 3, 400) as a chumpy ``Ch``,
``posedirs`` (5023, 3, 36), ``J_regressor`` scipy.sparse csc (5, 5023), ``weights`` (5023, 5),
``kintree_table`` (2, 5), ``J`` (a chumpy reshape node), ``bs_style``, ``bs_type`` -- as a
**Python 2 style** protocol-2 pickle (byte strings as ``BINSTRING``, ``numpy.core`` and
``copy_reg`` module names, chumpy classes referenced as ``chumpy.ch.Ch`` / ``chumpy.reordering.*``).
chumpy is never imported: stand-in classes with those names live in throwaway modules registered in
``sys.modules`` only while pickling.

The mesh is not a real head: an ellipsoid "head" open at the neck with a mouth slit, plus two closed
eyeballs, sized so the vertex/face counts match FLAME exactly (5023 / 9976). The bases are smooth
random fields. Companion files (masks, landmark embeddings, texture space, and the plain-NumPy
pickle + embeddings that ``smplx``'s FLAME layer reads) are written by :func:`write_companions` and
:func:`write_smplx_flame`.
"""

from __future__ import annotations

import pickle
import struct
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import scipy.sparse as sp

from ..geometry import face_normals_np

__all__ = ["SyntheticFlame", "make_synthetic_flame", "write_synthetic_flame", "write_companions", "write_smplx_flame"]

N_VERTS, N_FACES = 5023, 9976
# Head: M longitudes x R rings + top pole, open at the neck; mouth slit removes MOUTH_QUADS quads.
# Eyeballs: ME longitudes x RE rings + 2 poles. Chosen so V = 5023 and F = 9976 exactly:
# V = M*R + 1 + 2*(ME*RE + 2), F = 2*M*R - M - 2*MOUTH_QUADS + 4*ME*RE.
M, R, MOUTH_QUADS, ME, RE = 48, 84, 6, 29, 17
HEAD_CENTER = np.array([0.0, 0.02, 0.0])
HEAD_RADII = np.array([0.075, 0.105, 0.095])
EYE_RADIUS = 0.0125
# FLAME's joint order: global (root), neck, jaw, eye 3, eye 4. In our synthetic file joint 3 is the
# eye at +X, i.e. the subject's left when the face looks down +Z with +Y up.
EYE_CENTERS = np.array([[0.032, 0.035, 0.078], [-0.032, 0.035, 0.078]])


class SyntheticFlame(dict):
    """The FLAME pickle content as plain NumPy (``shapedirs`` etc. are ndarrays here)."""


# ----------------------------------------------------------------------------- geometry
def _uv_sphere_closed(center: np.ndarray, radius: float, nlon: int, nrings: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    theta = np.pi * np.arange(1, nrings + 1) / (nrings + 1)
    phi = 2 * np.pi * np.arange(nlon) / nlon
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]]) * radius + center
    idx = lambda i, j: 1 + i * nlon + (j % nlon)  # noqa: E731
    f = []
    for j in range(nlon):
        f.append([0, idx(0, j + 1), idx(0, j)])
        f.append([len(v) - 1, idx(nrings - 1, j), idx(nrings - 1, j + 1)])
    for i in range(nrings - 1):
        for j in range(nlon):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
            f += [[a, b, d], [a, d, c]]
    return v, np.asarray(f) + offset


def _head() -> tuple[np.ndarray, np.ndarray, int]:
    """Open ellipsoid (neck hole at the bottom) with a nose bump and a mouth slit; returns v, f, mouth ring."""
    theta = 0.82 * np.pi * np.arange(1, R + 1) / R
    phi = 2 * np.pi * (np.arange(M) - M // 2) / M  # phi = 0 faces +Z
    t, p = np.meshgrid(theta, phi, indexing="ij")
    unit = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1)
    v = unit * HEAD_RADII + HEAD_CENTER
    nose = 0.022 * np.exp(-(p**2) / 0.02 - (t - 0.52 * np.pi) ** 2 / 0.01)  # a bump so the face has a front
    v[..., 2] += nose
    v = np.concatenate([[HEAD_CENTER + [0, HEAD_RADII[1], 0]], v.reshape(-1, 3)])
    idx = lambda i, j: 1 + i * M + (j % M)  # noqa: E731
    mouth_ring = int(round(0.61 * np.pi / (0.82 * np.pi) * R))
    front = M // 2  # longitude index of phi = 0
    slit = {(mouth_ring, (front + k) % M) for k in range(-MOUTH_QUADS // 2, MOUTH_QUADS - MOUTH_QUADS // 2)}
    f = [[0, idx(0, j), idx(0, j + 1)] for j in range(M)]
    for i in range(R - 1):
        for j in range(M):
            if (i, j) in slit:
                continue
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
            f += [[a, c, d], [a, d, b]]
    return v, np.asarray(f), mouth_ring


def _orient_outward(v: np.ndarray, f: np.ndarray, center: np.ndarray) -> np.ndarray:
    n = face_normals_np(v, f, normalize=False)
    outward = ((v[f].mean(1) - center) * n).sum(1) > 0
    return f if outward.mean() > 0.5 else f[:, ::-1].copy()


def _smooth_fields(pos: np.ndarray, n: int, scale: float, rng: np.random.Generator, k: int = 48) -> np.ndarray:
    """(V, 3, n) smooth random displacement fields (random Fourier features of position)."""
    W = rng.normal(0, 25.0, (3, k))  # ~4 cm wavelengths
    b = rng.uniform(0, 2 * np.pi, k)
    feats = np.sin(pos @ W + b) / np.sqrt(k)  # (V, k)
    coef = rng.normal(0, 1, (3, k, n))
    return np.einsum("vk,ckn->vcn", feats, coef) * scale


def make_synthetic_flame(seed: int = 0, swap_eyes: bool = False) -> SyntheticFlame:
    """Build FLAME-format content (plain NumPy). ``swap_eyes`` puts joint 3 at -X (the subject's right)."""
    rng = np.random.default_rng(seed)
    vh, fh, mouth_ring = _head()
    fh = _orient_outward(vh, fh, HEAD_CENTER)
    eyes = EYE_CENTERS[::-1] if swap_eyes else EYE_CENTERS
    parts_v, parts_f, off = [vh], [fh], len(vh)
    eye_ids = []
    for c in eyes:
        ve, fe = _uv_sphere_closed(c, EYE_RADIUS, ME, RE, off)
        fe = _orient_outward(np.concatenate(parts_v + [ve]), fe, c)
        eye_ids.append(np.arange(off, off + len(ve)))
        parts_v.append(ve)
        parts_f.append(fe)
        off += len(ve)
    v = np.concatenate(parts_v)
    f = np.concatenate(parts_f).astype(np.uint32)
    assert v.shape == (N_VERTS, 3) and f.shape == (N_FACES, 3), (v.shape, f.shape)
    V = len(v)
    head = np.arange(len(vh))
    ring_of = np.full(V, -1)
    ring_of[1 : len(vh)] = (head[1:] - 1) // M
    neck_loop = head[ring_of[head] == R - 1]
    neck_ring = head[ring_of[head] == R - 12]
    jaw_ring = head[ring_of[head] == mouth_ring + 2]

    # Joint regressor: root = neck-hole loop, neck = a ring above it, jaw = a ring below the mouth,
    # eyes = their eyeballs; random positive weights normalised per row (like FLAME's, sparse).
    rows = [neck_loop, neck_ring, jaw_ring, eye_ids[0], eye_ids[1]]
    data, ri, ci = [], [], []
    for j, ids in enumerate(rows):
        w = rng.uniform(0.5, 1.5, len(ids))
        data.append(w / w.sum())
        ri.append(np.full(len(ids), j))
        ci.append(ids)
    J_reg = sp.csc_matrix((np.concatenate(data), (np.concatenate(ri), np.concatenate(ci))), shape=(5, V))

    # Skinning weights: eyeballs follow their eye joint; below the mouth in front follows the jaw
    # (smoothly); the lowest rings follow the root; everything else the neck.
    W = np.zeros((V, 5))
    rel = (v - HEAD_CENTER) / HEAD_RADII
    below = np.clip((ring_of - mouth_ring + 1) / 4.0, 0, 1) * np.clip((rel[:, 2] - 0.1) / 0.4, 0, 1)
    root = np.clip((ring_of - (R - 10)) / 8.0, 0, 1)
    jaw = below * (1 - root)
    W[head, 0] = root[head]
    W[head, 2] = jaw[head]
    W[head, 1] = 1 - W[head, 0] - W[head, 2]
    W[eye_ids[0], 3] = 1
    W[eye_ids[1], 4] = 1

    shapedirs = _smooth_fields(v, 300, 0.0008, rng)  # ~1 cm overall at 1 std, like FLAME
    exprdirs = _smooth_fields(v, 100, 0.0012, rng) * np.clip(rel[:, 2:3, None] + 0.2, 0, 1)  # mostly the face
    posedirs = _smooth_fields(v, 36, 0.001, rng)
    posedirs[np.concatenate(eye_ids)] = 0  # FLAME's eyeballs have no pose correctives
    kintree = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64)
    return SyntheticFlame(
        v_template=v,
        f=f,
        shapedirs=np.concatenate([shapedirs, exprdirs], 2),
        posedirs=posedirs,
        J_regressor=J_reg,
        weights=W,
        kintree_table=kintree,
        J=np.asarray(J_reg @ v),
        bs_style="lbs",
        bs_type="lrotmin",
    )


# ----------------------------------------------------------------------------- Python-2 style pickling
@contextmanager
def _fake_chumpy() -> Iterator[tuple[type, type]]:
    """Register stand-in ``chumpy.ch.Ch`` / ``chumpy.reordering.Reshape`` classes while pickling."""

    class Ch:
        def __init__(self, x: np.ndarray):
            self.x = np.asarray(x, np.float64)

        def __getstate__(self) -> dict:
            # What chumpy pickles: its __dict__ without the weak-ref caches.
            return {"x": self.x, "_dirty_vars": set(), "_itr": None, "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False}

    class Reshape:
        def __init__(self, a: "Ch", newshape: tuple):
            self.a, self.newshape = a, newshape

        def __getstate__(self) -> dict:
            return {"a": self.a, "newshape": self.newshape, "_dirty_vars": {"a", "newshape"}, "_itr": None, "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False}

    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch", "chumpy.reordering")}
    pkg, ch, reo = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch"), types.ModuleType("chumpy.reordering")
    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Reshape.__module__, Reshape.__qualname__ = "chumpy.reordering", "Reshape"
    ch.Ch, reo.Reshape, pkg.ch, pkg.reordering = Ch, Reshape, ch, reo
    sys.modules.update({"chumpy": pkg, "chumpy.ch": ch, "chumpy.reordering": reo})
    try:
        yield Ch, Reshape
    finally:
        for k, m in saved.items():
            if m is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = m


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # the pure-Python pickler is overridable
    """Protocol 2 with Python 2 conventions: bytes as ``str`` opcodes, ``numpy.core`` and old scipy paths."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]
    _RENAME = {"numpy._core.multiarray": "numpy.core.multiarray", "numpy._core.numeric": "numpy.core.numeric", "scipy.sparse._csc": "scipy.sparse.csc"}

    def _binstring(self, data: bytes) -> None:
        n = len(data)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + data)

    def save_py2_str(self, obj: bytes) -> None:
        self._binstring(obj)
        self.memoize(obj)

    def save_py2_text(self, obj: str) -> None:
        # Python 2 wrote ASCII str (dict keys, dtype codes, 'lbs') as byte strings too.
        if not obj.isascii():
            return pickle._Pickler.save_str(self, obj)  # type: ignore[attr-defined]
        self._binstring(obj.encode("ascii"))
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_text

    def save_global(self, obj: object, name: Optional[str] = None) -> None:
        module = getattr(obj, "__module__", None)
        name = name or getattr(obj, "__qualname__", None) or obj.__name__  # type: ignore[attr-defined]
        if module in self._RENAME:
            self.write(pickle.GLOBAL + self._RENAME[module].encode() + b"\n" + name.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_synthetic_flame(path: Union[str, Path], content: Optional[SyntheticFlame] = None, seed: int = 0, chumpy_keys: tuple[str, ...] = ("shapedirs", "v_template")) -> SyntheticFlame:
    """Write a FLAME-format pickle the way the official files are stored; returns the content.

    ``chumpy_keys`` are stored as ``chumpy.ch.Ch``; ``J`` as a ``chumpy.reordering.Reshape`` of a Ch.
    """
    content = content if content is not None else make_synthetic_flame(seed)
    with _fake_chumpy() as (Ch, Reshape):
        out = {}
        for k, val in content.items():
            if k in chumpy_keys:
                out[k] = Ch(val)
            elif k == "J":
                out[k] = Reshape(Ch(np.asarray(val).ravel()), tuple(np.shape(val)))
            else:
                out[k] = val
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            _Py2Pickler(fh, protocol=2, fix_imports=True).dump(out)
    return content


def _front_faces(content: SyntheticFlame, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    v, f = content["v_template"], content["f"].astype(np.int64)
    c = v[f].mean(1)
    head = f.max(1) < len(v) - 2 * (ME * RE + 2)
    cand = np.flatnonzero(head & (c[:, 2] > 0.05) & (np.abs(c[:, 0]) < 0.06))
    faces = rng.choice(cand, n, replace=len(cand) < n)
    bary = rng.dirichlet(np.ones(3), n)
    return faces.astype(np.int64), bary


def write_companions(folder: Union[str, Path], content: SyntheticFlame, seed: int = 1, texture_size: int = 32, texture_modes: int = 5) -> dict[str, Path]:
    """Write ``FLAME_masks.pkl``, ``landmark_embedding.npy``, ``mediapipe_landmark_embedding.npz`` and
    ``FLAME_texture.npz`` in their published layouts (masks as vertex index arrays, ...)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    v = content["v_template"]
    V = len(v)
    n_eye = ME * RE + 2
    left_eye, right_eye = np.arange(V - 2 * n_eye, V - n_eye), np.arange(V - n_eye, V)
    head = np.arange(V - 2 * n_eye)
    rel = (v - HEAD_CENTER) / HEAD_RADII
    ring = np.full(V, -1)
    ring[1 : len(head)] = (head[1:] - 1) // M
    face = head[(rel[head, 2] > 0.35) & (rel[head, 1] < 0.55)]
    scalp = head[(rel[head, 1] > 0.3) & (rel[head, 2] < 0.35)]
    lips = head[(np.abs(rel[head, 1] + 0.35) < 0.12) & (rel[head, 2] > 0.6) & (np.abs(rel[head, 0]) < 0.4)]
    masks = {
        "face": face, "scalp": scalp, "left_eyeball": left_eye, "right_eyeball": right_eye, "lips": lips,
        "boundary": head[ring[head] == R - 1], "neck": head[ring[head] >= R - 12],
        "nose": head[(rel[head, 2] > 0.8) & (np.abs(rel[head, 1] - 0.05) < 0.15)],
        "forehead": head[(rel[head, 1] > 0.35) & (rel[head, 2] > 0.5)],
        "eye_region": head[(np.abs(rel[head, 1] - 0.14) < 0.15) & (rel[head, 2] > 0.5) & (np.abs(rel[head, 0]) > 0.15)],
    }
    paths = {"masks": folder / "FLAME_masks.pkl", "landmarks": folder / "landmark_embedding.npy",
             "mediapipe_landmarks": folder / "mediapipe_landmark_embedding.npz", "texture": folder / "FLAME_texture.npz"}
    with open(paths["masks"], "wb") as fh:
        _Py2Pickler(fh, protocol=2, fix_imports=True).dump({k: m.astype(np.int64) for k, m in masks.items()})
    f68, b68 = _front_faces(content, 68, rng)
    fs, bs = _front_faces(content, 51, rng)
    fd, bd = _front_faces(content, 79 * 17, rng)
    emb = {
        "static_lmk_faces_idx": fs, "static_lmk_bary_coords": bs,
        "dynamic_lmk_faces_idx": fd.reshape(79, 17), "dynamic_lmk_bary_coords": bd.reshape(79, 17, 3),
        "full_lmk_faces_idx": f68[None], "full_lmk_bary_coords": b68[None],
    }
    np.save(paths["landmarks"], np.array(emb, dtype=object), allow_pickle=True)
    fm, bm = _front_faces(content, 105, rng)
    np.savez(paths["mediapipe_landmarks"], lmk_face_idx=fm, lmk_b_coords=bm, landmark_indices=np.sort(rng.choice(468, 105, replace=False)))
    vt = np.stack([0.5 + np.arctan2(rel[:, 0], rel[:, 2]) / (2 * np.pi), 0.5 + np.arcsin(np.clip(rel[:, 1], -1, 1)) / np.pi], 1)
    s, k = texture_size, texture_modes
    np.savez(paths["texture"], mean=rng.uniform(0, 255, (s, s, 3)), tex_dir=rng.normal(0, 10, (s, s, 3, k)), vt=vt, ft=content["f"].astype(np.int64))
    return paths


def write_smplx_flame(folder: Union[str, Path], content: SyntheticFlame) -> Path:
    """Write what ``smplx.FLAME(folder)`` reads: ``FLAME_NEUTRAL.pkl`` (plain NumPy, no chumpy),
    ``flame_static_embedding.pkl`` and ``flame_dynamic_embedding.npy``. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "FLAME_NEUTRAL.pkl", "wb") as fh:
        pickle.dump(dict(content), fh, protocol=4)
    rng = np.random.default_rng(2)
    fs, bs = _front_faces(content, 51, rng)
    fd, bd = _front_faces(content, 79 * 17, rng)
    with open(folder / "flame_static_embedding.pkl", "wb") as fh:
        pickle.dump({"lmk_face_idx": fs, "lmk_b_coords": bs}, fh)
    np.save(folder / "flame_dynamic_embedding.npy", np.array({"lmk_face_idx": fd.reshape(79, 17), "lmk_b_coords": bd.reshape(79, 17, 3)}, dtype=object), allow_pickle=True)
    return folder


if __name__ == "__main__":  # python -m avatar3d.synthetic.flame OUT_DIR: a FLAME-format folder to try the loader on
    import argparse

    ap = argparse.ArgumentParser(description="Write a synthetic FLAME-format folder (model + companion files).")
    ap.add_argument("out", help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    c = write_synthetic_flame(Path(a.out) / "generic_model.pkl", seed=a.seed)
    write_companions(a.out, c)
    print(f"wrote {Path(a.out) / 'generic_model.pkl'} and companions; load with load_head_model('flame={Path(a.out) / 'generic_model.pkl'}')")
