"""Export to GLB/glTF/OBJ on a small synthetic head model (always runs; real models: test_export_models.py).

Helpers here (``toy_model``, ``toy_sequence``, ``read_accessor``, ``gltf_morphed``, ``gltf_skinned``)
re-implement glTF semantics independently of the exporter, so the checks compare the file as a game
engine would read it against :class:`HeadModel`'s own forward pass.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.errors import BadInputError, MissingFileError
from avatar3d.export import export, export_files
from avatar3d.export.gltf import arkit_target_names
from avatar3d.export.mesh import axis_angle_to_quat, quat_to_matrix, split_seams, top4_weights
from avatar3d.models import HeadModel, HeadModelData
from avatar3d.data.sequence import TrackedSequence
from gltf_validator import assert_valid

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ fixtures
def toy_model(albedo: bool = True, rigged: bool = True) -> HeadModel:
    """An ellipsoid 'head' (642 vertices) with a UV seam, 4 identity modes, 3 blendshapes and 5 joints
    (``rigged=False``: no blendshapes and a lone root joint, the least a HeadModel can have)."""
    import trimesh

    ico = trimesh.creation.icosphere(subdivisions=3)
    unit = np.asarray(ico.vertices)
    faces = np.asarray(ico.faces)
    v = unit * np.array([0.075, 0.11, 0.095])  # metres; taller than wide, face towards +Z
    # Spherical UVs per corner with a seam at the back (u wraps), fixed so no triangle spans the whole atlas.
    corner = unit[faces]  # (F, 3, 3)
    u = np.arctan2(corner[..., 0], corner[..., 2]) / (2 * np.pi) + 0.5  # seam at the back (-Z)
    vv = np.arcsin(np.clip(corner[..., 1], -1, 1)) / np.pi + 0.5
    wrap = (u.max(1, keepdims=True) - u) > 0.5
    u = np.where(wrap, u + 1.0, u) * 0.5  # atlas u in [0, 1)
    uv_corner = np.stack([u, vv], -1).reshape(-1, 2)
    uvs, uv_inv = np.unique(np.round(uv_corner, 6), axis=0, return_inverse=True)
    uv_faces = uv_inv.reshape(-1, 3)
    V = len(v)
    y, z = v[:, 1], v[:, 2]
    shapedirs = np.stack([v * [1, 0, 0], v * [0, 1, 0], v * [0, 0, 1], 0.01 * unit * (unit[:, 1:2] > 0)], -1)  # (V, 3, 4)
    exprdirs = np.zeros((V, 3, 3))
    low_front = (y < -0.02) & (z > 0.03)
    exprdirs[low_front, 1, 0] = -0.02 * (-y[low_front] / 0.11)  # "jawOpen": few vertices move (sparse)
    brow = (y > 0.03) & (y < 0.07) & (z > 0.05)
    exprdirs[brow, 1, 1] = 0.006  # "browInnerUp"
    exprdirs[:, :, 2] = 0.004 * unit  # "cheekPuff": every vertex moves (dense)
    joints = np.array([[0, -0.1, -0.01], [0, -0.07, -0.015], [0, -0.04, 0.02], [0.03, 0.03, 0.07], [-0.03, 0.03, 0.07]])
    d2 = ((v[:, None] - joints[None]) ** 2).sum(-1)
    raw = np.exp(-d2 / 0.04**2)
    raw[:, 0] += 0.05
    keep = np.argsort(-raw, 1)[:, :3]  # 3 influences per vertex: skinning stays exact under glTF's 4-joint limit
    w = np.zeros_like(raw)
    np.put_along_axis(w, keep, np.take_along_axis(raw, keep, 1), 1)
    w /= w.sum(1, keepdims=True)
    j_reg = np.zeros((5, V))
    for j in range(5):  # joints as weighted vertex averages, so identity moves them
        near = np.argsort(d2[:, j])[:6]
        j_reg[j, near] = 1 / 6
    extras = {}
    if albedo:
        g = np.linspace(0, 255, 64, dtype=np.float64)
        extras["albedo"] = np.stack(np.broadcast_arrays(g[None, :], g[:, None], np.full((64, 64), 140.0)), -1).astype(np.uint8)
    data = HeadModelData(
        name="toy", version="1", v_template=v, faces=faces, uvs=uvs, uv_faces=uv_faces, shapedirs=shapedirs, exprdirs=exprdirs,
        expression_names=["jawOpen", "browInnerUp", "cheekPuff"], joint_names=["root", "neck", "jaw", "eye_left", "eye_right"],
        parents=np.array([-1, 0, 1, 1, 1]), j_regressor=j_reg, lbs_weights=w, extras=extras,
    )
    if not rigged:
        data.exprdirs, data.expression_names = exprdirs[:, :, :0], []
        data.joint_names, data.parents, data.j_regressor, data.lbs_weights = ["root"], np.array([-1]), j_reg[:1], np.ones((V, 1))
    return HeadModel(data)


def toy_sequence(model: HeadModel, n: int = 12, fps: float = 25.0, seed: int = 0) -> TrackedSequence:
    """A synthetic tracked performance: smooth random expression, head/neck/jaw/eye rotations and translation."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    E, J = model.num_expression, model.num_joints
    expr = np.clip(0.5 + 0.5 * np.sin(6 * t + rng.uniform(0, 6, E)), 0, 1)
    pose = 0.3 * np.sin(4 * t[..., None] + rng.uniform(0, 6, (J, 3)))
    transl = 0.02 * np.sin(3 * t + rng.uniform(0, 6, 3))
    return TrackedSequence(
        model="builtin", model_version=model.version, fps=fps, shape=rng.normal(0, 0.3, model.num_shape).astype(np.float32),
        expression=expr.astype(np.float32), pose=pose.astype(np.float32), transl=transl.astype(np.float32),
        K=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), world_to_cam=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
        width=256, height=256, joint_names=list(model.joint_names), expression_names=list(model.expression_names),
    )


# ------------------------------------------------------------------------------------------ independent glTF reader
_NP = {5126: np.float32, 5121: np.uint8, 5123: np.uint16, 5125: np.uint32}
_NC = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Gltf:
    """JSON + binary buffer of a .glb or .gltf (external .bin), read with plain struct/json."""

    def __init__(self, path: Path):
        path = Path(path)
        raw = path.read_bytes()
        if raw[:4] == b"glTF":
            (jlen,) = struct.unpack_from("<I", raw, 12)
            self.json = json.loads(raw[20 : 20 + jlen])
            off = 20 + jlen
            self.bin = raw[off + 8 : off + 8 + struct.unpack_from("<I", raw, off)[0]] if off < len(raw) else b""
        else:
            self.json = json.loads(raw)
            self.bin = (path.parent / self.json["buffers"][0]["uri"]).read_bytes()

    def _view(self, bv: int, offset: int, dtype, count: int) -> np.ndarray:
        v = self.json["bufferViews"][bv]
        assert "byteStride" not in v
        return np.frombuffer(self.bin, dtype, count, v.get("byteOffset", 0) + offset)

    def accessor(self, i: int) -> np.ndarray:
        """(count, ncomp) array of accessor ``i``, sparse substitution applied."""
        a = self.json["accessors"][i]
        nc, dt = _NC[a["type"]], _NP[a["componentType"]]
        if "bufferView" in a:
            out = self._view(a["bufferView"], a.get("byteOffset", 0), dt, a["count"] * nc).reshape(a["count"], nc).copy()
        else:
            out = np.zeros((a["count"], nc), dt)
        if "sparse" in a:
            s = a["sparse"]
            idx = self._view(s["indices"]["bufferView"], s["indices"].get("byteOffset", 0), _NP[s["indices"]["componentType"]], s["count"])
            out[idx.astype(np.int64)] = self._view(s["values"]["bufferView"], s["values"].get("byteOffset", 0), dt, s["count"] * nc).reshape(-1, nc)
        return out


def gltf_morphed(g: Gltf, weights: np.ndarray) -> np.ndarray:
    """(V', 3) base positions + sum_k weights[k] * target_k deltas (glTF morphing), float64."""
    prim = g.json["meshes"][0]["primitives"][0]
    pos = g.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    for w, t in zip(weights, prim.get("targets", [])):
        pos = pos + float(w) * g.accessor(t["POSITION"])
    return pos


def _trs(node: dict, rot=None, trans=None) -> np.ndarray:
    M = np.eye(4)
    q = rot if rot is not None else node.get("rotation", [0, 0, 0, 1])
    M[:3, :3] = quat_to_matrix(np.asarray(q, np.float64))
    M[:3, 3] = trans if trans is not None else node.get("translation", [0, 0, 0])
    return M


def gltf_skinned(g: Gltf, key: int) -> np.ndarray:
    """(V', 3) vertices at animation key ``key``: morph weights + node TRS from the clip, then glTF skinning."""
    anim = g.json["animations"][0]
    vals: dict[tuple[int, str], np.ndarray] = {}
    for ch in anim["channels"]:
        samp = anim["samplers"][ch["sampler"]]
        out = g.accessor(samp["output"])
        n_keys = g.json["accessors"][samp["input"]]["count"]
        vals[(ch["target"]["node"], ch["target"]["path"])] = out.reshape(n_keys, -1)[key]
    mesh_node = next(i for i, n in enumerate(g.json["nodes"]) if "mesh" in n)
    pos = gltf_morphed(g, vals.get((mesh_node, "weights"), []))
    skin = g.json["skins"][0]
    nodes = g.json["nodes"]
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    world: dict[int, np.ndarray] = {}

    def W(i: int) -> np.ndarray:
        if i not in world:
            local = _trs(nodes[i], vals.get((i, "rotation")), vals.get((i, "translation")))
            world[i] = (W(parent[i]) @ local) if i in parent else local
        return world[i]

    ibm = g.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
    joint_mats = np.stack([W(j) @ ibm[k] for k, j in enumerate(skin["joints"])])  # (J, 4, 4)
    prim = g.json["meshes"][0]["primitives"][0]
    J4 = g.accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
    W4 = g.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    M = np.einsum("vk,vkab->vab", W4, joint_mats[J4])
    return np.einsum("vab,vb->va", M[:, :3, :3], pos) + M[:, :3, 3]


def model_vertices(model: HeadModel, shape, expr=None, pose=None, transl=None) -> np.ndarray:
    """(V, 3) float64 vertices from HeadModel.forward (the reference)."""
    t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    with torch.no_grad():
        return model(shape=t(shape), expression=t(expr), pose=t(pose), transl=t(transl)).vertices[0].double().numpy()


def check_glb_against_model(path: Path, model: HeadModel, shape: np.ndarray, seq: TrackedSequence | None, frames=(0,), tol: float = 1e-4) -> dict:
    """Reload a GLB with pygltflib/trimesh and our reader; compare to HeadModel. Returns a summary dict."""
    import pygltflib
    import trimesh

    g = Gltf(path)
    split = split_seams(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy())
    pg = pygltflib.GLTF2().load(str(path))
    prim = pg.meshes[0].primitives[0]
    assert pg.accessors[prim.attributes.POSITION].count == len(split.src)
    assert len(prim.targets) == model.num_expression
    assert pg.meshes[0].extras["targetNames"] == arkit_target_names(model.expression_names)
    assert len(pg.skins[0].joints) == model.num_joints
    assert [pg.nodes[j].name for j in pg.skins[0].joints] == list(model.joint_names)
    tm = trimesh.load(str(path), force="mesh", process=False)
    assert len(tm.vertices) == len(split.src) and len(tm.faces) == len(model.faces)
    # Neutral expression, zero pose: the rest mesh is the identity-applied model.
    assert np.abs(np.asarray(tm.vertices) - model_vertices(model, shape)[split.src]).max() < tol
    # Morph weights applied by hand reproduce the linear model (pose zero).
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 1, model.num_expression)
    err_morph = np.abs(gltf_morphed(g, w) - model_vertices(model, shape, w)[split.src]).max()
    assert err_morph < tol, err_morph
    summary = {"morph_err": float(err_morph), "size": path.stat().st_size}
    if seq is not None:
        anim = pg.animations[0]
        t_acc = pg.accessors[anim.samplers[0].input]
        assert t_acc.count == seq.num_frames + 1
        assert abs(t_acc.max[0] - seq.num_frames / seq.fps) < 1e-5  # clip lasts frames / fps seconds
        errs = []
        for f in frames:
            ref = model_vertices(model, shape, seq.expression[f], seq.pose[f], seq.transl[f])[split.src]
            errs.append(np.abs(gltf_skinned(g, f) - ref).max())
        assert max(errs) < tol, errs
        summary["posed_err"] = float(max(errs))
    return summary


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def toy() -> HeadModel:
    return toy_model()


def test_seam_split_and_top4_weights(toy):
    s = split_seams(toy.faces.numpy(), toy.uv_faces.numpy(), toy.uvs.numpy())
    assert len(np.unique(s.src)) == toy.num_vertices and len(s.src) > toy.num_vertices  # seam vertices duplicated
    # Every corner keeps its own UV and 3D vertex (so no triangle is stretched across a seam), and the
    # split is minimal: one exported vertex per distinct (vertex, uv) pair.
    np.testing.assert_array_equal(s.uvs[s.faces], toy.uvs.numpy()[toy.uv_faces.numpy()])
    np.testing.assert_array_equal(s.src[s.faces], toy.faces.numpy())
    pairs = np.stack([toy.faces.numpy().ravel(), toy.uv_faces.numpy().ravel()], 1)
    assert len(s.src) == len(np.unique(pairs, axis=0))
    w = np.array([[0.4, 0.3, 0.15, 0.1, 0.05], [1, 0, 0, 0, 0]])
    j, ww, dropped = top4_weights(w)
    assert j.tolist() == [[0, 1, 2, 3], [0, 0, 0, 0]] and abs(dropped - 0.05) < 1e-12
    np.testing.assert_allclose(ww.sum(1), 1, atol=1e-7)
    np.testing.assert_allclose(ww[0], np.array([0.4, 0.3, 0.15, 0.1]) / 0.95, atol=1e-6)
    q = axis_angle_to_quat(np.array([[0, 0, np.pi / 2], [0, 0, 0]]))
    np.testing.assert_allclose(quat_to_matrix(q[0]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(q[1], [0, 0, 0, 1])
    assert arkit_target_names(["eyeBlink_L", "mouthSmile_R", "jawOpen", "exp_000"]) == ["eyeBlinkLeft", "mouthSmileRight", "jawOpen", "exp_000"]


def test_glb_with_performance_matches_head_model(toy, tmp_path):
    seq = toy_sequence(toy, n=12, fps=25.0)
    seq.save(tmp_path / "track")
    files, stats = export_files(tmp_path / "track", "glb", tmp_path / "perf.glb", model=toy)
    assert files == [tmp_path / "perf.glb"]
    assert_valid(files[0])
    s = check_glb_against_model(files[0], toy, seq.shape.astype(np.float64), seq, frames=(0, 5, 11))
    print(f"toy GLB: {s['size']} bytes, morph err {s['morph_err']:.2e} m, posed err {s['posed_err']:.2e} m")
    assert stats.frames == 12 and stats.textured and stats.joints == 5
    assert stats.sparse_targets == 2  # jawOpen and browInnerUp move few vertices; cheekPuff moves all
    assert stats.max_dropped_weight == 0.0


def test_gltf_with_external_files_and_untextured_material(tmp_path):
    model = toy_model(albedo=False)
    out = export(model, "gltf", tmp_path / "head.gltf", shape=[0.2, -0.1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.bin", "head.gltf"]
    assert_valid(out)
    g = Gltf(out)
    mat = g.json["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" not in mat and mat["baseColorFactor"][0] > mat["baseColorFactor"][2]  # warm skin tone
    assert "animations" not in g.json
    shape = np.array([0.2, -0.1, 0, 0])
    split = split_seams(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy())
    assert np.abs(gltf_morphed(g, [0.3, 0.9, -0.5]) - model_vertices(model, shape, [0.3, 0.9, -0.5])[split.src]).max() < 1e-4
    # Textured .gltf: the albedo is a PNG beside it, and UVs are flipped to glTF's top-left origin.
    out2 = export(toy_model(), "gltf", tmp_path / "tex" / "head.gltf")
    assert (tmp_path / "tex" / "head_albedo.png").is_file()
    assert_valid(out2)
    uv = Gltf(out2).accessor(Gltf(out2).json["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    np.testing.assert_allclose(uv[:, 1], 1 - split.uvs[:, 1], atol=1e-6)


def test_obj_neutral_and_frames(toy, tmp_path):
    import trimesh

    seq = toy_sequence(toy, n=4)
    out = export(seq, "obj", tmp_path / "neutral.obj", model=toy)
    mtl = (tmp_path / "neutral.mtl").read_text()
    assert "map_Kd neutral_albedo.png" in mtl and (tmp_path / "neutral_albedo.png").is_file()
    tm = trimesh.load(str(out), process=False, maintain_order=True)
    assert len(tm.faces) == len(toy.faces)
    ref = model_vertices(toy, seq.shape)
    # trimesh splits OBJ vertices at UV seams; compare each face corner's position instead.
    np.testing.assert_allclose(np.asarray(tm.vertices)[tm.faces], ref[toy.faces.numpy()], atol=1e-6)
    files, _ = export_files(seq, "obj", tmp_path / "f" / "perf.obj", model=toy, all_frames=True)
    objs = sorted(p.name for p in files if p.suffix == ".obj")
    assert objs == [f"perf_{i:06d}.obj" for i in range(4)]
    tm2 = trimesh.load(str(tmp_path / "f" / "perf_000002.obj"), process=False, maintain_order=True)
    ref2 = model_vertices(toy, seq.shape, seq.expression[2], seq.pose[2], seq.transl[2])
    np.testing.assert_allclose(np.asarray(tm2.vertices)[tm2.faces], ref2[toy.faces.numpy()], atol=1e-6)
    with pytest.raises(ValueError, match="outside the tracked sequence"):
        export(seq, "obj", tmp_path / "x.obj", model=toy, frame=7)


def test_bad_inputs_are_one_clear_error_and_leave_no_files(toy, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'fbx'; expected one of: glb, gltf, obj"):
        export(toy, "fbx", tmp_path / "a.fbx")
    (tmp_path / "notrack").mkdir()
    with pytest.raises(BadInputError, match="is not a tracking or avatar output directory"):
        export(tmp_path / "notrack", "glb", tmp_path / "a.glb")
    with pytest.raises(BadInputError, match="unknown export source"):
        export(str(tmp_path / "nothing_here"), "glb", tmp_path / "a.glb")
    with pytest.raises(MissingFileError, match="missing.png not found"):
        export(toy, "glb", tmp_path / "a.glb", texture=tmp_path / "missing.png")
    with pytest.raises(ValueError, match="should end in .glb"):
        export(toy, "glb", tmp_path / "a.gltf")
    with pytest.raises(BadInputError, match="identity has 9 coefficients but the model has only 4"):
        export(toy, "glb", tmp_path / "a.glb", shape=np.ones(9))
    with pytest.raises(BadInputError, match="expected a .npy file or comma-separated numbers"):
        export(toy, "glb", tmp_path / "a.glb", shape="0.1,abc")
    np.save(tmp_path / "id.npy", np.array([0.3, -0.2]))
    g = Gltf(export(toy, "glb", tmp_path / "id.glb", shape=str(tmp_path / "id.npy")))
    pos = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    split = split_seams(toy.faces.numpy(), toy.uv_faces.numpy(), toy.uvs.numpy())
    assert np.abs(pos - model_vertices(toy, [0.3, -0.2, 0, 0])[split.src]).max() < 1e-6  # identity from a .npy file
    (tmp_path / "id.glb").unlink()
    (tmp_path / "id.npy").unlink()
    bad = toy_sequence(toy, n=3)
    bad.pose = bad.pose[:, :3]
    with pytest.raises(BadInputError, match="needs \\(N, 5, 3\\)"):
        export(bad, "glb", tmp_path / "a.glb", model=toy)
    # A failure while writing the second file (.bin blocked by a directory) leaves neither file nor temporaries.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "head.bin").mkdir()
    with pytest.raises(OSError):
        export(toy, "gltf", tmp_path / "w" / "head.gltf")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["head.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notrack", "w"]


def test_cli_bad_input_is_one_sentence(tmp_path):
    (tmp_path / "d").mkdir()
    r = subprocess.run([sys.executable, "-m", "avatar3d", "export", str(tmp_path / "d"), "--format", "glb", "--out", str(tmp_path / "x.glb")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "not a tracking or avatar output directory" in r.stderr
    assert not (tmp_path / "x.glb").exists()


def test_atomic_write_rolls_back_when_a_later_file_fails(tmp_path, monkeypatch):
    from avatar3d.data.atomic import write_all

    (tmp_path / "a.txt").write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_all({tmp_path / "a.txt": b"new", tmp_path / "b.txt": boom})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"
    # A failure during the renames themselves also rolls back, restoring what was there before.
    real_replace = os.replace

    def flaky_replace(src, dst):
        if Path(dst).name == "b.txt":
            raise PermissionError("denied")
        return real_replace(src, dst)

    import avatar3d.data.atomic as atomic

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with pytest.raises(PermissionError):
        write_all({tmp_path / "a.txt": b"new", tmp_path / "b.txt": b"x"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"


def test_normal_and_roughness_maps_go_through_the_same_material(tmp_path):
    from PIL import Image

    model = toy_model()
    nm = np.zeros((32, 32, 3), np.uint8)
    nm[...] = (128, 128, 255)  # flat tangent-space normal
    rough = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    model.extras.update(normal_map=nm, roughness_map=rough)
    out = export(model, "gltf", tmp_path / "m.gltf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.gltf", "m_albedo.png", "m_normal.png", "m_roughness.png"]
    assert_valid(out)
    g = Gltf(out)
    mat = g.json["materials"][0]
    tan = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["TANGENT"])
    nrm = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(tan[:, :3], axis=1), 1, atol=1e-5)
    assert np.abs((tan[:, :3] * nrm).sum(1)).max() < 1e-5 and set(np.unique(tan[:, 3])) <= {-1.0, 1.0}
    # On the toy's spherical UVs +u runs around the head: at the front (+Z) the tangent points along +X.
    front = np.argmax(g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])[:, 2])
    assert tan[front, 0] > 0.9, tan[front]
    assert "normalTexture" in mat and "metallicRoughnessTexture" in mat["pbrMetallicRoughness"]
    mr = np.asarray(Image.open(tmp_path / "m_roughness.png"))
    np.testing.assert_array_equal(mr[..., 1], rough)  # glTF: roughness in G, metalness (0) in B
    assert mr[..., 2].max() == 0
    glb = export(model, "glb", tmp_path / "m.glb")
    assert_valid(glb)
    assert len(Gltf(glb).json["images"]) == 3 and all("bufferView" in im for im in Gltf(glb).json["images"])
    model.extras["roughness_map"] = np.zeros((4, 4), np.float32)
    with pytest.raises(BadInputError, match="roughness map must be \\(H, W\\) uint8"):
        export(model, "glb", tmp_path / "bad.glb")
    assert not (tmp_path / "bad.glb").exists()


def test_minimal_model_without_blendshapes_or_skeleton_exports(tmp_path):
    model = toy_model(albedo=False, rigged=False)
    seq = toy_sequence(model, n=3)
    files, stats = export_files(seq, "glb", tmp_path / "min.glb", model=model)
    assert_valid(files[0])
    g = Gltf(files[0])
    assert stats.morph_targets == 0 and "targets" not in g.json["meshes"][0]["primitives"][0] and len(g.json["skins"][0]["joints"]) == 1
    paths = sorted(c["target"]["path"] for c in g.json["animations"][0]["channels"])
    assert paths == ["rotation", "translation"]  # head transform only
    ref = model_vertices(model, seq.shape, None, seq.pose[2], seq.transl[2])
    split = split_seams(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy())
    assert np.abs(gltf_skinned(g, 2) - ref[split.src]).max() < 1e-5
