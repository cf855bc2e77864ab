"""glTF materials of an exported head: the skin (albedo / PBR maps) and one flat material per other part.

Colours are linear RGB (glTF's ``baseColorFactor`` and ``COLOR_0`` are linear); roughness is perceptual.
The eye material is white times the eye's vertex colours (sclera, iris, pupil: :func:`.parts.eye_colors`).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..data.atomic import png_bytes
from ..render.brdf import F0_PER_SPECULAR
from .appearance import PbrImages, specular_color_factor
from .gltf_doc import GltfBuilder
from .source import ExportSource

#: Base colour of the neutral skin material used when a model has no albedo texture (linear RGB).
NEUTRAL_SKIN = (0.80, 0.58, 0.47, 1.0)

#: part -> (linear RGBA base colour, roughness): wet eyes are glossy, teeth off-white and rougher, the mouth
#: interior dark red (sRGB about 0.40 / 0.10 / 0.10).
PART_MATERIALS: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "eyes": ((1.0, 1.0, 1.0, 1.0), 0.12),
    "teeth": ((0.78, 0.74, 0.62, 1.0), 0.45),
    "mouth": ((0.13, 0.011, 0.011, 1.0), 0.55),
}


def part_material(gb: GltfBuilder, part: str) -> int:
    """A flat, non-metallic material for ``part`` (a :data:`PART_MATERIALS` key); returns its index."""
    rgba, rough = PART_MATERIALS[part]
    pbr = {"baseColorFactor": list(rgba), "metallicFactor": 0.0, "roughnessFactor": rough}
    return gb.add("materials", {"name": part, "pbrMetallicRoughness": pbr, "doubleSided": False})


def skin_material(gb: GltfBuilder, src: ExportSource, image_uri: Optional[Callable[[str], str]]) -> tuple[int, dict[str, bytes]]:
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


