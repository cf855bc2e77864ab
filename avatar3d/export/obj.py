"""Wavefront OBJ export: the neutral (identity-applied) head or any tracked frame, with MTL and albedo PNG.

OBJ indexes UVs per face corner (``f v/vt/vn``), exactly like our models, so no seam splitting is
needed. OBJ's UV origin is bottom-left, also like ours. Positions in metres, +Y up, face towards +Z.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.atomic import png_bytes, write_all
from ..geometry import vertex_normals_np
from ..render.brdf import F0_PER_SPECULAR
from .appearance import PbrImages
from .gltf_material import NEUTRAL_SKIN
from .source import ExportSource


def posed_vertices(src: ExportSource, frames: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, V, 3) float64 vertices of the given tracked frames (HeadModel.forward), or (1, V, 3) neutral."""
    if frames is None or src.sequence is None:
        return src.shaped_vertices()[None]
    expr, pose, transl = src.frame_params()
    m = src.model
    out = []
    with torch.no_grad():
        for chunk in np.array_split(np.asarray(frames), max(1, len(frames) // 64)):
            if not len(chunk):
                continue
            o = m(shape=torch.as_tensor(np.repeat(src.shape[None], len(chunk), 0), dtype=m.v_template.dtype), expression=torch.as_tensor(expr[chunk], dtype=m.v_template.dtype),
                  pose=torch.as_tensor(pose[chunk], dtype=m.v_template.dtype), transl=torch.as_tensor(transl[chunk], dtype=m.v_template.dtype))
            out.append(o.vertices.double().cpu().numpy())
    return np.concatenate(out)


def obj_text(verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray, mtl_name: Optional[str], name: str) -> bytes:
    """OBJ file contents for one (V, 3) mesh with per-corner UVs and per-vertex normals."""
    normals = vertex_normals_np(np.asarray(verts, np.float64), faces, eps=1e-20, unused=(0.0, 0.0, 1.0))
    buf = io.StringIO()
    buf.write("# avatar3d export: metres, +Y up, face towards +Z\n")
    if mtl_name:
        buf.write(f"mtllib {mtl_name}\n")
    buf.write(f"o {name}\n")
    np.savetxt(buf, verts, fmt="v %.7g %.7g %.7g")
    np.savetxt(buf, uvs, fmt="vt %.7g %.7g")
    np.savetxt(buf, normals, fmt="vn %.6g %.6g %.6g")
    if mtl_name:
        buf.write("usemtl skin\n")
    f = np.asarray(faces) + 1
    t = np.asarray(uv_faces) + 1
    corners = np.stack([f, t, f], -1).reshape(len(f), 9)
    np.savetxt(buf, corners, fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return buf.getvalue().encode("ascii")


def write_obj(src: ExportSource, out: Path, *, frame: Optional[int] = None, all_frames: bool = False) -> list[Path]:
    """Write ``out`` (.obj) with ``.mtl`` and albedo PNG beside it (and the appearance stage's maps, :func:`pbr_mtl`), atomically.

    Args:
        frame: a tracked frame index to pose the mesh with (default: neutral identity-applied mesh).
        all_frames: one OBJ per tracked frame, ``<stem>_000000.obj`` ..., sharing one MTL/texture.
    """
    out = Path(out)
    m = src.model
    faces = m.faces.cpu().numpy()
    uvs = m.uvs.cpu().numpy().astype(np.float64)
    uv_faces = m.uv_faces.cpu().numpy()
    mtl_path = out.with_suffix(".mtl")
    png_path = out.with_name(out.stem + "_albedo.png")
    if (frame is not None or all_frames) and src.sequence is None:
        raise ValueError("frame selection needs a tracked sequence as SOURCE (a head model has only its neutral mesh)")
    if all_frames:
        idx = np.arange(src.sequence.num_frames)
    elif frame is not None:
        n = src.sequence.num_frames
        if not -n <= frame < n:
            raise ValueError(f"frame {frame} is outside the tracked sequence (0..{n - 1})")
        idx = np.array([frame % n])
    else:
        idx = None
    verts = posed_vertices(src, idx)
    files: dict[Path, bytes] = {}
    if all_frames:
        for k, i in enumerate(idx):
            p = out.with_name(f"{out.stem}_{int(i):06d}.obj")
            files[p] = obj_text(verts[k], faces, uvs, uv_faces, mtl_path.name, f"{src.name}_{int(i):06d}")
    else:
        files[out] = obj_text(verts[0], faces, uvs, uv_faces, mtl_path.name, src.name)
    mtl = ["# avatar3d export", "newmtl skin", "Ka 0 0 0", "Ks 0.04 0.04 0.04", "Ns 20", "illum 2", "d 1"]
    if src.albedo is not None:
        mtl += ["Kd 1 1 1", f"map_Kd {png_path.name}"]
        files[png_path] = png_bytes(src.albedo)
    else:
        mtl.append("Kd {:.3f} {:.3f} {:.3f}".format(*NEUTRAL_SKIN[:3]))
    if src.pbr is not None:
        lines, images = pbr_mtl(src.pbr, out.stem)
        mtl = [line for line in mtl if not line.startswith("Ks ")] + lines
        files.update({out.with_name(name): png_bytes(img) for name, img in images.items()})
    files[mtl_path] = ("\n".join(mtl) + "\n").encode("ascii")
    return write_all(files)


def pbr_mtl(maps: PbrImages, stem: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """MTL lines and ``{file name: image}`` for the appearance stage's maps beside ``<stem>.obj``.

    Written in both the classic and the PBR extension (Clara.io / Blender / tinyobjloader) vocabulary:
    ``Ks 0.08`` x ``map_Ks`` is f0 (= 0.08 specular), ``Ni`` the ior; ``Pr 1`` x ``map_Pr`` the perceptual
    roughness, ``Pm 0`` (not metallic); the tangent-space normal map (OpenGL convention, +Y along +v) as
    ``norm`` and ``map_Bump`` (Blender's importer reads it as a normal map); the 16-bit displacement as ``disp``
    with ``-mm offset scale``, so ``offset + scale * value`` is metres along the normal (the OBJ's unit).
    """
    names = {k: f"{stem}_{k}.png" for k in ("roughness", "specular", "normal", "displacement")}
    k = F0_PER_SPECULAR
    lines = [
        f"Ks {k:g} {k:g} {k:g}", f"map_Ks {names['specular']}", f"Ni {maps.ior:g}",
        "Pr 1", f"map_Pr {names['roughness']}", "Pm 0",
        f"norm {names['normal']}", f"map_Bump {names['normal']}",
        f"disp -mm {maps.displacement_offset_m:.9g} {maps.displacement_scale_m:.9g} {names['displacement']}",
    ]
    images = {names["roughness"]: maps.roughness, names["specular"]: maps.specular, names["normal"]: maps.normal,
              names["displacement"]: maps.displacement}
    return lines, images
