"""The appearance stage's PBR maps (``TRACK_DIR/appearance/``) as the 8/16-bit images exporters embed.

:class:`PbrImages` is read from an :class:`~avatar3d.appearance.maps.AppearanceMaps` folder (through
``AppearanceMaps.load``, the stage's contract) and re-encoded as engines want them. Images are R x R,
row 0 at the top of the UV layout (v = 1), like the model's own albedo texture.

**Specular in glTF.** Our maps store a specular *intensity* ``s`` with ``f0 = 0.08 s``
(:data:`avatar3d.render.brdf.F0_PER_SPECULAR`). ``KHR_materials_specular`` with ``KHR_materials_ior``
defines the dielectric ``f0 = min(((ior - 1) / (ior + 1))^2 * specularColorFactor * specularColorTexture, 1)
* specularFactor * specularTexture.a``. We write ``specularTexture.a = s`` (the map unchanged),
``specularFactor = 1``, the material's ``ior`` (1.4 for skin) and
``specularColorFactor = 0.08 / ((ior - 1) / (ior + 1))^2`` in every channel (2.88 at ior 1.4; the
extension allows colour factors above 1), so an engine's f0 is exactly ``0.08 s``: skin's prior
s = 0.35 gives f0 0.028. The clamp at 1 never acts (``0.08 s <= 0.08``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..render.brdf import F0_PER_SPECULAR, ior_to_f0
from ..render.color import srgb_encode

__all__ = ["PbrImages", "APPEARANCE_DIR", "find_appearance", "load_pbr_images", "specular_color_factor"]

#: Sub-folder of a tracking directory where ``avatar3d appearance`` writes its maps.
APPEARANCE_DIR = "appearance"


def specular_color_factor(ior: float) -> float:
    """``KHR_materials_specular.specularColorFactor`` (per channel) that makes an engine's f0 equal ``0.08 * specular``
    under ``KHR_materials_ior`` = ``ior`` (see the module docstring)."""
    return float(F0_PER_SPECULAR / ior_to_f0(float(ior)))


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


@dataclass
class PbrImages:
    """PBR maps as image arrays (R x R, row 0 = top of the UV layout).

    ``albedo`` (R, R, 3) uint8 sRGB; ``roughness`` (R, R) uint8 perceptual roughness; ``specular`` (R, R)
    uint8 intensity (f0 = 0.08 value / 255); ``normal`` (R, R, 3) uint8 tangent-space normal, glTF/OpenGL
    convention (x along +u, y along +v); ``displacement`` (R, R) uint16, metres = ``displacement_offset_m +
    displacement_scale_m * value / 65535``; ``ior`` the material's index of refraction; ``model`` the head
    model the maps were made for (its UV layout); ``folder`` where they were read from.
    """

    albedo: np.ndarray
    roughness: np.ndarray
    specular: np.ndarray
    normal: np.ndarray
    displacement: np.ndarray
    displacement_scale_m: float
    displacement_offset_m: float
    ior: float = 1.4
    model: str = ""
    folder: Optional[Path] = None

    @classmethod
    def from_maps(cls, maps, folder: Optional[Path] = None) -> "PbrImages":
        """From an in-memory :class:`~avatar3d.appearance.maps.AppearanceMaps` (float maps, linear)."""
        d = np.asarray(maps.displacement, np.float64)
        lo, hi = float(d.min()), float(d.max())
        scale = max(hi - lo, 1e-9)
        n = np.asarray(maps.normal, np.float64)
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        return cls(
            albedo=_u8(srgb_encode(np.clip(maps.albedo, 0, 1))), roughness=_u8(maps.roughness), specular=_u8(maps.specular),
            normal=_u8(n * 0.5 + 0.5), displacement=np.clip(np.round((d - lo) / scale * 65535), 0, 65535).astype(np.uint16),
            displacement_scale_m=scale, displacement_offset_m=lo, ior=float(maps.ior), model=str(maps.model), folder=folder,
        )

    @property
    def resolution(self) -> int:
        return int(self.albedo.shape[0])

    @property
    def model_name(self) -> str:
        """The head model's name from the stored spec (``"flame=/path/x.pkl"`` -> ``"flame"``)."""
        return self.model.partition("=")[0].strip().lower()

    def specular_rgba(self) -> np.ndarray:
        """(R, R, 4) uint8 ``KHR_materials_specular`` texture: intensity in A (what the extension reads), and in
        RGB as grey so the image previews as the map."""
        s = self.specular
        return np.ascontiguousarray(np.stack([s, s, s, s], -1))

    def metallic_roughness(self) -> np.ndarray:
        """(R, R, 3) uint8 glTF metallicRoughness texture: roughness in G, metalness 0 in B (R unused, 0)."""
        mr = np.zeros(self.roughness.shape + (3,), np.uint8)
        mr[..., 1] = self.roughness
        return mr


def find_appearance(directory: Union[str, Path, None]) -> Optional[Path]:
    """``directory/appearance`` when it holds a ``material.json``, else None."""
    if directory is None:
        return None
    p = Path(directory) / APPEARANCE_DIR
    return p if (p / "material.json").is_file() else None


def load_pbr_images(path: Union[str, Path]) -> PbrImages:
    """:class:`PbrImages` of an appearance folder (or its ``material.json``).

    Raises:
        BadInputError: not an appearance folder, or a map missing (from ``AppearanceMaps.load``).
    """
    from ..appearance.maps import AppearanceMaps

    p = Path(path)
    folder = p.parent if p.name == "material.json" else p
    return PbrImages.from_maps(AppearanceMaps.load(folder), folder)
