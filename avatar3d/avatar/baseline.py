"""What an avatar is compared with: the tracked mesh with the best texture the tracking directory has, and the face region.

:func:`mesh_baseline` picks, for a tracking directory, the renderer of the **baseline** of the evaluation protocol
(:mod:`.evaluate`): the tracked head model posed by each frame's parameters and textured with

1. ``TRACK_DIR/appearance/`` (``avatar3d appearance``): the PBR maps (albedo, specular, roughness, normal map)
   under the capture light of ``lighting.npz`` with the head's self-shadowing, times the frame's exposure gain,
   sRGB-encoded: exactly how :func:`avatar3d.appearance.evaluate.rerender_errors` re-renders them;
2. else the photometric tracker's ``albedo.png`` under its SH light (``params.npz``'s ``lighting``), shaded by
   :meth:`avatar3d.render.head.HeadRenderer.shade` as the tracker rendered it (all triangles drawn);
3. else nothing (:func:`mesh_baseline` returns None and the reason).

Each renders one frame over a white background, as the avatar does. Both textures were fitted on all the
frames, the held-out ones included: the baseline is, if anything, favoured.

:class:`FaceRegion` is the protocol's face region: the pixels where the tracked mesh's front-most triangle
belongs to the head model's face (:data:`SKIN_REGIONS`: the facial skin with the lips, without ears and neck;
:data:`FACE_REGIONS`: the eyeballs, eye sockets, the mouth interior and the teeth), rasterized with the library's
mesh rasterizer (depth-tested, so a face triangle hidden behind another part does not count).
Shapes: V model vertices, F triangles, H x W pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..models.base import HeadModel
from ..render.camera import Camera
from ..render.mesh import rasterize

__all__ = ["SKIN_REGIONS", "FACE_REGIONS", "FaceRegion", "MeshBaseline", "MapsBaseline", "TrackerBaseline", "mesh_baseline"]

#: the facial skin: the first of these regions the head model has (ICT's ``face`` part also holds the ears and the
#: neck; its ``narrow_face`` is the face the built-in head's ``face`` region covers)
SKIN_REGIONS = ("narrow_face", "face")
#: the regions inside the face, with the skin making the face region (those a model lacks are skipped)
FACE_REGIONS = ("eyes", "mouth_interior", "teeth", "eye_sockets", "eye_auxiliary", "eyelashes")


class FaceRegion:
    """The face region of a head model's posed mesh in a camera (module docstring).

    Args:
        model: the head model; its regions of :data:`SKIN_REGIONS` (the first it has) and :data:`FACE_REGIONS` choose the triangles.
    """

    def __init__(self, model: HeadModel):
        skin = [r for r in SKIN_REGIONS if r in model.region_names][:1]
        if not skin:
            raise ValueError(f"the head model {model.name!r} has no face region ({' or '.join(SKIN_REGIONS)})")
        names = skin + [r for r in FACE_REGIONS if r in model.region_names]
        self.regions = names  #: the regions used
        faces = model.faces.long()
        # a triangle belongs to the face when all three corners are in one of the regions
        self.triangles = torch.stack([model.region(r)[faces].all(1) for r in names]).any(0)  #: (F,) bool
        self.tri = model.faces.to(torch.int32).contiguous()

    @torch.no_grad()
    def __call__(self, vertices: Tensor, camera: Camera) -> Tensor:
        """(H, W) bool: pixels whose front-most triangle of posed ``vertices`` (V, 3) is a face triangle."""
        rast, _ = rasterize(camera.to_clip(vertices.float()[None]), self.tri, (camera.height, camera.width))
        tri = rast[0, ..., 3].long() - 1
        return (tri >= 0) & self.triangles[tri.clamp(min=0)]


class MeshBaseline(Protocol):
    """Renders the tracked mesh of one frame over white."""

    source: str  #: what texture it uses, in words

    def __call__(self, vertices: Tensor, camera: Camera, frame: int) -> Tensor:
        """(H, W, 3) display colours in [0, 1] over white of posed ``vertices`` (V, 3) in ``camera``, for
        frame number ``frame`` of the sequence (its exposure gain, its row of the intrinsics)."""
        ...


class MapsBaseline:
    """The appearance maps shaded as :func:`avatar3d.appearance.evaluate.rerender_errors` does (module docstring).

    Args:
        model: the head model; maps: ``TRACK_DIR/appearance``'s :class:`~avatar3d.appearance.maps.AppearanceMaps`;
        shape: (S,) the tracked identity; frames: the sequence's length (the exposure gains' count).
    """

    source = "appearance maps (TRACK_DIR/appearance: albedo, specular, roughness, normal map) under the capture light of lighting.npz"

    def __init__(self, model: HeadModel, maps, shape: Tensor, frames: int):
        from ..appearance.evaluate import pbr_light
        from ..appearance.visibility import LightTransfer, VertexVisibility, downsample_env, env_grid
        from ..render.pbr import PBRMaterial, SeamMesh

        self.mesh = SeamMesh.of(model)
        self.material = PBRMaterial.of(maps.albedo, maps.specular, maps.roughness, maps.normal)
        self.light = pbr_light(maps)
        with torch.no_grad():
            rest = model(shape.float()[None]).vertices[0].float()
        self.transfer = LightTransfer(VertexVisibility(rest, model.faces), *env_grid(16), model.faces)
        self.radiance = torch.as_tensor(downsample_env(maps.environment_map(), 16)).float()
        exposure = np.asarray(maps.exposure, np.float64)
        self.gains = exposure if len(exposure) == frames else np.ones(frames)

    @torch.no_grad()
    def __call__(self, vertices: Tensor, camera: Camera, frame: int) -> Tensor:
        from ..render.color import srgb_encode
        from ..render.pbr import Occlusion, render_pbr

        v = vertices.float()
        r = render_pbr(self.mesh, v, camera.K, camera.world_to_cam, camera.width, camera.height, self.material, self.light,
                       Occlusion(*self.transfer.factors(v, self.radiance)))
        rgb = srgb_encode(r.rgb * float(self.gains[frame])).clamp(0, 1)
        a = r.alpha[..., None]
        return rgb * a + (1.0 - a)


class TrackerBaseline:
    """The photometric tracker's ``albedo.png`` under its SH light (module docstring).

    Args:
        model: the head model; albedo: (T, T, 3) texture in [0, 1]; sh: (9, 3) camera-frame SH;
        frames: the tracking directory read at the evaluation's resolution (its intrinsics and camera).
    """

    source = "the photometric tracker's albedo.png under its SH light (params.npz lighting)"

    def __init__(self, model: HeadModel, albedo: Tensor, sh: Tensor, frames: TrackedFrames):
        from ..render.head import HeadRenderer

        self.albedo, self.sh = albedo, sh
        # every triangle (crop_margin None): the full crop is scored, not only the face the tracker compared
        self.renderer = HeadRenderer(model, torch.as_tensor(frames.K, dtype=torch.float32),
                                     torch.as_tensor(frames.sequence.world_to_cam[0], dtype=torch.float32),
                                     crop=frames.width, r=frames.width, crop_margin=None)

    @torch.no_grad()
    def __call__(self, vertices: Tensor, camera: Camera, frame: int) -> Tensor:
        # in sub-mesh order: with every triangle drawn the sub-mesh has all V vertices, permuted (by skinning group),
        # so HeadRenderer cannot tell model vertices from sub-mesh ones by their count
        ras = self.renderer.raster(vertices.float()[None][:, self.renderer.vertex_ids], np.array([frame]))
        img, cover = self.renderer.shade(ras, self.albedo, self.sh)
        return (img[0] + (1.0 - cover[0])).clamp(0, 1)  # shade's image is on black, coverage antialiased


def mesh_baseline(track_dir: Path, model: HeadModel, frames: TrackedFrames, shape: Tensor) -> tuple[Optional[MeshBaseline], str]:
    """The best baseline renderer of ``track_dir`` and its description; (None, why not) when it has no texture.

    ``frames`` is the tracking directory read at the evaluation's resolution, ``shape`` (S,) its identity.
    """
    from ..appearance.evaluate import tracking_appearance
    from ..appearance.maps import AppearanceMaps
    from ..errors import Avatar3DError

    maps_dir = Path(track_dir) / "appearance"
    if (maps_dir / "material.json").is_file():
        try:
            maps = AppearanceMaps.load(maps_dir)
        except (Avatar3DError, OSError, ValueError, KeyError) as e:
            return None, f"{maps_dir} cannot be read ({e}); rerun `avatar3d appearance`"
        return MapsBaseline(model, maps, shape, len(frames)), MapsBaseline.source
    if frames.width != frames.height:
        return None, f"the tracker's albedo is rendered on square crops only, these are {frames.width} x {frames.height}"
    tracked = tracking_appearance(frames) if (Path(track_dir) / "albedo.png").is_file() else None
    if tracked is None:
        return None, (f"{track_dir} has neither appearance maps (`avatar3d appearance`) nor a photometric albedo "
                      "(`avatar3d track --photometric`)")
    return TrackerBaseline(model, tracked[0], tracked[1], frames), TrackerBaseline.source
