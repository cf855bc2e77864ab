"""The appearance stage's product: PBR texture maps in the head model's UV layout, the capture's light, on disk.

:class:`AppearanceMaps` is what ``avatar3d appearance`` writes and what export, the viewer and the avatar
read. Maps are R x R, row 0 at the top of the UV layout (v = 1; the model's OBJ convention). On disk
(a folder, every file written atomically and together, :func:`avatar3d.data.atomic.write_all`):

============================  ==============================================================================
``albedo.png``                diffuse albedo, 8-bit sRGB (stored linear in memory)
``specular.png``              specular intensity, 8-bit linear grey: ``f0 = 0.08 * specular``
                              (:func:`avatar3d.render.brdf.specular_to_f0`; skin's f0 0.028 is 0.35)
``roughness.png``             perceptual roughness, 8-bit linear grey (GGX alpha = roughness^2)
``normal.png``                tangent-space normals, 8-bit RGB, glTF convention (rgb = 0.5 n + 0.5;
                              x along +u, y along +v, z out of the surface)
``displacement.png``          metres along the normal, 16-bit grey: ``d = offset_m + scale_m * value / 65535``
``coverage.png``              how well each texel was observed, 8-bit linear grey: 0 = never seen (prior-filled)
``lighting.npz``              ``sh`` (9, 3) radiance SH of the capture light (bands 0-2, :mod:`.render.lighting`'s
                              basis), ``bands`` 3, ``exposure`` (N,) per-frame gains, ``frame_names`` (N,)
``environment.hdr``           an equirectangular estimate of the capture light (Radiance RGBE, linear)
``material.json``             names every file above with its colour space, channels and scale (written last)
============================  ==============================================================================

``material.json`` (``format`` :data:`FORMAT`, ``version`` :data:`VERSION`)::

    {"format": "avatar3d-material", "version": 1, "model": "builtin", "resolution": 1024, "ior": 1.4,
     "maps": {"albedo": {"file": "albedo.png", "colour_space": "srgb", "channels": 3, "bits": 8}, ...,
              "displacement": {"file": "displacement.png", "colour_space": "linear", "channels": 1,
                               "bits": 16, "scale_m": 0.002, "offset_m": -0.001}},
     "lighting": "lighting.npz", "environment": "environment.hdr", "stats": {...}, "source": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..data.atomic import write_all
from ..errors import BadInputError
from ..render.brdf import F0_PER_SPECULAR, f0_to_ior
from ..render.color import srgb_decode, srgb_encode
from ..render.lighting import EnvironmentMap

__all__ = ["AppearanceMaps", "FORMAT", "VERSION", "MAP_FILES", "SKIN_SPECULAR", "SKIN_ROUGHNESS"]

FORMAT = "avatar3d-material"
VERSION = 1
#: Skin priors: specular intensity of f0 0.028 (IOR 1.4) and perceptual roughness.
SKIN_SPECULAR = 0.028 / F0_PER_SPECULAR
SKIN_ROUGHNESS = 0.5
#: map name -> (file, colour space, channels, bits)
MAP_FILES = {
    "albedo": ("albedo.png", "srgb", 3, 8),
    "specular": ("specular.png", "linear", 1, 8),
    "roughness": ("roughness.png", "linear", 1, 8),
    "normal": ("normal.png", "linear", 3, 8),
    "displacement": ("displacement.png", "linear", 1, 16),
    "coverage": ("coverage.png", "linear", 1, 8),
}


@dataclass
class AppearanceMaps:
    """PBR maps (R x R, float32, in memory all linear) and the capture's light.

    ``albedo`` (R, R, 3) linear diffuse albedo in [0, 1]; ``specular`` (R, R) specular intensity in [0, 1]
    (f0 = 0.08 specular); ``roughness`` (R, R) perceptual roughness in [0, 1]; ``normal`` (R, R, 3) unit
    tangent-space normals (glTF); ``displacement`` (R, R) metres along the normal (negative: into the skin);
    ``coverage`` (R, R) in [0, 1] (0 = never seen); ``sh`` (9, 3) radiance SH of the capture light;
    ``environment`` its equirectangular estimate (None: written from ``sh``); ``exposure`` (N,) per-frame
    gains; ``frame_names`` the N frames; ``model`` the head model's name; ``stats`` free-form numbers
    for the manifest and report (residuals, timings); ``source`` what they were made from (JSON values).
    """

    albedo: np.ndarray
    specular: np.ndarray
    roughness: np.ndarray
    normal: np.ndarray
    displacement: np.ndarray
    coverage: np.ndarray
    sh: np.ndarray
    model: str = "builtin"
    environment: Optional[EnvironmentMap] = None
    exposure: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frame_names: list[str] = field(default_factory=list)
    ior: float = 1.4
    stats: dict[str, Any] = field(default_factory=dict)
    #: what the maps were made from (the run's input fingerprint and settings), written to material.json so the
    #: files carry their provenance: ``avatar3d appearance`` reruns only when it differs
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.albedo.shape[0])

    @classmethod
    def priors(cls, albedo: np.ndarray, coverage: np.ndarray, sh: np.ndarray, **kw) -> "AppearanceMaps":
        """Maps with skin priors where nothing is estimated: specular :data:`SKIN_SPECULAR`, roughness
        :data:`SKIN_ROUGHNESS`, flat normals, zero displacement."""
        R = albedo.shape[0]
        normal = np.zeros((R, R, 3), np.float32)
        normal[..., 2] = 1
        return cls(albedo=albedo, specular=np.full((R, R), SKIN_SPECULAR, np.float32), roughness=np.full((R, R), SKIN_ROUGHNESS, np.float32),
                   normal=normal, displacement=np.zeros((R, R), np.float32), coverage=coverage, sh=sh, **kw)

    def environment_map(self, width: int = 256) -> EnvironmentMap:
        """The capture light as an equirectangular map: ``environment`` if estimated, else ``sh`` evaluated (clamped >= 0)."""
        if self.environment is not None:
            return self.environment
        from ..render.lighting import equirect_directions, sh_basis

        h = width // 2
        d = equirect_directions(h, width).reshape(-1, 3)
        rad = np.asarray(sh_basis(d, 3), np.float64) @ np.asarray(self.sh, np.float64)
        return EnvironmentMap(np.clip(rad, 0, None).reshape(h, width, 3).astype(np.float32))

    # ------------------------------------------------------------------ on disk
    def _images(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The PNG payloads (uint8 / uint16 arrays) and the displacement's scale and offset (metres)."""
        u8 = lambda x: np.clip(np.round(np.asarray(x, np.float64) * 255), 0, 255).astype(np.uint8)  # noqa: E731
        d = np.asarray(self.displacement, np.float64)
        lo, hi = float(d.min()), float(d.max())
        scale = max(hi - lo, 1e-9)
        disp = np.clip(np.round((d - lo) / scale * 65535), 0, 65535).astype(np.uint16)
        images = {
            "albedo": u8(srgb_encode(np.clip(self.albedo, 0, 1))),
            "specular": u8(self.specular),
            "roughness": u8(self.roughness),
            "normal": u8(np.asarray(self.normal) * 0.5 + 0.5),
            "displacement": disp,
            "coverage": u8(self.coverage),
        }
        return images, {"scale_m": scale, "offset_m": lo}

    def manifest(self) -> dict:
        """The ``material.json`` content (see the module docstring)."""
        _, disp = self._images()
        maps = {}
        for name, (file, space, ch, bits) in MAP_FILES.items():
            maps[name] = {"file": file, "colour_space": space, "channels": ch, "bits": bits}
        maps["specular"]["f0_per_unit"] = F0_PER_SPECULAR
        maps["displacement"].update(disp)
        return {"format": FORMAT, "version": VERSION, "model": self.model, "resolution": self.resolution, "ior": self.ior,
                "f0_skin": float(((self.ior - 1) / (self.ior + 1)) ** 2), "maps": maps, "lighting": "lighting.npz",
                "environment": "environment.hdr", "stats": self.stats, "source": self.source}

    def save(self, out_dir: Union[str, Path]) -> Path:
        """Write every file of the module docstring into ``out_dir`` at once (all or nothing); returns ``material.json``'s path."""
        import io

        import cv2

        out = Path(out_dir)
        images, _ = self._images()
        files: dict[Path, Any] = {}
        for name, img in images.items():
            arr = img[..., ::-1] if img.ndim == 3 else img
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
            if not ok:
                raise RuntimeError(f"PNG encoding of {name} failed")
            files[out / MAP_FILES[name][0]] = buf.tobytes()
        bio = io.BytesIO()
        np.savez(bio, sh=np.asarray(self.sh, np.float32), bands=np.int32(3), exposure=np.asarray(self.exposure, np.float32),
                 frame_names=np.asarray(self.frame_names, dtype=str))
        files[out / "lighting.npz"] = bio.getvalue()
        env = self.environment_map()
        files[out / "environment.hdr"] = env.write
        files[out / "material.json"] = json.dumps(self.manifest(), indent=2, default=float).encode()
        write_all(files)
        return out / "material.json"

    @classmethod
    def load(cls, path: Union[str, Path]) -> "AppearanceMaps":
        """From a folder written by :meth:`save` (or its ``material.json``).

        Raises:
            BadInputError: no ``material.json``, another format, or a named file missing or unreadable.
        """
        import cv2

        p = Path(path)
        folder = p.parent if p.name == "material.json" else p
        mpath = folder / "material.json"
        if not mpath.is_file():
            raise BadInputError(f"{folder} has no material.json: run `avatar3d appearance` on the tracking directory first")
        try:
            meta = json.loads(mpath.read_text())
        except (OSError, ValueError) as e:
            raise BadInputError(f"{mpath} is not readable JSON ({e})") from None
        if meta.get("format") != FORMAT:
            raise BadInputError(f"{mpath} is not an avatar3d material (format {meta.get('format')!r})")
        arrays = {}
        for name, info in meta["maps"].items():
            f = folder / info["file"]
            img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise BadInputError(f"{f} is missing or not an image; the appearance folder {folder} is incomplete")
            if img.ndim == 3:
                img = img[..., ::-1]
            arrays[name] = img.astype(np.float64) / (65535.0 if info["bits"] == 16 else 255.0)
        arrays["albedo"] = srgb_decode(arrays["albedo"])
        n = arrays["normal"] * 2 - 1
        arrays["normal"] = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        d = meta["maps"]["displacement"]
        arrays["displacement"] = d["offset_m"] + d["scale_m"] * arrays["displacement"]
        try:
            z = np.load(folder / meta["lighting"])
            sh, exposure, names = z["sh"], z["exposure"], [str(s) for s in z["frame_names"]]
        except (OSError, KeyError, ValueError) as e:
            raise BadInputError(f"{folder / meta['lighting']} is missing or unreadable ({e})") from None
        env = None
        if (folder / meta.get("environment", "environment.hdr")).is_file():
            env = EnvironmentMap.read(folder / meta["environment"])
        f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
        return cls(**{k: f32(v) for k, v in arrays.items()}, sh=f32(sh), model=meta["model"], environment=env, exposure=f32(exposure),
                   frame_names=names, ior=float(meta.get("ior", f0_to_ior(0.028))), stats=meta.get("stats", {}),
                   source=meta.get("source", {}))
