"""A small synthetic head model and performance for export tests, and an independent glTF reader.

The reader (``Gltf``, ``gltf_morphed``, ``gltf_skinned``) re-implements glTF semantics without the exporter,
so checks compare a file as a game engine reads it against :class:`HeadModel`'s own forward pass.
Used by test_export.py and test_export_models.py.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from avatar3d.data.sequence import TrackedSequence
from avatar3d.export.arkit import ARKIT_NAMES
from avatar3d.export.mesh import quat_to_matrix
from avatar3d.export.parts import mesh_parts
from avatar3d.models import HeadModel, HeadModelData


def toy_model(albedo: bool = True, rigged: bool = True, parts: bool = False) -> HeadModel:
    """An ellipsoid 'head' (642 vertices) with a UV seam, 4 identity modes, 3 blendshapes and 5 joints
    (``rigged=False``: no blendshapes and a lone root joint, the least a HeadModel can have; ``parts``: surface
    patches marked as eyes (around the eye joints) and teeth / mouth interior (low front), so it exports as
    several primitives)."""
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
    regions = {}
    if parts:
        regions["eyes"] = d2[:, 3:5].min(1) < 0.03**2
        regions["mouth_interior"] = low_front & (np.abs(v[:, 0]) < 0.04)
        regions["teeth"] = regions["mouth_interior"] & (y < -0.06)
    if albedo:
        g = np.linspace(0, 255, 64, dtype=np.float64)
        extras["albedo"] = np.stack(np.broadcast_arrays(g[None, :], g[:, None], np.full((64, 64), 140.0)), -1).astype(np.uint8)
    data = HeadModelData(
        name="toy", version="1", v_template=v, faces=faces, uvs=uvs, uv_faces=uv_faces, shapedirs=shapedirs, exprdirs=exprdirs,
        expression_names=["jawOpen", "browInnerUp", "cheekPuff"], joint_names=["root", "neck", "jaw", "eye_left", "eye_right"],
        parents=np.array([-1, 0, 1, 1, 1]), j_regressor=j_reg, lbs_weights=w, extras=extras, regions=regions,
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


def gltf_attribute(g: Gltf, name: str) -> np.ndarray:
    """(V', C) attribute ``name`` of every primitive of the first mesh, concatenated in primitive order."""
    return np.concatenate([g.accessor(p["attributes"][name]) for p in g.json["meshes"][0]["primitives"]])


def gltf_morphed(g: Gltf, weights: np.ndarray) -> np.ndarray:
    """(V', 3) base positions + sum_k weights[k] * target_k deltas (glTF morphing) of every primitive, float64."""
    out = []
    for prim in g.json["meshes"][0]["primitives"]:
        pos = g.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        for w, t in zip(weights, prim.get("targets", [])):
            pos = pos + float(w) * g.accessor(t["POSITION"])
        out.append(pos)
    return np.concatenate(out)


def target_weights(g: Gltf, model_names: list[str], expression) -> np.ndarray:
    """(K,) glTF morph weights for model expression coefficients (E,) by the file's documented rule: target k
    takes the coefficient of the model expression ``extras.arkit.drivenBy[k]`` names (0 when it names none)."""
    index = {n: i for i, n in enumerate(model_names)}
    driven = g.json["meshes"][0]["extras"]["arkit"]["drivenBy"]
    return np.array([0.0 if n is None else float(np.asarray(expression)[index[n]]) for n in driven])


def exported_src(model: HeadModel) -> np.ndarray:
    """(V',) model vertex of every exported vertex, primitives concatenated (the exporter's part layout)."""
    regions = {n: model.region(n).numpy() for n in model.region_names}
    parts = mesh_parts(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy(), regions)
    return np.concatenate([p.split.src for p in parts])


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
    J4 = gltf_attribute(g, "JOINTS_0").astype(np.int64)
    W4 = gltf_attribute(g, "WEIGHTS_0").astype(np.float64)
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
    src = exported_src(model)
    pg = pygltflib.GLTF2().load(str(path))
    prims = pg.meshes[0].primitives
    assert sum(pg.accessors[p.attributes.POSITION].count for p in prims) == len(src)
    names = pg.meshes[0].extras["targetNames"]
    assert names[:52] == list(ARKIT_NAMES) and all(len(p.targets) == len(names) for p in prims)
    assert len(pg.skins[0].joints) == model.num_joints
    assert [pg.nodes[j].name for j in pg.skins[0].joints] == list(model.joint_names)
    tm = trimesh.load(str(path), force="mesh", process=False)
    assert len(tm.vertices) == len(src) and len(tm.faces) == sum(pg.accessors[p.indices].count for p in prims) // 3
    # Neutral expression, zero pose: the rest mesh is the identity-applied model.
    assert np.abs(np.asarray(tm.vertices) - model_vertices(model, shape)[src]).max() < tol
    # Morph weights set by the file's documented rule (drivenBy) reproduce the linear model (pose zero).
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 1, model.num_expression)
    err_morph = np.abs(gltf_morphed(g, target_weights(g, list(model.expression_names), w)) - model_vertices(model, shape, w)[src]).max()
    assert err_morph < tol, err_morph
    summary = {"morph_err": float(err_morph), "size": path.stat().st_size}
    if seq is not None:
        anim = pg.animations[0]
        t_acc = pg.accessors[anim.samplers[0].input]
        assert t_acc.count == seq.num_frames + 1
        assert abs(t_acc.max[0] - seq.num_frames / seq.fps) < 1e-5  # clip lasts frames / fps seconds
        errs = []
        for f in frames:
            ref = model_vertices(model, shape, seq.expression[f], seq.pose[f], seq.transl[f])[src]
            errs.append(np.abs(gltf_skinned(g, f) - ref).max())
        assert max(errs) < tol, errs
        summary["posed_err"] = float(max(errs))
    return summary
