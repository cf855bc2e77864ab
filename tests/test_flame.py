"""FLAME loader: chumpy-free reading of FLAME-format pickles, checked against smplx's FLAME layer.

The real FLAME cannot be shipped, so ``avatar3d.synthetic.flame`` writes a file with FLAME's key
set, shapes and Python-2/chumpy pickle layout; smplx reads a plain-NumPy copy of the same data.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from avatar3d.errors import BadInputError, MissingFileError
from avatar3d.models import load_head_model
from avatar3d.models import pickle_compat as pc
from avatar3d.models.flame import FLAME_URL, detect_version, load_flame, read_flame_data, status
from avatar3d.synthetic import flame as fs

TOL = 1e-5  # metres


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """One synthetic FLAME 2020 folder (model + companions) and the smplx copy of the same data."""
    d = tmp_path_factory.mktemp("flame")
    content = fs.make_synthetic_flame(seed=0)
    fs.write_synthetic_flame(d / "model" / "generic_model.pkl", content)
    comp = fs.write_companions(d / "companions", content)
    fs.write_smplx_flame(d / "smplx", content)
    return types.SimpleNamespace(dir=d, model=d / "model" / "generic_model.pkl", content=content, comp=comp, smplx=d / "smplx")


class _FakeEmbedder:
    """Stands in for MediaPipe (tested elsewhere): 478 front triangles, or a failure; counts calls."""

    def __init__(self):
        self.calls, self.fail = 0, False

    def __call__(self, vertices, faces, **kw):
        self.calls += 1
        if self.fail:
            raise RuntimeError("MediaPipe found no face")
        c = np.asarray(vertices)[np.asarray(faces)].mean(1)
        front = np.flatnonzero(c[:, 2] > 0.06)
        return front[np.arange(478) % len(front)], np.full((478, 3), 1 / 3, np.float32)


@pytest.fixture(autouse=True)
def fake_embedder(monkeypatch, tmp_path):
    fake = _FakeEmbedder()
    monkeypatch.setenv("AVATAR3D_CACHE", str(tmp_path / "cache"))
    try:
        from avatar3d.models import embedding
    except ImportError:  # the loader then simply has no 478 embedding (tested below)
        return fake
    monkeypatch.setattr(embedding, "compute_mediapipe_embedding", fake)
    return fake


def _no_companions(path, **kw):
    kw.setdefault("embed_mediapipe", False)
    return load_flame(path, masks=False, landmarks=False, mediapipe_landmarks=False, texture=False, **kw)


def _random_params(B: int, n_shape: int, n_expr: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, n_shape, generator=g, dtype=dtype),
        torch.randn(B, n_expr, generator=g, dtype=dtype),
        torch.randn(B, 5, 3, generator=g, dtype=dtype) * 0.3,
        torch.randn(B, 3, generator=g, dtype=dtype) * 0.1,
    )


def _smplx_flame(folder: Path, n_shape: int, n_expr: int, B: int, dtype=torch.float64):
    smplx = pytest.importorskip("smplx")
    return smplx.FLAME(str(folder), num_betas=n_shape, num_expression_coeffs=n_expr, dtype=dtype, batch_size=B)


# ----------------------------------------------------------------------------- reference check
def test_no_chumpy_installed_and_numpy2():
    assert importlib.util.find_spec("chumpy") is None, "these tests must run without chumpy"
    assert int(np.__version__.split(".")[0]) >= 2
    assert "chumpy" not in sys.modules


def test_synthetic_file_has_flame_layout(synth):
    raw = synth.model.read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official Python 2 files
    for needle in (b"cchumpy.ch\nCh\n", b"cchumpy.reordering\nReshape\n", b"cnumpy.core.multiarray\n_reconstruct\n", b"cscipy.sparse.csc\ncsc_matrix\n"):
        assert needle in raw, needle
    assert "chumpy" not in sys.modules  # the stand-ins were registered only while pickling
    d = pc.load_pickle(synth.model)
    shapes = {k: getattr(v, "shape", None) for k, v in d.items()}
    assert shapes["v_template"] == (5023, 3) and shapes["f"] == (9976, 3) and shapes["shapedirs"] == (5023, 3, 400)
    assert shapes["posedirs"] == (5023, 3, 36) and shapes["J_regressor"] == (5, 5023) and shapes["weights"] == (5023, 5)
    assert sp.issparse(d["J_regressor"]) and d["J_regressor"].format == "csc"
    assert d["bs_style"] == "lbs" and d["bs_type"] == "lrotmin"
    np.testing.assert_array_equal(d["shapedirs"], synth.content["shapedirs"])
    np.testing.assert_array_equal(d["J"], synth.content["J"])  # a chumpy Reshape node, evaluated


@pytest.mark.parametrize("dtype,n_shape,n_expr", [(torch.float64, 300, 100), (torch.float32, 50, 20)])
def test_matches_smplx_vertices_and_joints(synth, dtype, n_shape, n_expr):
    B = 4
    ours = _no_companions(synth.model, dtype=dtype, n_shape=n_shape, n_expr=n_expr)
    ref = _smplx_flame(synth.smplx, n_shape, n_expr, B, dtype)
    betas, expr, pose, transl = _random_params(B, n_shape, n_expr, seed=n_shape, dtype=dtype)
    o = ref(betas=betas, expression=expr, global_orient=pose[:, 0], neck_pose=pose[:, 1], jaw_pose=pose[:, 2], leye_pose=pose[:, 3], reye_pose=pose[:, 4], transl=transl)
    out = ours(shape=betas, expression=expr, pose=pose, transl=transl)
    assert out.vertices.shape == (B, 5023, 3) and out.joints.shape == (B, 5, 3)
    dv = (o.vertices - out.vertices).abs().max().item()
    dj = (o.joints[:, :5] - out.joints).abs().max().item()
    assert dv < TOL and dj < TOL, (dv, dj)
    # The comparison is not vacuous: the batch really deforms the head (cm-scale motion).
    assert (out.vertices - ours.v_template).abs().max().item() > 0.02
    # Named overrides (eye_pose = left then right) give the same result.
    out2 = ours(shape=betas, expression=expr, global_orient=pose[:, 0], neck_pose=pose[:, 1], jaw_pose=pose[:, 2], eye_pose=pose[:, 3:].reshape(B, 6), transl=transl)
    assert (out2.vertices - o.vertices).abs().max().item() < TOL


def test_expression_moves_joints_like_smplx(synth):
    """FLAME regresses joints after expression blendshapes; so must we."""
    ours = _no_companions(synth.model, dtype=torch.float64)
    ref = _smplx_flame(synth.smplx, 300, 100, 1)
    expr = torch.zeros(1, 100, dtype=torch.float64)
    expr[0, 0] = 3.0
    a, b = ours(expression=expr).joints, ours().joints
    assert (a - b).abs().max().item() > 1e-4
    assert (ref(expression=expr).joints[:, :5] - a).abs().max().item() < TOL


def test_eyes_named_by_subject_side(tmp_path, synth):
    """Joint 3 at -X (subject's right) in the file: we reorder so eye_left is still the +X eye."""
    content = fs.make_synthetic_flame(seed=0, swap_eyes=True)
    fs.write_synthetic_flame(tmp_path / "generic_model.pkl", content)
    fs.write_smplx_flame(tmp_path / "smplx", content)
    ours = _no_companions(tmp_path / "generic_model.pkl", dtype=torch.float64)
    assert ours.extras["flame_joint_index"] == [0, 1, 2, 4, 3]
    rest = ours().joints[0]
    assert rest[3, 0] > 0 > rest[4, 0]
    assert ours.parents.tolist() == [-1, 0, 1, 1, 1]
    ref = _smplx_flame(tmp_path / "smplx", 300, 100, 3)
    betas, expr, pose, _ = _random_params(3, 300, 100, seed=7)
    o = ref(betas=betas, expression=expr, global_orient=pose[:, 0], neck_pose=pose[:, 1], jaw_pose=pose[:, 2], leye_pose=pose[:, 3], reye_pose=pose[:, 4])
    out = ours(shape=betas, expression=expr, pose=pose[:, [0, 1, 2, 4, 3]])
    assert (o.vertices - out.vertices).abs().max().item() < TOL
    assert (o.joints[:, [0, 1, 2, 4, 3]] - out.joints).abs().max().item() < TOL


# ----------------------------------------------------------------------------- mapping and companions
def test_mapping_without_companions(synth):
    m = _no_companions(synth.model)
    assert m.joint_names == ["root", "neck", "jaw", "eye_left", "eye_right"]
    assert m.version == "2020" and m.num_shape == 300 and m.num_expression == 100
    assert m.expression_names[0] == "exp_000" and m.expression_names[-1] == "exp_099"
    assert m.posedirs.shape == (36, 5023 * 3)
    rest = m().joints[0]
    assert rest[3, 0] > 0 > rest[4, 0] and rest[3, 1] > rest[2, 1]  # +Y up, subject's left at +X
    assert any("rough" in n for n in m.extras["notes"]) and any("spherical" in n for n in m.extras["notes"])
    V = m.num_vertices
    eyes, neck, mouth = m.region("eyes"), m.region("neck_boundary"), m.region("mouth_interior")
    assert int(eyes.sum()) == 2 * (fs.ME * fs.RE + 2)  # exactly the eyeball vertices
    v = m.v_template
    assert int(neck.sum()) == fs.M and v[neck, 1].max() < v[~eyes, 1].min() + 0.01  # the lowest loop
    assert mouth.any() and (v[mouth, 2] > 0.05).all() and (v[mouth, 1] < rest[3, 1]).all()
    face, scalp = m.region("face"), m.region("scalp")
    assert face.any() and scalp.any() and not (face & eyes).any() and not (face & scalp).any()
    assert v[face, 2].mean() > v[scalp, 2].mean() and v[scalp, 1].mean() > v[face, 1].mean()
    assert m.uvs.shape == (V, 2) and float(m.uvs.min()) >= 0 and float(m.uvs.max()) <= 1
    assert torch.equal(m.uv_faces, m.faces)
    assert not m.has_landmarks and m.lmk68_faces is None


def test_companions(synth):
    c = synth.comp
    m = load_flame(synth.model, masks=c["masks"], landmarks=c["landmarks"], mediapipe_landmarks=c["mediapipe_landmarks"], texture=c["texture"], embed_mediapipe=False)
    masks = pc.load_pickle(c["masks"])
    V = m.num_vertices

    def mask(idx):
        out = torch.zeros(V, dtype=torch.bool)
        out[torch.as_tensor(idx)] = True
        return out

    assert torch.equal(m.region("eyes"), mask(np.concatenate([masks["left_eyeball"], masks["right_eyeball"]])))
    assert torch.equal(m.region("neck_boundary"), mask(masks["boundary"]))
    assert torch.equal(m.region("face"), mask(masks["face"])) and torch.equal(m.region("lips"), mask(masks["lips"]))
    mouth = m.region("mouth_interior")
    assert mouth.any() and not (mouth & ~mask(masks["lips"])).any()
    assert not any("rough" in n for n in m.extras["notes"])
    # Texture space: FLAME's UV layout and a lazily loaded PCA basis.
    with np.load(c["texture"]) as z:
        np.testing.assert_allclose(m.uvs.numpy(), z["vt"], atol=1e-6)
        ts = m.extras["texture_space"]
        coeff = np.array([1.0, -0.5, 2.0])
        np.testing.assert_allclose(ts.texture(coeff), z["mean"] + z["tex_dir"][..., :3] @ coeff, rtol=1e-5, atol=1e-3)
    # 68 landmarks follow the surface: equal to the barycentric mix of the posed triangle corners.
    emb = pc.load_npy_object(c["landmarks"])
    g = torch.Generator().manual_seed(1)
    out = m(shape=torch.randn(2, 300, generator=g) * 0.5, pose=torch.randn(2, 5, 3, generator=g) * 0.2)
    tri = out.vertices[:, m.faces[torch.as_tensor(emb["full_lmk_faces_idx"][0])]]
    expect = (tri * torch.as_tensor(emb["full_lmk_bary_coords"][0], dtype=torch.float32)[None, :, :, None]).sum(2)
    assert (out.landmarks68 - expect).abs().max().item() < 1e-6
    part = m.extras["mediapipe_partial"]
    assert part["landmark_indices"].shape == (105,) and part["lmk_bary"].shape == (105, 3)


def test_companions_found_beside_model_and_version(tmp_path, synth):
    folder = tmp_path / "FLAME2023"
    folder.mkdir()
    (folder / "flame2023.pkl").symlink_to(synth.model)
    (folder / "FLAME_masks.pkl").symlink_to(synth.comp["masks"])
    data = read_flame_data(folder, embed_mediapipe=False)  # a folder works too
    assert data.version == "2023" and "lips" in data.regions and data.lmk68_faces is None
    assert detect_version("x/flame2023_no_jaw.pkl") == "2023-no-jaw" and detect_version("generic_model.pkl") == "2020"
    m = load_head_model(f"flame={folder / 'flame2023.pkl'}", masks=False, embed_mediapipe=False)
    assert m.name == "flame" and m.version == "2023"


# ----------------------------------------------------------------------------- pickle safety and chumpy nodes
@contextmanager
def _fake_modules(spec: dict[str, list[str]]):
    """Classes named like chumpy's, importable only inside the block (chumpy itself is never used)."""
    saved = {k: sys.modules.get(k) for k in ["chumpy", *spec]}
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    classes = {}
    for mod, names in spec.items():
        m = types.ModuleType(mod)
        for n in names:
            cls = type(n, (), {"__module__": mod, "__qualname__": n, "__init__": lambda self, **kw: self.__dict__.update(kw)})
            setattr(m, n, cls)
            classes[n] = cls
        sys.modules[mod] = m
    try:
        yield classes
    finally:
        for k, v in saved.items():
            sys.modules.pop(k, None) if v is None else sys.modules.__setitem__(k, v)


@pytest.mark.parametrize("protocol", [0, 2])
def test_chumpy_nodes_evaluate(protocol):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    with _fake_modules({"chumpy.ch": ["Ch"], "chumpy.reordering": ["Select", "transpose", "Concatenate", "Reshape"], "chumpy.ch_ops": ["add", "multiply"]}) as C:
        ca, cb = C["Ch"](x=a, _dirty_vars=set()), C["Ch"](x=b)
        obj = {
            "sel": C["Select"](a=ca, idxs=np.array([5, 0, 7]), preferred_shape=(3,)),
            "tr": C["transpose"](a=ca, axes=(1, 0)),
            "cat": C["Concatenate"](m0=ca, m1=cb, dterms=["m0", "m1"], axis=1),
            "expr": C["add"](x1=C["multiply"](x1=ca, x2=cb), x2=C["Reshape"](a=cb, newshape=(4, 6))),
        }
        data = pickle.dumps(obj, protocol=protocol)
    r = pc.loads(data)
    np.testing.assert_array_equal(r["sel"], a.ravel()[[5, 0, 7]])
    np.testing.assert_array_equal(r["tr"], a.T)
    np.testing.assert_array_equal(r["cat"], np.concatenate([a, b], 1))
    np.testing.assert_allclose(r["expr"], a * b + b)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    for payload in (_Evil(marker), {"v_template": _Evil(marker)}):
        bad = tmp_path / "generic_model.pkl"
        bad.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(BadInputError, match="Refusing"):
            load_flame(bad)
    with pytest.raises(pc.UnsafePickleError, match="eval"):
        pc.loads(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(pc.UnsafePickleError):
        pc.loads(b"csubprocess\nPopen\n(S'true'\ntR.")
    with pytest.raises(pc.UnsafePickleError):  # an unknown chumpy class is not silently accepted
        pc.loads(b"cchumpy.ch\nMatVecMult\n)\x81.")
    npy = tmp_path / "landmark_embedding.npy"
    np.save(npy, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(pc.UnsafePickleError):
        pc.load_npy_object(npy)
    assert not marker.exists()


# ----------------------------------------------------------------------------- bad input
def _tiny_model(V: int = 12) -> dict:
    rng = np.random.default_rng(0)
    return {
        "v_template": rng.normal(size=(V, 3)), "f": np.array([[0, 1, 2], [2, 3, 4]]), "shapedirs": rng.normal(size=(V, 3, 400)),
        "posedirs": rng.normal(size=(V, 3, 36)), "J_regressor": sp.csc_matrix(np.full((5, V), 1.0 / V)),
        "weights": np.full((V, 5), 0.2), "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
    }


def test_missing_file_names_url(tmp_path, monkeypatch, synth):
    with pytest.raises(MissingFileError, match="flame.is.tue.mpg.de") as e:
        load_flame(tmp_path / "generic_model.pkl")
    assert "generic_model.pkl" in str(e.value)
    with pytest.raises(MissingFileError, match="flame.is.tue.mpg.de"):
        load_flame(tmp_path)  # an empty folder
    monkeypatch.delenv("AVATAR3D_FLAME", raising=False)
    with pytest.raises(MissingFileError, match="AVATAR3D_FLAME"):
        load_flame()
    with pytest.raises(MissingFileError, match="masks"):
        load_flame(synth.model, masks=tmp_path / "FLAME_masks.pkl")


def test_corrupt_truncated_wrong_keys_and_shapes(tmp_path, synth):
    p = tmp_path / "generic_model.pkl"
    head = synth.model.read_bytes()[:200_000]
    for blob in (head, b"", b"not a pickle at all"):
        p.write_bytes(blob)
        with pytest.raises(BadInputError, match="truncated or corrupt") as e:
            load_flame(p)
        assert FLAME_URL in str(e.value)
    p.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(BadInputError, match="not a FLAME model dict"):
        load_flame(p)
    m = _tiny_model()
    del m["posedirs"]
    p.write_bytes(pickle.dumps(m, protocol=2))
    with pytest.raises(BadInputError, match="missing key.*posedirs"):
        load_flame(p)
    for key, bad, expect in (("weights", np.full((12, 4), 0.25), r"weights must be \(12, 5\)"),
                             ("posedirs", np.zeros((12, 3, 35)), r"\(12, 3, 36\)"),
                             ("v_template", np.zeros((12, 2)), r"v_template must be \(V, 3\)"),
                             ("f", np.array([[0, 1, 99]]), "faces f must be integer indices")):
        m = _tiny_model()
        m[key] = bad
        p.write_bytes(pickle.dumps(m, protocol=2))
        with pytest.raises(BadInputError, match=expect):
            load_flame(p, masks=False, texture=False, landmarks=False, mediapipe_landmarks=False)
    assert issubclass(BadInputError, ValueError)


def test_wrong_parameter_lengths(synth):
    m = _no_companions(synth.model, n_shape=20, n_expr=10)
    with pytest.raises(ValueError, match=r"shape: expected shape \(B, 20\)"):
        m(shape=torch.zeros(1, 21))
    with pytest.raises(ValueError, match=r"expression: expected shape \(B, 10\)"):
        m(expression=torch.zeros(2, 11))
    with pytest.raises(ValueError, match=r"pose: expected shape \(B, 5, 3\)"):
        m(pose=torch.zeros(1, 6, 3))
    with pytest.raises(ValueError, match="eye_pose"):
        m(eye_pose=torch.zeros(1, 7))
    with pytest.raises(ValueError, match=r"n_shape must be an integer in 1..300"):
        _no_companions(synth.model, n_shape=301)
    with pytest.raises(ValueError, match=r"n_expr must be an integer in 1..100"):
        _no_companions(synth.model, n_expr=0)


def test_status(monkeypatch, synth, tmp_path):
    monkeypatch.delenv("AVATAR3D_FLAME", raising=False)
    ok, msg = status()
    assert not ok and FLAME_URL in msg and "flame=PATH" in msg
    monkeypatch.setenv("AVATAR3D_FLAME", str(tmp_path / "missing.pkl"))
    ok, msg = status()
    assert not ok and "does not exist" in msg
    monkeypatch.setenv("AVATAR3D_FLAME", str(synth.model))
    ok, msg = status()
    assert ok and "2020" in msg
    assert load_flame(masks=False, embed_mediapipe=False).num_vertices == 5023  # $AVATAR3D_FLAME is used when no path is given


def test_mediapipe_embedding_cached_by_file_hash(tmp_path, synth, fake_embedder):
    pytest.importorskip("avatar3d.models.embedding")
    m = _no_companions(synth.model, embed_mediapipe=True)
    assert fake_embedder.calls == 1 and m.has_landmarks and m.lmk_faces.shape == (478,)
    assert m.lmk68_faces is not None and m.lmk68_faces.shape == (68,)  # mapped from the 478
    out = m(expression=torch.randn(1, 100, generator=torch.Generator().manual_seed(0)) * 0.5)
    assert out.landmarks.abs().sum() > 0 and (out.landmarks[0, :, 2] > 0.03).all()  # on the front of the head
    m2 = _no_companions(synth.model, embed_mediapipe=True)
    assert fake_embedder.calls == 1 and torch.equal(m2.lmk_faces, m.lmk_faces)  # from the cache
    # A different file (other hash) whose embedding fails: warning, no landmarks, failure cached.
    other = tmp_path / "generic_model.pkl"
    fs.write_synthetic_flame(other, seed=3)
    fake_embedder.fail = True
    with pytest.warns(UserWarning, match="MediaPipe landmarks"):
        m3 = _no_companions(other, embed_mediapipe=True)
    assert not m3.has_landmarks and fake_embedder.calls == 2
    _no_companions(other, embed_mediapipe=True)
    assert fake_embedder.calls == 2


def test_cli_messages(tmp_path, monkeypatch, capsys, synth):
    from avatar3d.cli import main

    monkeypatch.setenv("AVATAR3D_FLAME", str(synth.model))
    assert main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("flame"))
    assert "yes" in line and "2020" in line
    bad = tmp_path / "generic_model.pkl"
    bad.write_bytes(synth.model.read_bytes()[:5000])
    assert main(["demo", "--out", str(tmp_path / "out"), "--model", f"flame={bad}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated or corrupt" in err and FLAME_URL in err
    assert main(["demo", "--out", str(tmp_path / "out"), "--model", f"flame={tmp_path / 'none.pkl'}"]) == 2
    assert "flame.is.tue.mpg.de" in capsys.readouterr().err


def test_frame_check_and_float_faces(tmp_path):
    """All joints at one point (no face direction): loads, but warns that eye naming is unreliable."""
    m = _tiny_model()
    m["f"] = m["f"].astype(np.float64)  # faces stored as a chumpy Ch come back as floats
    p = tmp_path / "generic_model.pkl"
    p.write_bytes(pickle.dumps(m, protocol=2))
    with pytest.warns(UserWarning, match="expected frame"):
        data = read_flame_data(p, embed_mediapipe=False)
    assert data.faces.dtype == np.int64 and data.version == "2020"
