"""Ground truth we do not render ourselves: the built-in head path traced in Mitsuba 3 under a known environment.

Scoring the reflectance capture (issue #13) with images from our own forward renderer would hide its
approximations, so the synthetic capture is rendered by an independent path tracer (Mitsuba 3,
``scalar_rgb``, the variant that runs on these CPUs):

* **geometry**: the head model posed per frame (:func:`capture_parameters`: a phone-like clip, the
  head turning +-35 degrees yaw and +-15 degrees pitch with the expressions of
  :data:`avatar3d.synthetic.video.ANIMATED`), each vertex moved along its normal by the displacement
  map at its UV, low-passed to the mesh's ~1 mm edges (the folds' large scale);
* **detail**: the displacement's tangent-space normal map (:mod:`avatar3d.synthetic.pbr_maps`) through
  Mitsuba's ``normalmap`` BSDF, over the *undisplaced* vertex normals (so the wrinkles' slope is not
  counted twice). Pores (~0.1 mm) are far below the mesh's ~1 mm edges: only a normal map can carry
  them, and the truth thereby has detail the base mesh lacks, which is what the scoring needs;
* **material**: ``principled`` (Disney) with base colour = the albedo map and roughness = the roughness
  map. Its ``specular`` is one number per BSDF, so the F0 map is a ``blendbsdf`` of two principled
  BSDFs at F0 :data:`F0_RANGE` weighted per texel: exact at normal incidence (the diffuse lobes are
  equal), within ~1 % of a single Fresnel curve at grazing angles;
* **light**: a generated equirectangular map (:class:`avatar3d.render.lighting.EnvironmentMap`,
  ``studio``/``sunset``/``overcast``, rotatable), written to ``environment.hdr`` and given to Mitsuba's
  ``envmap`` emitter exactly as read back from that file (Mitsuba's longitude runs the other way:
  the image is mirrored left-right, checked in the tests);
* **camera**: the library's OpenCV ``K`` (pixel centres at integers, square pixels) and
  ``world_to_cam`` as a ``perspective`` sensor (horizontal fov and principal-point offsets, box pixel
  filter); the silhouette lines up with :meth:`avatar3d.render.camera.Camera.project` (tested).

Emitters are hidden in the path trace, so its alpha is the head's coverage; the background is the
environment seen along each pixel's ray, composited in linear RGB. :func:`render_capture` writes
everything under ``cache_dir()/mitsuba/<hash of every parameter>`` (atomically), so a second call is
instant: ``linear.npz`` (float16 linear RGB and alpha), ``frames/*.png`` (sRGB 8-bit), ``capture.mp4``
(:func:`avatar3d.synthetic.video.encode_mp4`, for ``avatar3d track``), ``params.npz`` (the truth per
frame), ``maps/`` (:class:`~avatar3d.synthetic.pbr_maps.MaterialMaps`), ``environment.hdr``, ``spec.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._tensor import f32
from ..models.base import HeadModel
from ..render.lighting import EnvironmentMap
from .pbr_maps import MAPS_VERSION, MaterialMaps, make_maps
from .video import ANIMATED, encode_mp4

__all__ = ["CaptureSpec", "MitsubaCapture", "MitsubaHead", "render_capture", "capture_parameters", "small_spec", "benchmark_spec",
           "held_out_specs", "HELD_OUT", "background", "mitsuba_sensor", "mitsuba_material", "mitsuba_environment", "F0_RANGE",
           "CAPTURE_VERSION", "code_versions"]

#: Bump when the rendering changes (part of the cache key, with :data:`pbr_maps.MAPS_VERSION` and Mitsuba's version).
CAPTURE_VERSION = 2
#: F0 of the two principled BSDFs blended per texel (covers the maps' range).
F0_RANGE = (0.005, 0.08)


@dataclass(frozen=True)
class CaptureSpec:
    """Every parameter of a Mitsuba capture (its hash names the cache folder).

    Sizes in pixels, angles in degrees, distance in metres; ``focal`` None: a phone's 26 mm lens
    (:func:`~avatar3d.render.camera_builders.phone_focal`); ``spp`` samples per pixel; ``map_resolution``
    texels of the material maps; ``sampler`` Mitsuba's sample generator (``multijitter``: measured ~6 dB
    less noise than ``independent`` at the same cost); ``environment`` one of ``studio``, ``sunset``, ``overcast`` rotated
    ``environment_rotation`` degrees about +Y; ``max_depth`` path length of the path tracer.
    """

    num_frames: int = 24
    width: int = 192
    height: int = 192
    spp: int = 16
    sampler: str = "multijitter"
    environment: str = "studio"
    environment_rotation: float = 0.0
    environment_width: int = 512
    map_resolution: int = 512
    maps_seed: int = 0
    seed: int = 0
    model: str = "builtin"
    distance: float = 0.35
    focal: Optional[float] = None
    yaw_deg: float = 35.0
    pitch_deg: float = 15.0
    expressions: tuple[str, ...] = field(default=ANIMATED)
    max_depth: int = 4
    fps: float = 30.0

    def key(self) -> str:
        """Hex digest of every parameter and the code/renderer versions."""
        import mitsuba

        blob = json.dumps(dict(asdict(self), **code_versions(self.model), mitsuba=mitsuba.__version__), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


def code_versions(model: str) -> dict[str, object]:
    """The versions of our code that a capture of ``model`` depends on (part of every cache key): the renderer
    (:data:`CAPTURE_VERSION`), the maps (:data:`pbr_maps.MAPS_VERSION`) and the generated head's geometry."""
    from ..models.builtin import version_key

    return dict(capture=CAPTURE_VERSION, maps=MAPS_VERSION, head=version_key() if model == "builtin" else model)


def small_spec(**kw) -> CaptureSpec:
    """The tests' capture: 24 frames at 192x192, 16 spp, 512^2 maps (override any field with ``kw``).

    About 15-35 s to render on two busy cores, then cached. Its Monte Carlo noise on face pixels
    (measured, one frame, two seeds): PSNR of a frame against the noise-free image ~27 dB linear under
    ``studio``, ~30 dB under ``overcast``; scores against it should average over frames or pixels.
    """
    return replace(CaptureSpec(), **kw)


def benchmark_spec(environment: str = "studio", **kw) -> CaptureSpec:
    """The benchmark's capture: 90 frames at 512x512 (a 3 s phone clip), 64 spp, 1024^2 maps (not run in tests).

    Roughly 30-50 s a frame on two cores (an hour for the clip, once: it is cached); noise ~6 dB below
    the small set's (4x the samples per pixel).
    """
    return replace(CaptureSpec(num_frames=90, width=512, height=512, spp=64, map_resolution=1024, environment_width=1024,
                               environment=environment), **kw)


#: Held-out lighting for relighting scores: the generated maps (one turned), the capture's own one left out.
HELD_OUT = (("studio", 120.0), ("sunset", 0.0), ("overcast", 0.0), ("sunset", 200.0))


def held_out_specs(spec: CaptureSpec, count: int = 3) -> list[CaptureSpec]:
    """The same frames (parameters, camera, maps, samples) under ``count`` environments other than ``spec``'s."""
    own = (spec.environment, spec.environment_rotation)
    return [replace(spec, environment=e, environment_rotation=r) for e, r in HELD_OUT if (e, r) != own][:count]


def capture_parameters(model: HeadModel, spec: CaptureSpec) -> dict:
    """The truth per frame: a random identity, the head turning and nodding, expressions rising and falling.

    Returns:
        dict with ``shape`` (S,), ``expression`` (N, E), ``pose`` (N, J, 3) axis-angle (joint 0: yaw
        ``spec.yaw_deg`` sin(2 pi t), pitch ``spec.pitch_deg`` sin(4 pi t)), ``transl`` (N, 3) metres,
        ``K`` (3, 3) (pixel centres at integers), ``world_to_cam`` (4, 4), ``animated`` (expression indices).
    """
    from ..render.camera_builders import centred_K, front_camera, phone_focal

    g = np.random.default_rng(spec.seed)
    n = spec.num_frames
    t = np.linspace(0, 1, n)
    shape = g.standard_normal(model.num_shape) * 0.5
    expr = np.zeros((n, model.num_expression))
    animated = [model.expression_names.index(e) for e in spec.expressions if e in model.expression_names]
    for k, e in enumerate(animated):
        c = (k + 0.5) / len(animated)  # staggered bumps, as in synthetic.video
        expr[:, e] = 0.8 * np.exp(-0.5 * ((t - c) / 0.12) ** 2)
    pose = np.zeros((n, model.num_joints, 3))
    pose[:, 0, 1] = np.deg2rad(spec.yaw_deg) * np.sin(2 * np.pi * t)
    pose[:, 0, 0] = np.deg2rad(spec.pitch_deg) * np.sin(4 * np.pi * t)
    transl = np.zeros((n, 3))
    focal = phone_focal(spec.width, spec.height) if spec.focal is None else float(spec.focal)
    return dict(shape=shape, expression=expr, pose=pose, transl=transl, K=centred_K(focal, spec.width, spec.height),
                world_to_cam=front_camera(spec.distance), animated=np.asarray(animated))


# ----------------------------------------------------------------------------- Mitsuba scene pieces
def mitsuba_sensor(K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int, spp: int, sampler: str = "multijitter") -> dict:
    """Mitsuba ``perspective`` sensor dict for the library camera (OpenCV ``K`` with pixel centres at integers).

    Mitsuba's camera looks along +z with +y up and image x to the left of +x, i.e. OpenCV axes turned
    180 degrees about z; its film spans pixel edges 0..W, so the raster principal point is ``cx + 0.5``,
    given as an offset of the film centre in units of the film size.
    """
    import mitsuba as mi

    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if abs(fx - fy) > 1e-6 * fx or abs(K[0, 1]) > 1e-9:
        raise ValueError(f"Mitsuba's perspective sensor needs square pixels and no skew, got K={K.tolist()}")
    c2w = np.linalg.inv(world_to_cam) @ np.diag([-1.0, -1.0, 1.0, 1.0])
    return {
        "type": "perspective", "fov_axis": "x", "fov": float(np.rad2deg(2 * np.arctan(width / (2 * fx)))),
        # Measured (tests/test_synthetic_mitsuba.py): Mitsuba's offsets move the image the other way to the
        # principal point, in units of the film's width and height.
        "principal_point_offset_x": float(-(cx + 0.5 - width / 2) / width),
        "principal_point_offset_y": float(-(cy + 0.5 - height / 2) / height),
        "near_clip": 0.01, "far_clip": 100.0, "to_world": mi.ScalarTransform4f(c2w.tolist()),
        "film": {"type": "hdrfilm", "width": width, "height": height, "pixel_format": "rgba", "rfilter": {"type": "box"}},
        "sampler": {"type": sampler, "sample_count": spp},
    }


def mitsuba_environment(env: EnvironmentMap) -> dict:
    """Mitsuba ``envmap`` emitter dict showing ``env`` in the library's directions (head frame, see
    :func:`~avatar3d.render.lighting.equirect_directions`): Mitsuba's longitude grows towards -X, so mirror the image."""
    import mitsuba as mi

    return {"type": "envmap", "bitmap": mi.Bitmap(np.ascontiguousarray(env.pixels[:, ::-1], np.float32))}


def _bitmap(a: np.ndarray, **kw) -> dict:
    import mitsuba as mi

    a = np.ascontiguousarray(a if a.ndim == 3 else a[..., None], np.float32)
    return {"type": "bitmap", "bitmap": mi.Bitmap(a), "raw": True, **kw}


def mitsuba_material(maps: MaterialMaps) -> dict:
    """``normalmap`` over a per-texel F0 blend of two ``principled`` BSDFs (see the module docstring)."""
    lo, hi = F0_RANGE
    weight = np.clip((maps.specular - lo) / (hi - lo), 0, 1)

    def principled(f0: float) -> dict:
        return {"type": "principled", "base_color": _bitmap(maps.albedo), "roughness": _bitmap(maps.roughness),
                "specular": f0 / 0.08}  # Mitsuba: F0 = 0.08 specular

    blend = {"type": "blendbsdf", "weight": _bitmap(weight), "a": principled(lo), "b": principled(hi)}
    return {"type": "normalmap", "normalmap": _bitmap(maps.normal * 0.5 + 0.5), "bsdf": blend}


class MitsubaHead:
    """One Mitsuba scene of a head model's mesh with material maps under an environment; :meth:`render` poses it.

    The mesh is split at UV seams (one Mitsuba vertex per UV vertex), so texcoords are per vertex.
    """

    def __init__(self, model: HeadModel, maps: MaterialMaps, env: EnvironmentMap, sensor: dict, max_depth: int = 6):
        import mitsuba as mi

        self.model, self.maps = model, maps
        faces, uv_faces = model.faces.numpy(), model.uv_faces.numpy()
        self.vertex_of_uv = np.zeros(len(model.uvs), np.int64)
        self.vertex_of_uv[uv_faces.reshape(-1)] = faces.reshape(-1)
        uv = model.uvs.numpy().astype(np.float64)
        self.vertex_disp = self._vertex_displacement(maps.displacement, uv, model.num_vertices)  # (T,) metres
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(mitsuba_material(maps))
        mesh = mi.Mesh("head", len(uv), len(uv_faces), props=props, has_vertex_normals=True, has_vertex_texcoords=True)
        p = mi.traverse(mesh)
        p["faces"] = uv_faces.astype(np.uint32).reshape(-1).tolist()
        # Mitsuba's bitmap puts texcoord v = 0 on the image's top row; the model's UVs have v = 0 at the bottom.
        p["vertex_texcoords"] = np.stack([uv[:, 0], 1 - uv[:, 1]], -1).reshape(-1).tolist()
        self._set_vertices(p, model.v_template.numpy()[self.vertex_of_uv], np.tile([0.0, 0.0, 1.0], (len(uv), 1)))
        self.scene = mi.load_dict({"type": "scene", "integrator": {"type": "path", "max_depth": max_depth, "hide_emitters": True},
                                   "sensor": sensor, "emitter": mitsuba_environment(env), "head": mesh})
        self.params = mi.traverse(self.scene)

    def _vertex_displacement(self, disp: np.ndarray, uv: np.ndarray, num_vertices: int) -> np.ndarray:
        """(T,) metres per UV vertex: the map low-passed to the mesh's scale (its ~1 mm edges carry the folds; the
        pores are the normal map's), averaged over each mesh vertex's UV copies so seams do not crack."""
        import cv2

        sigma = 1.5 * disp.shape[0] / 512  # ~1 mm in texels
        d = self._sample(cv2.GaussianBlur(disp.astype(np.float64), (0, 0), sigma), uv)
        per_vertex = np.bincount(self.vertex_of_uv, d, num_vertices) / np.maximum(np.bincount(self.vertex_of_uv, None, num_vertices), 1)
        return per_vertex[self.vertex_of_uv]

    @staticmethod
    def _sample(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """Bilinear lookup of (H, W) ``img`` at (T, 2) UVs (origin bottom-left)."""
        H, W = img.shape
        x, y = uv[:, 0] * W - 0.5, (1 - uv[:, 1]) * H - 0.5
        x0, y0 = np.clip(np.floor(x).astype(int), 0, W - 2), np.clip(np.floor(y).astype(int), 0, H - 2)
        fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
        return ((img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx) * (1 - fy) + (img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx) * fy)

    @staticmethod
    def _set_vertices(p, positions: np.ndarray, normals: np.ndarray) -> None:
        p["vertex_positions"] = np.asarray(positions, np.float64).reshape(-1).tolist()
        p["vertex_normals"] = np.asarray(normals, np.float64).reshape(-1).tolist()
        p.update()

    def render(self, vertices: np.ndarray, seed: int = 0) -> np.ndarray:
        """(H, W, 4) linear RGBA (premultiplied, alpha = coverage) of the head posed at ``vertices`` (V, 3) metres."""
        import mitsuba as mi

        from ..geometry import vertex_normals_np

        n = vertex_normals_np(np.asarray(vertices, np.float64), self.model.faces.numpy())[self.vertex_of_uv]
        pos = np.asarray(vertices, np.float64)[self.vertex_of_uv] + self.vertex_disp[:, None] * n
        self.params["head.vertex_positions"] = pos.reshape(-1).tolist()
        self.params["head.vertex_normals"] = n.reshape(-1).tolist()
        self.params.update()
        return np.array(mi.render(self.scene, seed=seed), np.float32)


# ----------------------------------------------------------------------------- the cached capture
def background(env: EnvironmentMap, K: np.ndarray, world_to_cam: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) linear radiance of ``env`` along each pixel centre's ray (the library camera)."""
    j, i = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    d = np.stack([j, i, np.ones_like(j)], -1) @ np.linalg.inv(K).T @ world_to_cam[:3, :3]  # camera ray -> world: R^T d
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return env.sample(d.reshape(-1, 3)).reshape(height, width, 3).astype(np.float32)


@dataclass
class MitsubaCapture:
    """A rendered capture on disk (``path``, see the module docstring for its files) and its :class:`CaptureSpec`."""

    path: Path
    spec: CaptureSpec

    @property
    def video(self) -> Path:
        """The H.264 clip for ``avatar3d track``."""
        return self.path / "capture.mp4"

    def linear(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W, 3) float32 linear RGB (head over the environment) and (N, H, W) alpha (head coverage)."""
        z = np.load(self.path / "linear.npz")
        return z["rgb"].astype(np.float32), z["alpha"].astype(np.float32)

    def frames(self) -> np.ndarray:
        """(N, H, W, 3) uint8 sRGB frames (the PNGs)."""
        import cv2

        return np.stack([cv2.imread(str(p))[..., ::-1] for p in sorted((self.path / "frames").glob("*.png"))])

    def parameters(self) -> dict:
        """The truth per frame (:func:`capture_parameters` plus ``vertices`` (N, V, 3) posed, undisplaced)."""
        return dict(np.load(self.path / "params.npz"))

    def maps(self) -> MaterialMaps:
        return MaterialMaps.load(self.path / "maps")

    def environment(self) -> EnvironmentMap:
        return EnvironmentMap.read(self.path / "environment.hdr")


def render_capture(spec: CaptureSpec = CaptureSpec(), cache_root: Optional[Path] = None, video: bool = True,
                   progress: bool = False) -> MitsubaCapture:
    """Path trace ``spec`` (or find it in ``cache_root``, default ``cache_dir("mitsuba")``) and return the capture.

    The folder is written under a temporary name and renamed when complete, so an interrupted render
    leaves no half capture behind.
    """
    import cv2
    import mitsuba as mi

    from ..models import load_head_model
    from ..paths import cache_dir
    from ..render.color import srgb_encode

    root = Path(cache_root) if cache_root is not None else cache_dir("mitsuba")
    final = root / spec.key()
    if (final / "spec.json").exists():
        cap = MitsubaCapture(final, spec)
        if video and not cap.video.exists():  # cached without its clip
            part = final / f".capture-{os.getpid()}.mp4"
            encode_mp4(cap.frames(), part, spec.fps)
            os.replace(part, cap.video)
        return cap
    if spec.width % 2 or spec.height % 2:
        raise ValueError(f"the capture's mp4 needs even frame sizes, got {spec.width}x{spec.height}")
    mi.set_variant("scalar_rgb")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=root))
    try:
        model = load_head_model(spec.model)
        maps = make_maps(model, spec.map_resolution, spec.maps_seed)
        maps.save(tmp / "maps")
        EnvironmentMap.generated(spec.environment, spec.environment_width, spec.environment_rotation).write(tmp / "environment.hdr")
        env = EnvironmentMap.read(tmp / "environment.hdr")  # what the file holds (RGBE), so the truth is reproducible from it
        P = capture_parameters(model, spec)
        with torch.no_grad():
            n = spec.num_frames
            verts = model(f32(P["shape"])[None].expand(n, -1), f32(P["expression"]), f32(P["pose"]), f32(P["transl"])).vertices.numpy()
        head = MitsubaHead(model, maps, env, mitsuba_sensor(P["K"], P["world_to_cam"], spec.width, spec.height, spec.spp, spec.sampler), spec.max_depth)
        bg = background(env, P["K"], P["world_to_cam"], spec.width, spec.height)
        rgb = np.zeros((n, spec.height, spec.width, 3), np.float16)
        alpha = np.zeros((n, spec.height, spec.width), np.float16)
        (tmp / "frames").mkdir()
        for i in range(n):
            im = head.render(verts[i], seed=i)
            a = np.clip(im[..., 3], 0, 1)
            rgb[i] = im[..., :3] + bg * (1 - a[..., None])  # Mitsuba's RGB is premultiplied by coverage
            alpha[i] = a
            u8 = np.round(np.clip(srgb_encode(np.clip(rgb[i].astype(np.float64), 0, 1)), 0, 1) * 255).astype(np.uint8)
            cv2.imwrite(str(tmp / "frames" / f"{i:06d}.png"), u8[..., ::-1])
            if progress:
                print(f"mitsuba frame {i + 1}/{n}", flush=True)
        np.savez(tmp / "linear.npz", rgb=rgb, alpha=alpha)
        np.savez(tmp / "params.npz", vertices=verts.astype(np.float32), **P)
        if video:
            encode_mp4(MitsubaCapture(tmp, spec).frames(), tmp / "capture.mp4", spec.fps)
        (tmp / "spec.json").write_text(json.dumps(dict(asdict(spec), key=spec.key()), indent=1))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same capture first
            if not (final / "spec.json").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return MitsubaCapture(final, spec)
