"""glTF 2.0 / GLB export of a head: skinned mesh + expression morph targets + PBR material + animation.

Mapping from :class:`~avatar3d.models.HeadModel` to glTF (both: metres, +Y up, face towards +Z):

* mesh: identity-applied rest vertices (``v_template + shapedirs @ shape``), split at UV seams;
  glTF UVs have their origin top-left, so ``v`` is flipped.
* morph targets: one per expression blendshape (``exprdirs[:, :, e]``) with normal deltas, named
  in ``mesh.extras.targetNames`` in ARKit spelling (``eyeBlink_L`` -> ``eyeBlinkLeft``); morph
  weight = expression coefficient. Targets that move few vertices are stored as sparse accessors.
* skin: one node per model joint. Each joint node's translation is its rest offset from the parent
  (the root's is its rest location), so with identity rotations the skeleton is the bind pose and
  ``inverseBindMatrices`` are plain translations by ``-rest_joint``. This reproduces
  ``lbs.rigid_transforms`` exactly: world_j = parent_world @ [R_j | offset_j], skin_j = world_j @ IBM_j.
* animation: one key per frame at ``frame / fps`` s (LINEAR) plus one at N/fps holding the last
  frame, so the clip lasts N/fps s like the video. Morph weights = expression, joint rotations =
  quaternions of the axis-angle pose, root translation = rest root location + ``transl`` (our
  forward adds ``transl`` after skinning, which equals translating the root joint).
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

from ..data.atomic import png_bytes, write_all
from ..geometry import vertex_normals_np
from ..render.brdf import F0_PER_SPECULAR
from .appearance import PbrImages, specular_color_factor
from .gltf_doc import ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER, GltfBuilder
from .mesh import axis_angle_to_quat, continuous_quats, quat_to_matrix, split_seams, top4_weights, vertex_tangents
from .source import ExportSource

#: Base colour of the neutral skin material used when a model has no albedo texture (linear RGB).
NEUTRAL_SKIN = (0.80, 0.58, 0.47, 1.0)


def arkit_target_names(names: list[str]) -> list[str]:
    """Morph target names in Apple ARKit spelling (``eyeBlink_L`` -> ``eyeBlinkLeft``), as engines' face rigs expect.

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


@dataclass
class GltfStats:
    """What went into a glTF export (returned to callers and printed by the CLI)."""

    vertices: int = 0  #: exported vertices (after seam splitting)
    triangles: int = 0
    morph_targets: int = 0
    sparse_targets: int = 0  #: morph targets stored sparsely
    joints: int = 0
    frames: int = 0
    duration_s: float = 0.0
    max_dropped_weight: float = 0.0  #: largest skin weight lost to the 4-influence limit
    textured: bool = False
    pbr_maps: bool = False  #: the appearance stage's maps (albedo, roughness, normal, specular) are in the material
    notes: list[str] = field(default_factory=list)


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
        the builder, statistics, and ``{texture name: PNG bytes}`` of the material's images.
    """
    m = src.model
    stats = GltfStats()
    gb = GltfBuilder()

    v_shaped = src.shaped_vertices()  # (V, 3) float64
    faces = m.faces.cpu().numpy()
    split = split_seams(faces, m.uv_faces.cpu().numpy(), m.uvs.cpu().numpy())
    s = split.src
    n_rest = vertex_normals_np(v_shaped, faces, eps=1e-20, unused=(0.0, 0.0, 1.0))
    Vx = len(s)
    stats.vertices, stats.triangles = Vx, len(split.faces)

    # ---------------------------------------------------------------- vertex attributes
    attrs = {
        "POSITION": gb.accessor(v_shaped[s].astype(np.float32), ARRAY_BUFFER, minmax=True),
        "NORMAL": gb.accessor(n_rest[s].astype(np.float32), ARRAY_BUFFER),
        # glTF's UV origin is the top-left corner of the image; ours (OBJ) is bottom-left.
        "TEXCOORD_0": gb.accessor(np.stack([split.uvs[:, 0], 1.0 - split.uvs[:, 1]], 1).astype(np.float32), ARRAY_BUFFER),
    }
    if src.normal_map is not None:  # explicit tangents make the normal map portable across engines
        attrs["TANGENT"] = gb.accessor(vertex_tangents(v_shaped[s], n_rest[s], split.uvs, split.faces).astype(np.float32), ARRAY_BUFFER)
    J = m.num_joints
    jidx, jw, dropped = top4_weights(m.lbs_weights.detach().double().cpu().numpy())
    stats.max_dropped_weight = dropped
    if dropped > 0:
        stats.notes.append(f"skin weights limited to 4 joints per vertex (largest dropped weight {dropped:.3g})")
    attrs["JOINTS_0"] = gb.accessor(jidx[s], ARRAY_BUFFER)
    attrs["WEIGHTS_0"] = gb.accessor(jw[s], ARRAY_BUFFER)
    if m.posedirs is not None:
        stats.notes.append("pose-corrective blendshapes (posedirs) are not expressible in glTF and were dropped")

    idx_dtype = np.uint16 if Vx < 65535 else np.uint32  # 65535 is the primitive-restart value, avoid it
    indices = gb.accessor(split.faces.reshape(-1).astype(idx_dtype), ELEMENT_ARRAY_BUFFER)

    # ---------------------------------------------------------------- morph targets
    exprdirs = m.exprdirs.detach().double().cpu().numpy()  # (V, 3, E)
    E = exprdirs.shape[2]
    targets = []
    for e in range(E):
        d = exprdirs[:, :, e]
        t = {}
        acc, nnz = gb.sparse_or_dense(d[s].astype(np.float32), morph_eps, minmax=True)
        t["POSITION"] = acc
        stats.sparse_targets += int(nnz < Vx)
        if normal_deltas:
            dn = vertex_normals_np(v_shaped + d, faces, eps=1e-20, unused=(0.0, 0.0, 1.0)) - n_rest
            t["NORMAL"] = gb.sparse_or_dense(dn[s].astype(np.float32), normal_eps, minmax=False)[0]
        targets.append(t)
    stats.morph_targets = E

    # ---------------------------------------------------------------- material
    material, images = _material(gb, src, image_uri)
    stats.textured = "albedo" in images
    stats.pbr_maps = src.pbr is not None

    prim: dict = {"attributes": attrs, "indices": indices, "material": material, "mode": 4}
    mesh: dict = {"name": f"{src.name}_head", "primitives": [prim]}
    if E:
        prim["targets"] = targets
        mesh["weights"] = [0.0] * E
        mesh["extras"] = {"targetNames": arkit_target_names(m.expression_names)}
        if mesh["extras"]["targetNames"] != list(m.expression_names):
            mesh["extras"]["sourceTargetNames"] = list(m.expression_names)  # the model's own spelling
    mesh_idx = gb.add("meshes", mesh)

    # ---------------------------------------------------------------- skeleton
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
        _add_animation(gb, src, mesh_node, joint_nodes, joints_rest[0], stats)
    gb.doc["asset"]["extras"] = {"avatar3d": {"model": m.name, "model_version": m.version, "units": "metres", "up": "+Y", "front": "+Z"}}
    return gb, stats, images


def _material(gb: GltfBuilder, src: ExportSource, image_uri: Optional[Callable[[str], str]]) -> tuple[int, dict[str, bytes]]:
    """PBR skin material: albedo -> baseColorTexture (else a neutral skin colour); optional tangent-space
    normal map -> normalTexture; optional roughness map -> metallicRoughnessTexture (G channel, metallic 0);
    the appearance stage's specular map and ior -> ``KHR_materials_specular`` / ``KHR_materials_ior``."""
    images: dict[str, bytes] = {}
    sampler = None

    def texture(name: str, img: np.ndarray) -> dict:
        nonlocal sampler
        if sampler is None:  # linear + trilinear mipmaps, clamped so atlas borders do not bleed across
            sampler = gb.add("samplers", {"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
        images[name] = png_bytes(img)
        im = gb.image(images[name], name, uri=image_uri(name) if image_uri else None)
        return {"index": gb.add("textures", {"sampler": sampler, "source": im}), "texCoord": 0}

    pbr: dict = {"metallicFactor": 0.0, "roughnessFactor": 0.6}
    mat: dict = {"name": "skin", "pbrMetallicRoughness": pbr, "doubleSided": False}
    if src.albedo is not None:
        pbr["baseColorTexture"] = texture("albedo", src.albedo)
    else:
        pbr["baseColorFactor"] = list(NEUTRAL_SKIN)
    if src.normal_map is not None:
        mat["normalTexture"] = texture("normal", src.normal_map)
    if src.roughness_map is not None:
        r = src.roughness_map
        # glTF reads roughness from G and metalness from B of one texture; skin is not metallic.
        mr = np.zeros(r.shape + (3,), np.uint8)
        mr[..., 1] = r
        pbr["metallicRoughnessTexture"] = texture("roughness", mr)
        pbr["roughnessFactor"] = 1.0
    if src.pbr is not None:
        _specular_extensions(gb, mat, src.pbr, texture)
    return gb.add("materials", mat), images


def _specular_extensions(gb: GltfBuilder, mat: dict, maps: PbrImages, texture: Callable[[str, np.ndarray], dict]) -> None:
    """``KHR_materials_specular`` (the specular map in the texture's alpha) and ``KHR_materials_ior`` on ``mat``,
    scaled so an engine's f0 is ``0.08 * specular`` (:mod:`.appearance`). Both are in ``extensionsUsed`` only:
    an engine without them shows the core metallic-roughness material (f0 0.04), still a valid skin."""
    ext = mat.setdefault("extensions", {})
    k = specular_color_factor(maps.ior)
    ext["KHR_materials_specular"] = {"specularFactor": 1.0, "specularTexture": texture("specular", maps.specular_rgba()),
                                     "specularColorFactor": [k, k, k]}
    ext["KHR_materials_ior"] = {"ior": float(maps.ior)}
    used = gb.doc.setdefault("extensionsUsed", [])
    for name in ("KHR_materials_specular", "KHR_materials_ior"):
        if name not in used:
            used.append(name)
    # What no core field or ratified extension carries: how to read the specular map back, the detail's scale.
    mat["extras"] = {"avatar3d": {"f0_per_specular": F0_PER_SPECULAR, "displacement_scale_m": maps.displacement_scale_m,
                                  "displacement_offset_m": maps.displacement_offset_m}}


def _add_animation(gb: GltfBuilder, src: ExportSource, mesh_node: int, joint_nodes: list[int], root_rest: np.ndarray, stats: GltfStats) -> None:
    """One clip with morph weights, every joint's rotation and the root translation, one key per frame."""
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

    if expr.shape[1]:
        channel(mesh_node, "weights", expr.reshape(-1))  # N*E scalars, frame-major as the spec requires
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
