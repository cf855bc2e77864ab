"""The head in an Open3D scene: geometry updates, display modes, lights and cameras.

:class:`HeadScene` drives an ``open3d.visualization.rendering.Open3DScene`` and is shared by the
headless renderer and the GUI app, so a screenshot from the CLI and the window show the same thing.
Camera convention: OpenCV (x right, y down, z forward), ``K`` in pixels, ``world_to_cam`` (4, 4);
the head frame is metres, +Y up, face towards +Z.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..render.brdf import F0_PER_SPECULAR
from ..render.camera import project as project_points
from ..render.color import display_curve, srgb_decode, srgb_encode
from .envmaps import bake_environment, environment_names, irradiance_sh
from .fastshade import SKIN_REFLECTANCE, SKIN_ROUGHNESS, VertexLighting, front_facing
from .materials import SurfaceMaps, WorldNormals
from .mesh import HeadMesh
from .params import HeadParams

__all__ = ["HeadScene", "Lighting", "DISPLAY_MODES", "project", "SKIN_COLOR"]

DISPLAY_MODES = ("shaded", "albedo", "roughness", "specular", "normals")
#: Modes that show a material map's values as they are (unlit, post-processing off: pixel = value x 255; the
#: albedo as its sRGB code, like the texture file).
MAP_MODES = ("albedo", "roughness", "specular")
SKIN_COLOR = (0.78, 0.6, 0.5)  # base colour when the model has no albedo texture (linear-ish sRGB)
SUN_LUX = 70000.0  # Filament sun illuminance for light intensity 1.0
IBL_SCALE = 32000.0  # Filament IBL intensity for environment intensity 1.0


@dataclass
class Lighting:
    """Directional light (angles in degrees; azimuth 0 = from the front, + towards the head's +X)
    and environment light (one of ``render.lighting.ENVIRONMENTS``, or ``"capture"``: the appearance stage's
    estimate of the capture's light, when the head has its maps; rotation about +Y in degrees)."""

    azimuth: float = 30.0
    elevation: float = 25.0
    intensity: float = 1.0
    color: tuple[float, float, float] = (1.0, 0.97, 0.92)
    environment: str = "studio"
    env_rotation: float = 0.0
    env_intensity: float = 1.0
    show_environment: bool = False  # environment as background instead of a flat colour
    background: tuple[float, float, float] = field(default=(0.16, 0.17, 0.19))

    def direction(self) -> np.ndarray:
        """(3,) unit vector the light travels along (from the light towards the head)."""
        az, el = np.deg2rad(self.azimuth), np.deg2rad(self.elevation)
        towards_light = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        return (-towards_light).astype(np.float32)


def project(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates (x right, y down, pixel centres at integers) of (N, 3) world points."""
    return project_points(np.asarray(points, np.float64), np.asarray(K, np.float64), np.asarray(world_to_cam, np.float64))[0]


class HeadScene:
    """One head (plus wireframe / landmark overlays) in an ``Open3DScene``; cheap to update."""

    HEAD, WIRE, LMK = "head", "wireframe", "landmarks"

    def __init__(self, o3d_scene, mesh: HeadMesh):
        import open3d as o3d

        self._o3d = o3d
        self.scene = o3d_scene
        self.mesh = mesh
        self.mode = "shaded"
        self.wireframe = False
        self.landmarks = False
        self.lighting = Lighting()
        self._ibl_prefix: Optional[str] = None
        self._albedo_img = o3d.geometry.Image(mesh.albedo) if mesh.albedo is not None else None
        self._materials = {m: self._material(m) for m in (*DISPLAY_MODES, "mask")}
        self.interactive = False
        self.on_change: Optional[Callable[[], None]] = None  # called after every change to the scene (the GUI's cache)
        self._sh_cache: dict = {}
        self._soft = None  # softview.SoftwareView, made on first use
        self._verts: Optional[np.ndarray] = None
        self._lmk = np.zeros((0, 3), np.float32)
        self.scene.scene.set_sun_light([0, 0, -1], [1, 1, 1], SUN_LUX)  # replaced in apply_lighting
        self.scene.view.set_shadowing(False)  # shadow maps cost more than the head on llvmpipe

    # ------------------------------------------------------------------ materials
    def _material(self, mode: str):
        R = self._o3d.visualization.rendering
        m = R.MaterialRecord()
        maps = self.mesh.maps
        if mode == "normals":
            if maps is None:
                m.shader = "normals"
            else:  # the texture follows the pose: made in _refresh (:meth:`_world_normals_material`)
                m.shader, m.base_color = "defaultUnlit", [1.0, 1.0, 1.0, 1.0]
            return m
        if mode in MAP_MODES:
            m.shader, m.base_color = "defaultUnlit", [1.0, 1.0, 1.0, 1.0]
            m.albedo_img = self._o3d.geometry.Image(self._map_display(mode))
            return m
        m.shader = "defaultLit" if mode == "shaded" else "defaultUnlit"
        if mode == "mask":
            m.base_color = [1.0, 1.0, 1.0, 1.0]
            return m
        if self._albedo_img is not None:
            m.base_color = [1.0, 1.0, 1.0, 1.0]
            m.albedo_img = self._albedo_img
        else:
            m.base_color = [*SKIN_COLOR, 1.0]
        m.base_roughness = SKIN_ROUGHNESS
        m.base_reflectance = SKIN_REFLECTANCE  # skin: ~2% specular at normal incidence
        if mode == "shaded" and maps is not None:
            # The estimated materials: Open3D multiplies each map by its scalar, so the scalars are 1. The
            # normal map follows the pose (:meth:`_lit_material`).
            m.base_roughness, m.base_reflectance = 1.0, 1.0
            m.roughness_img, m.reflectance_img = self._map_images
        return m

    @functools.cached_property
    def _map_images(self) -> tuple:
        """Open3D images of the roughness and reflectance maps (made once, shared by the lit materials)."""
        img, maps = self._o3d.geometry.Image, self.mesh.maps
        return img(maps.roughness_image()), img(maps.reflectance_image())

    def _lit_material(self):
        """The shaded material with the maps, its normal map in this pose's Filament tangent frames
        (:meth:`.materials.WorldNormals.filament_image`)."""
        m = self._material("shaded")
        m.normal_img = self._o3d.geometry.Image(self._world_normals.filament_image(self._verts))
        return m

    def _map_display(self, mode: str) -> np.ndarray:
        """(H, W, 3) uint8 texture of a :data:`MAP_MODES` display: the map, or the constant skin material."""
        maps = self.mesh.maps
        if mode == "albedo":
            value = self.mesh.albedo / 255.0 if self.mesh.albedo is not None else np.full((4, 4, 3), SKIN_COLOR)
            return SurfaceMaps.display_image(value)
        if mode == "roughness":
            value = maps.roughness if maps is not None else np.full((4, 4), SKIN_ROUGHNESS)
        else:  # specular intensity: f0 / 0.08 (the constant material's f0 is Filament's 0.16 r^2)
            value = maps.specular if maps is not None else np.full((4, 4), 0.16 * SKIN_REFLECTANCE**2 / F0_PER_SPECULAR)
        return SurfaceMaps.display_image(value)

    @functools.cached_property
    def _world_normals(self) -> WorldNormals:
        return WorldNormals(self.mesh.model, self.mesh.maps)

    def _world_normals_material(self):
        """Unlit material showing the posed world normals with the normal map's detail (:class:`.materials.WorldNormals`)."""
        m = self._o3d.visualization.rendering.MaterialRecord()
        m.shader, m.base_color = "defaultUnlit", [1.0, 1.0, 1.0, 1.0]
        m.albedo_img = self._o3d.geometry.Image(self._world_normals.display_image(self._verts))
        return m

    def _white_mesh(self):
        """The head with white vertex colours: Open3D's unlit shader multiplies the texture by the vertex colour,
        0.5 grey for a mesh without colours (measured), so a map display needs them to show values as they are."""
        o3d = self._o3d
        tm = self.mesh.triangle_mesh(self._verts)
        tm.vertex.colors = o3d.core.Tensor(np.ones((len(self.mesh.render_to_model), 3), np.float32))
        return tm

    @property
    def _capture_env(self):
        """The capture's light (:class:`~avatar3d.render.lighting.EnvironmentMap`) when the head has PBR maps, else None."""
        return self.mesh.maps.environment if self.mesh.maps is not None else None

    @property
    def raw_display(self) -> bool:
        """Whether the frame shows values as they are (post-processing off): interactive frames and map displays."""
        return self.fast_active or self.mode in MAP_MODES or (self.mode == "normals" and self.mesh.maps is not None)

    # Interactive-frame state, made on first use: headless screenshots never draw interactive frames.
    @functools.cached_property
    def _fast(self) -> VertexLighting:
        maps = self.mesh.maps
        material = maps.vertex_values(self.mesh.render_uvs) if maps is not None else None
        return VertexLighting(self.mesh.albedo, self.mesh.render_uvs, SKIN_COLOR, vertex_material=material)

    @functools.cached_property
    def _fast_mat(self):
        return self._fast_material()

    def _fast_material(self):
        """Unlit material of interactive frames (vertex colours x the sRGB-as-linear albedo)."""
        m = self._o3d.visualization.rendering.MaterialRecord()
        m.shader, m.base_color = "defaultUnlit", [1.0, 1.0, 1.0, 1.0]
        if self._fast.texture is not None:
            m.albedo_img = self._o3d.geometry.Image(self._fast.texture)
        return m

    # ------------------------------------------------------------------ interactive frames
    @property
    def fast_active(self) -> bool:
        """Whether the next frame uses the interactive path (see :mod:`.fastshade`)."""
        return self.interactive and self.mode == "shaded" and not self.lighting.show_environment

    def set_interactive(self, on: bool, refresh: bool = True) -> None:
        """Interactive frames on (while a slider moves) or off (one full-quality frame).
        ``refresh=False``: the caller re-adds the geometry itself right after (:meth:`_refresh`)."""
        on = bool(on)
        if on == self.interactive:
            return
        self.interactive = on
        if refresh:
            self._refresh()
        self._apply_view_settings()

    def _apply_view_settings(self) -> None:
        fast = self.raw_display
        view = self.scene.view
        # The unlit vertex colours are already tone-mapped and sRGB-encoded: post-processing
        # (~25 % of a frame on llvmpipe) must be off, and SSAO is part of it.
        view.set_post_processing(not fast)
        view.set_ambient_occlusion(not fast)
        if self.mode != "mask" and not self.lighting.show_environment:
            self.scene.set_background([*self._background(fast), 1.0])
        self._changed()

    def _background(self, fast: bool) -> tuple:
        """Background colour to set so both paths show the same pixels: Open3D decodes the colour
        from sRGB; with post-processing on Filament tone-maps it, with it off it is shown as is."""
        bg = np.asarray(self.lighting.background, np.float64)
        if not fast:
            return tuple(bg)
        return tuple(srgb_encode(display_curve(srgb_decode(bg)[None])[0]))

    def _eye(self) -> np.ndarray:
        """(3,) camera position in the head frame."""
        return np.asarray(self.scene.camera.get_model_matrix(), np.float64)[:3, 3]

    def _fast_mesh(self):
        """The head for an interactive frame: camera-facing triangles, lit vertex colours."""
        o3d = self._o3d
        pos, nrm = self.mesh.render_arrays(self._verts)
        eye = self._eye()
        col = self._fast.colors(pos, nrm, eye, self.lighting, self._env_sh(), SUN_LUX, IBL_SCALE)
        tm = self.mesh.triangle_mesh(self._verts, arrays=(pos, nrm))
        tm.vertex.colors = o3d.core.Tensor(col)
        tm.triangle.indices = o3d.core.Tensor(self.mesh.render_faces[front_facing(pos, self.mesh.render_faces, eye, nrm)])
        return tm

    def _env_sh(self) -> Optional[np.ndarray]:
        """(9, 3) irradiance SH of the current environment (5 degree rotation steps), None when off."""
        L = self.lighting
        if L.env_intensity <= 0:
            return None
        key = (L.environment, round(L.env_rotation / 5.0) * 5.0)
        if key not in self._sh_cache:
            self._sh_cache[key] = irradiance_sh(*key, capture=self._capture_env)
        return self._sh_cache[key]

    @property
    def software_ok(self) -> bool:
        """Whether :meth:`software_frame` can draw the current state (shaded mode, flat background, no
        overlays); otherwise slider steps go through Filament (interactive frames where :meth:`fast_active`)."""
        return self.mode == "shaded" and not self.lighting.show_environment and not self.wireframe and not self.landmarks

    def software_frame(self, width: int, height: int) -> np.ndarray:
        """The interactive frame of the current state, drawn by our CPU rasterizer
        (:mod:`.softview`) through the scene's camera: (height, width, 3) uint8, reused by the
        next call."""
        from .softview import SoftwareView, open3d_clip_matrix

        if self._verts is None:
            raise RuntimeError("set the head parameters before drawing a frame")
        if self._soft is None:
            self._soft = SoftwareView(self.mesh, self._fast)
        # The background colour given to Filament is decoded from sRGB and, without post-processing,
        # shown as is: srgb_decode of it is what the screen shows.
        return self._soft.render(self._verts, open3d_clip_matrix(self.scene.camera), self._eye(), int(width), int(height), self.lighting,
                                 self._env_sh(), SUN_LUX, IBL_SCALE, tuple(srgb_decode(self._background(True))))

    # ------------------------------------------------------------------ geometry
    def set_params(self, params: HeadParams) -> None:
        """Pose the head and replace the geometry's buffers (material objects are reused)."""
        verts, lmk, _ = self.mesh.pose(params)
        self.set_vertices(verts, lmk)

    def set_vertices(self, verts: np.ndarray, lmk: Optional[np.ndarray] = None, update_scene: bool = True) -> None:
        """New vertices (V, 3); ``update_scene=False`` only records them (for :meth:`software_frame`;
        the Filament geometry follows at the next :meth:`_refresh`)."""
        self._verts = verts
        if lmk is not None:
            self._lmk = lmk
        if update_scene:
            self._refresh()

    @property
    def vertices(self) -> Optional[np.ndarray]:
        return self._verts

    def _refresh(self) -> None:
        if self._verts is None:
            return
        s = self.scene
        # Open3D 0.20 can update vertex buffers in place only for point clouds (update_geometry on a
        # triangle mesh crashes), so the mesh is re-added; with a cached MaterialRecord this costs
        # a few ms (see benchmarks/bench_viewer.py).
        if s.has_geometry(self.HEAD):
            s.remove_geometry(self.HEAD)
        if self.fast_active:
            s.add_geometry(self.HEAD, self._fast_mesh(), self._fast_mat)
        elif self.mode == "normals" and self.mesh.maps is not None:
            s.add_geometry(self.HEAD, self._white_mesh(), self._world_normals_material())
        elif self.mode in MAP_MODES:
            s.add_geometry(self.HEAD, self._white_mesh(), self._materials[self.mode])
        elif self.mode == "shaded" and self.mesh.maps is not None:
            s.add_geometry(self.HEAD, self.mesh.triangle_mesh(self._verts), self._lit_material())
        else:
            s.add_geometry(self.HEAD, self.mesh.triangle_mesh(self._verts), self._materials[self.mode])
        for name in (self.WIRE, self.LMK):
            if s.has_geometry(name):
                s.remove_geometry(name)
        if self.wireframe and self.mode != "mask":
            R = self._o3d.visualization.rendering
            m = R.MaterialRecord()
            m.shader, m.line_width, m.base_color = "unlitLine", 1.0, [0.55, 0.62, 0.75, 1.0]
            # Nudge lines off the surface along the normals so they win the depth test.
            nrm = self._normals_model()
            s.add_geometry(self.WIRE, self.mesh.line_set(self._verts + 4e-4 * nrm), m)
        if self.landmarks and len(self._lmk) and self.mode != "mask":
            R = self._o3d.visualization.rendering
            m = R.MaterialRecord()
            m.shader, m.point_size, m.base_color = "defaultUnlit", 4.0, [0.1, 1.0, 0.3, 1.0]
            pc = self._o3d.t.geometry.PointCloud(self._o3d.core.Tensor(np.ascontiguousarray(self._lmk, np.float32)))
            s.add_geometry(self.LMK, pc, m)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _normals_model(self) -> np.ndarray:
        from ..geometry import vertex_normals_np

        return vertex_normals_np(np.asarray(self._verts, np.float32), self.mesh.faces)

    # ------------------------------------------------------------------ display
    def set_display(self, mode: Optional[str] = None, wireframe: Optional[bool] = None, landmarks: Optional[bool] = None) -> None:
        """Display mode (``DISPLAY_MODES`` or "mask": white on black) and overlay toggles."""
        if mode is not None:
            if mode not in (*DISPLAY_MODES, "mask"):
                raise ValueError(f"unknown display mode {mode!r}; expected one of: {', '.join(DISPLAY_MODES)}")
            self.mode = mode
        if wireframe is not None:
            self.wireframe = bool(wireframe)
        if landmarks is not None:
            self.landmarks = bool(landmarks)
        self._refresh()
        self.apply_lighting()

    # ------------------------------------------------------------------ lights
    def set_lighting(self, lighting: Lighting) -> None:
        if lighting.environment not in environment_names(self._capture_env):
            bake_environment(lighting.environment, capture=self._capture_env)  # raises the one-sentence error
        self.lighting = lighting
        self.apply_lighting()
        if self.fast_active:  # vertex colours carry the lighting
            self._refresh()

    def apply_lighting(self) -> None:
        L, sc = self.lighting, self.scene.scene
        sc.set_sun_light(L.direction(), list(map(float, L.color)), float(SUN_LUX * max(L.intensity, 0.0)))
        sc.enable_sun_light(L.intensity > 0)
        # Rotation is baked into the cubemap (Open3D's Python API cannot rotate an IBL); 5 degree steps
        # keep the cache small.
        prefix = bake_environment(L.environment, round(L.env_rotation / 5.0) * 5.0, capture=self._capture_env)
        if prefix != self._ibl_prefix:
            if not sc.set_indirect_light(prefix):
                raise RuntimeError(f"Open3D could not load the generated environment light {prefix}_ibl.ktx")
            self._ibl_prefix = prefix
        sc.enable_indirect_light(L.env_intensity > 0)
        sc.set_indirect_light_intensity(float(IBL_SCALE * max(L.env_intensity, 0.0)))
        if self.mode == "mask":
            self.scene.show_skybox(False)
            self.scene.set_background([0.0, 0.0, 0.0, 1.0])
        elif L.show_environment:
            self.scene.show_skybox(True)
        else:
            self.scene.show_skybox(False)
        self._apply_view_settings()
