"""glTF 2.0 / GLB export of a head: skinned mesh + ARKit morph targets + PBR materials + animation.

Mapping from :class:`~avatar3d.models.HeadModel` to glTF (both: metres, +Y up, face towards +Z):

* mesh: identity-applied rest vertices (``v_template + shapedirs @ shape``), one primitive per part
  (skin, eyes, teeth, mouth interior: :mod:`.parts`) with its own material
  (:mod:`.gltf_material`), each split at UV seams; glTF UVs have their origin top-left, so ``v`` is flipped.
* morph targets: the 52 ARKit blendshapes by Apple's names, then the model's other expressions
  (:mod:`.arkit`: the model's own, combined halves, joint-based approximations or documented empty targets),
  named in ``mesh.extras.targetNames`` and explained in ``mesh.extras.arkit``; every primitive has the
  same targets (a part a target does not move gets one shared all-zero accessor). Normal deltas
  included. Targets that move few vertices are stored as sparse accessors.
* skin: one node per model joint. Each joint node's translation is its rest offset from the parent
  (the root's is its rest location), so with identity rotations the skeleton is the bind pose and
  ``inverseBindMatrices`` are plain translations by ``-rest_joint``. This reproduces
  ``lbs.rigid_transforms`` exactly: world_j = parent_world @ [R_j | offset_j], skin_j = world_j @ IBM_j.
* animation: one key per frame at ``frame / fps`` s (LINEAR) plus one at N/fps holding the last
  frame, so the clip lasts N/fps s like the video. Morph weights = expression (each model expression
  drives one target: :func:`.arkit.clip_weights`), joint rotations = quaternions of the axis-angle pose,
  root translation = rest root location + ``transl`` (our forward adds ``transl`` after skinning, which
  equals translating the root joint).
* FLAME regresses joints after expression blendshapes, so its joints move with expression. In a
  tracked clip every joint's translation is animated so that skinning stays exact; when a user
  drives morph weights by hand in an engine the joints keep their rest pivots (an error that grows
  with jaw/neck rotation times the expression's joint shift, a few millimetres at most).
* not expressible: pose-corrective blendshapes (FLAME ``posedirs``) are dropped; skin weights are
  limited to the 4 strongest joints per vertex (renormalised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..data.atomic import write_all
from ..geometry import vertex_normals_np
from .arkit import TargetSpec, approximation_deltas, clip_weights, describe, target_deltas, target_specs
from .gltf_doc import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GltfBuilder
from .gltf_material import part_material, skin_material
from .mesh import axis_angle_to_quat, continuous_quats, quat_to_matrix, top4_weights, vertex_tangents
from .parts import MeshPart, eye_colors, eye_masks, mesh_parts
from .source import ExportSource


@dataclass
class GltfStats:
    """What went into a glTF export (returned to callers and printed by the CLI)."""

    vertices: int = 0  #: exported vertices (after seam splitting)
    triangles: int = 0
    morph_targets: int = 0
    sparse_targets: int = 0  #: morph targets that move something and are stored sparsely in every primitive
    target_kinds: dict[str, int] = field(default_factory=dict)  #: model/combined/approximated/empty/extra -> count
    parts: list[str] = field(default_factory=list)  #: primitives (skin, eyes, teeth, mouth) in order
    joints: int = 0
    frames: int = 0
    duration_s: float = 0.0
    max_dropped_weight: float = 0.0  #: largest skin weight lost to the 4-influence limit
    textured: bool = False
    pbr_maps: bool = False  #: the appearance stage's maps (albedo, roughness, normal, specular) are in the material
    notes: list[str] = field(default_factory=list)


@dataclass
class _Targets:
    """Every exported morph target over the model's vertices."""

    specs: list[TargetSpec]
    deltas: np.ndarray  #: (V, 3, K) metres
    normals: Optional[np.ndarray]  #: (V, 3, K) normal deltas, or None when not exported


def _targets(src: ExportSource, v_shaped: np.ndarray, faces: np.ndarray, n_rest: np.ndarray, normal_deltas: bool) -> _Targets:
    m = src.model
    specs = target_specs(list(m.expression_names), list(m.joint_names))
    joints_rest = src.rest_joints(v_shaped)
    parents, lbs = m.parents.cpu().numpy(), m.lbs_weights.detach().double().cpu().numpy()
    deltas = target_deltas(specs, m.exprdirs.detach().double().cpu().numpy(),
                           lambda name: approximation_deltas(name, v_shaped, joints_rest, list(m.joint_names), parents, lbs))
    normals = None
    if normal_deltas:
        normals = np.zeros_like(deltas)
        for k in range(len(specs)):
            if np.any(deltas[:, :, k]):
                normals[:, :, k] = vertex_normals_np(v_shaped + deltas[:, :, k], faces, eps=1e-20, unused=(0.0, 0.0, 1.0)) - n_rest
    return _Targets(specs, deltas, normals)


def build_gltf(
    src: ExportSource,
    *,
    image_uri: Optional[Callable[[str], str]] = None,
    morph_eps: float = 1e-6,
    normal_eps: float = 1e-3,
    normal_deltas: bool = True,
    animation: bool = True,
) -> tuple[GltfBuilder, GltfStats, dict[str, bytes]]:
    """Assemble the glTF document for ``src``.

    Args:
        image_uri: maps a texture name ("albedo", "normal", "roughness", "specular") to the PNG file name beside a
            .gltf (None: images embedded in the buffer, for GLB).
        morph_eps: blendshape displacements with every component at most this (metres) are stored as
            zero, so a blendshape touching few vertices becomes a sparse accessor.
        normal_eps: the same for normal deltas (unit-vector components; 1e-3 is a 0.06 degree tilt, invisible in shading).
        normal_deltas: include NORMAL morph deltas (shading follows expressions).
        animation: add the tracked performance (when the source has one).
    Returns:
        the builder, statistics, and ``{texture name: PNG bytes}`` of the skin material's images.
    """
    m = src.model
    stats = GltfStats()
    gb = GltfBuilder()

    v_shaped = src.shaped_vertices()  # (V, 3) float64
    faces = m.faces.cpu().numpy()
    regions = {name: m.region(name).cpu().numpy() for name in m.region_names}
    parts = mesh_parts(faces, m.uv_faces.cpu().numpy(), m.uvs.cpu().numpy(), regions)
    n_rest = vertex_normals_np(v_shaped, faces, eps=1e-20, unused=(0.0, 0.0, 1.0))
    if sum(len(p.face_ids) for p in parts) < len(faces):
        stats.notes.append(f"{len(faces) - sum(len(p.face_ids) for p in parts)} triangles of eyelash cards and helper shells "
                           "around the eyes (drawn with alpha textures upstream) are not exported")
    jidx, jw, dropped = top4_weights(m.lbs_weights.detach().double().cpu().numpy())
    stats.max_dropped_weight = dropped
    if dropped > 0:
        stats.notes.append(f"skin weights limited to 4 joints per vertex (largest dropped weight {dropped:.3g})")
    if m.posedirs is not None:
        stats.notes.append("pose-corrective blendshapes (posedirs) are not expressible in glTF and were dropped")
    targets = _targets(src, v_shaped, faces, n_rest, normal_deltas)
    K = len(targets.specs)
    for s in targets.specs:
        stats.target_kinds[s.kind] = stats.target_kinds.get(s.kind, 0) + 1
    if K:
        empty = [s.name for s in targets.specs if s.kind == "empty"]
        said = {"model": "the model's own", "combined": "sums of split halves", "approximated": "joint motions baked in"}
        stats.notes.append("52 ARKit morph targets: " + ", ".join(f"{stats.target_kinds[k]} {v}" for k, v in said.items() if k in stats.target_kinds)
                           + (f", {len(empty)} empty ({', '.join(empty[:3])}{', ...' if len(empty) > 3 else ''})" if empty else "")
                           + (f"; then {stats.target_kinds['extra']} model-specific" if "extra" in stats.target_kinds else ""))

    # ---------------------------------------------------------------- materials and primitives
    skin_mat, images = skin_material(gb, src, image_uri)  # materials[0]: the skin
    stats.textured = "albedo" in images
    stats.pbr_maps = src.pbr is not None
    colors = eye_colors(v_shaped, eye_masks(regions, v_shaped)) if any(p.name == "eyes" for p in parts) else None
    sparse = np.ones(K, bool)
    prims = []
    for part in parts:
        s = part.split.src
        attrs = {
            "POSITION": gb.accessor(v_shaped[s].astype(np.float32), ARRAY_BUFFER, minmax=True),
            "NORMAL": gb.accessor(n_rest[s].astype(np.float32), ARRAY_BUFFER),
            # glTF's UV origin is the top-left corner of the image; ours (OBJ) is bottom-left.
            "TEXCOORD_0": gb.accessor(np.stack([part.split.uvs[:, 0], 1.0 - part.split.uvs[:, 1]], 1).astype(np.float32), ARRAY_BUFFER),
            "JOINTS_0": gb.accessor(jidx[s], ARRAY_BUFFER),
            "WEIGHTS_0": gb.accessor(jw[s], ARRAY_BUFFER),
        }
        if part.name == "skin" and src.normal_map is not None:  # explicit tangents make the normal map portable
            attrs["TANGENT"] = gb.accessor(vertex_tangents(v_shaped[s], n_rest[s], part.split.uvs, part.split.faces).astype(np.float32), ARRAY_BUFFER)
        if part.name == "eyes" and colors is not None:
            attrs["COLOR_0"] = gb.accessor(colors[s].astype(np.float32), ARRAY_BUFFER)
        idx_dtype = np.uint16 if len(s) < 65535 else np.uint32  # 65535 is the primitive-restart value, avoid it
        prim = {"attributes": attrs, "indices": gb.accessor(part.split.faces.reshape(-1).astype(idx_dtype), ELEMENT_ARRAY_BUFFER),
                "material": skin_mat if part.name == "skin" else part_material(gb, part.name), "mode": 4}
        if K:
            prim["targets"], part_sparse = _primitive_targets(gb, part, targets, morph_eps, normal_eps)
            sparse &= part_sparse
        prims.append(prim)
        stats.vertices += len(s)
        stats.triangles += len(part.split.faces)
        stats.parts.append(part.name)
    stats.morph_targets = K
    moves = np.abs(targets.deltas).max(axis=(0, 1), initial=0.0) > morph_eps  # (K,)
    stats.sparse_targets = int((sparse & moves).sum())

    mesh: dict = {"name": f"{src.name}_head", "primitives": prims}
    if K:
        mesh["weights"] = [0.0] * K
        mesh["extras"] = {"targetNames": [s.name for s in targets.specs], "arkit": describe(targets.specs, list(m.expression_names))}
    mesh_idx = gb.add("meshes", mesh)

    # ---------------------------------------------------------------- skeleton
    J = m.num_joints
    joints_rest = src.rest_joints(v_shaped)  # (J, 3)
    parents = m.parents.cpu().numpy()
    mesh_node = gb.add("nodes", {"name": f"{src.name}_head", "mesh": mesh_idx})
    joint_nodes = []
    for j in range(J):
        off = joints_rest[j] - (joints_rest[parents[j]] if parents[j] >= 0 else 0.0)
        joint_nodes.append(gb.add("nodes", {"name": m.joint_names[j], "translation": [float(x) for x in off]}))
    for j in range(1, J):
        gb.doc["nodes"][joint_nodes[parents[j]]].setdefault("children", []).append(joint_nodes[j])
    ibm = np.tile(np.eye(4), (J, 1, 1))
    ibm[:, :3, 3] = -joints_rest
    ibm_acc = gb.accessor(ibm.transpose(0, 2, 1).reshape(J, 16).astype(np.float32))  # glTF matrices are column-major
    skin = gb.add("skins", {"name": f"{src.name}_skeleton", "joints": joint_nodes, "inverseBindMatrices": ibm_acc, "skeleton": joint_nodes[0]})
    gb.doc["nodes"][mesh_node]["skin"] = skin
    stats.joints = J
    gb.doc["scenes"] = [{"name": src.name, "nodes": [mesh_node, joint_nodes[0]]}]
    gb.doc["scene"] = 0

    # ---------------------------------------------------------------- animation
    if animation and src.sequence is not None:
        _add_animation(gb, src, targets.specs, mesh_node, joint_nodes, joints_rest[0], stats)
    gb.doc["asset"]["extras"] = {"avatar3d": {"model": m.name, "model_version": m.version, "units": "metres", "up": "+Y", "front": "+Z"}}
    return gb, stats, images


def _primitive_targets(gb: GltfBuilder, part: MeshPart, targets: _Targets, morph_eps: float, normal_eps: float) -> tuple[list[dict], np.ndarray]:
    """The part's morph targets (POSITION and NORMAL deltas) and (K,) whether each is stored sparsely.

    Targets that do not move the part share one all-zero accessor."""
    s = part.split.src
    zero: Optional[int] = None
    out, sparse = [], np.ones(len(targets.specs), bool)
    for k in range(len(targets.specs)):
        d = targets.deltas[s, :, k]
        if np.abs(d).max(initial=0.0) <= morph_eps and (targets.normals is None or np.abs(targets.normals[s, :, k]).max(initial=0.0) <= normal_eps):
            if zero is None:
                zero = gb.zeros(len(s))
            t = {"POSITION": zero}
            if targets.normals is not None:
                t["NORMAL"] = zero
            out.append(t)
            continue
        acc, nnz = gb.sparse_or_dense(d.astype(np.float32), morph_eps, minmax=True)
        sparse[k] = nnz < len(s)
        t = {"POSITION": acc}
        if targets.normals is not None:
            t["NORMAL"] = gb.sparse_or_dense(targets.normals[s, :, k].astype(np.float32), normal_eps, minmax=False)[0]
        out.append(t)
    return out, sparse


def _add_animation(gb: GltfBuilder, src: ExportSource, specs: list[TargetSpec], mesh_node: int, joint_nodes: list[int],
                   root_rest: np.ndarray, stats: GltfStats) -> None:
    """One clip with morph weights (:func:`.arkit.clip_weights`), every joint's rotation and the root translation, one key per frame."""
    seq = src.sequence
    expr, pose, transl = src.frame_params()
    N = len(expr)
    # Frame i is shown from i/fps; one extra key at N/fps holds the last frame so the clip lasts
    # exactly as long as the video (N / fps seconds) and loops at the right length.
    times = (np.arange(N + 1) / float(seq.fps)).astype(np.float32)
    expr, pose, transl = (np.concatenate([a, a[-1:]]) for a in (expr, pose, transl))
    t_acc = gb.accessor(times, minmax=True)
    samplers, channels = [], []

    def channel(node: int, path: str, values: np.ndarray) -> None:
        samplers.append({"input": t_acc, "output": gb.accessor(values.astype(np.float32)), "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})

    if specs:
        channel(mesh_node, "weights", clip_weights(specs, expr).reshape(-1))  # N*K scalars, frame-major as the spec requires
    quats = continuous_quats(axis_angle_to_quat(pose))  # (N, J, 4)
    for j, node in enumerate(joint_nodes):
        channel(node, "rotation", quats[:, j])
    if getattr(src.model, "joints_from_expression", False):
        # FLAME-style: expressions move the joints. Animate every joint's translation so each
        # joint's skinning matrix equals our LBS one despite the fixed inverse bind matrices.
        local_t = _expression_joint_translations(src, expr, quats, transl)
        for j, node in enumerate(joint_nodes):
            channel(node, "translation", local_t[:, j])
        stats.notes.append("joints move with expression (FLAME): joint translations are animated per frame")
    else:
        channel(joint_nodes[0], "translation", root_rest[None] + transl)
    gb.add("animations", {"name": "performance", "samplers": samplers, "channels": channels})
    stats.frames = N
    stats.duration_s = float(times[-1]) if N else 0.0


def _expression_joint_translations(src: ExportSource, expr: np.ndarray, quats: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """(N, J, 3) local joint translations reproducing LBS with expression-dependent joints J(e).

    Our skinning matrix is A_j = [Rw_j | p_j - Rw_j J_j(e)] (Rw world rotation, p posed joint);
    glTF's is world_j @ IBM_j = [Rw_j | p'_j - Rw_j J_j(0)]. Equal when the node's world position is
    p'_j = p_j - Rw_j (J_j(e) - J_j(0)); rotations are untouched, so local translations follow.
    """
    m = src.model
    parents = m.parents.cpu().numpy()
    v_shaped = src.shaped_vertices()
    jreg = m.j_regressor.detach().double().cpu().numpy()
    J0 = jreg @ v_shaped  # (J, 3)
    jdirs = np.einsum("jv,vce->jce", jreg, m.exprdirs.detach().double().cpu().numpy())  # (J, 3, E)
    Je = J0[None] + np.einsum("jce,ne->njc", jdirs, expr)  # (N, J, 3)
    R = quat_to_matrix(quats)  # (N, J, 3, 3) local rotations
    N, J = Je.shape[:2]
    Rw = np.zeros_like(R)
    p = np.zeros_like(Je)
    for j in range(J):  # parents precede children (checked by HeadModel's kinematic chain)
        if parents[j] < 0:
            Rw[:, j], p[:, j] = R[:, j], Je[:, j] + transl
        else:
            q = parents[j]
            Rw[:, j] = Rw[:, q] @ R[:, j]
            p[:, j] = p[:, q] + np.einsum("nab,nb->na", Rw[:, q], Je[:, j] - Je[:, q])
    p_node = p - np.einsum("njab,njb->nja", Rw, Je - J0[None])
    local = p_node.copy()
    for j in range(J):
        if parents[j] >= 0:
            q = parents[j]
            local[:, j] = np.einsum("nba,nb->na", Rw[:, q], p_node[:, j] - p_node[:, q])  # Rw_q^T (p'_j - p'_q)
    return local


def write_gltf(src: ExportSource, out: Path, *, binary: bool = True, **kw) -> tuple[list[Path], GltfStats]:
    """Write ``out`` (.glb, or .gltf + .bin + albedo .png beside it) atomically; returns (files, stats)."""
    out = Path(out)
    if binary:
        gb, stats, _ = build_gltf(src, **kw)
        return write_all({out: gb.to_glb()}), stats
    bin_path = out.with_suffix(".bin")
    gb, stats, images = build_gltf(src, image_uri=lambda name: f"{out.stem}_{name}.png", **kw)
    js, data = gb.to_gltf(bin_path.name)
    files = {out: js, bin_path: data}
    for name, png in images.items():
        files[out.with_name(f"{out.stem}_{name}.png")] = png
    return write_all(files), stats
