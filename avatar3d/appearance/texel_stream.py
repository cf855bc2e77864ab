"""One frame at a time: what every visible texel of a UV map sees in a tracked video (no per-observation storage).

:class:`TexelStream` poses the head model for a batch of frames and yields, frame by frame, the texels
seen in that frame with their colour, posed (world) surface frame, view direction and view weight. The
caller reduces each frame to per-texel sums before the next one is read, so memory does not grow with
the number of frames (the full-resolution detail pass, :mod:`.detail`, runs 300 frames into 2048^2 maps).

Visibility of a texel in a frame (as :class:`~avatar3d.appearance.fusion.TexelObservations`): facing the
camera (cosine between normal and view ray above ``min_cos``), its depth within ``depth_tolerance`` of the
rasterized posed mesh at its pixel, inside the eroded person mask. View weight ``cos^2``.

Shapes: M texels of the map (:class:`~avatar3d.appearance.uvmap.UVTexels`), K texels seen in one frame,
B frames posed at once. Positions in metres, world (head-model) frame; directions unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..geometry import vertex_normals
from ..models.base import HeadModel
from ..render.camera import raster_intrinsics, world_to_clip
from ..render.color import srgb_decode
from ..render.mesh import interpolate, rasterize
from .uvmap import UVTexels

__all__ = ["StreamOptions", "FrameTexels", "TexelStream", "valid_mask", "valid_frames", "spread", "bilinear", "optional_map"]


@dataclass(frozen=True)
class StreamOptions:
    """``min_cos`` smallest cosine between normal and view ray that counts; ``depth_tolerance`` metres a texel may
    lie behind the visible surface; ``mask_erode`` pixels the person mask shrinks by; ``batch`` frames posed at once."""

    min_cos: float = 0.2
    depth_tolerance: float = 1.5e-3
    mask_erode: int = 1
    batch: int = 8


class FrameTexels:
    """What one frame shows of the map: ``frame`` its index, ``texel`` (K,) ids into the M texels, ``colour`` (K, 3)
    linear RGB, ``normal``/``tangent``/``bitangent`` (K, 3) the posed surface frame (tangent along +u, bitangent
    = normal x tangent), ``view`` (K, 3) unit direction from the surface to the camera, ``weight`` (K,) ``cos^2``."""

    __slots__ = ("frame", "texel", "colour", "normal", "tangent", "bitangent", "view", "weight")

    def __init__(self, frame: int, texel: Tensor, colour: Tensor, normal: Tensor, tangent: Tensor, bitangent: Tensor,
                 view: Tensor, weight: Tensor):
        self.frame, self.texel, self.colour, self.weight = frame, texel, colour, weight
        self.normal, self.tangent, self.bitangent, self.view = normal, tangent, bitangent, view


def valid_mask(frames: TrackedFrames) -> np.ndarray:
    """(N,) bool: the tracked frames marked valid (a face was detected); all of them when the sequence says nothing."""
    valid = frames.sequence.valid
    return np.ones(len(frames), bool) if valid is None else np.asarray(valid, bool)


def spread(index: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` entries of ``index``, spread evenly over it (first and last kept)."""
    index = np.asarray(index)
    if len(index) <= count:
        return index
    return index[np.unique(np.round(np.linspace(0, len(index) - 1, count)).astype(int))]


def valid_frames(frames: TrackedFrames) -> np.ndarray:
    """(n,) indices of the tracked frames marked valid. Raises BadInputError when there is none."""
    idx = np.nonzero(valid_mask(frames))[0]
    if len(idx) == 0:
        raise BadInputError(f"{frames.directory} has no valid tracked frame to fuse")
    return idx


class TexelStream:
    """Iterates over the valid frames of ``frames`` (or the frames ``index``), yielding a :class:`FrameTexels` per frame
    (see the module docstring).

    State: the map's texels as a sparse (M, V) interpolation matrix, each texel's triangle, the triangles' UV-Jacobian
    inverse (for tangents); nothing per frame is kept. Images and masks of the next batch are read by a background
    thread while the current one is processed (decoding PNGs is a third of the work at 512 px).
    """

    def __init__(self, frames: TrackedFrames, model: HeadModel, texels: UVTexels, options: StreamOptions = StreamOptions(),
                 index: Optional[np.ndarray] = None):
        self.frames, self.model, self.texels, self.opts = frames, model, texels, options
        self.faces = model.faces.to(torch.int32).contiguous()
        self.index = valid_frames(frames) if index is None else np.asarray(index)  #: frames read, in order
        self.triangle = texel_triangles(model, texels)  #: (M,) the model triangle of every texel
        self.interp = _interpolation_matrix(texels, model.num_vertices)
        uv = model.uvs.float()[model.uv_faces.long()]  # (F,3,2)
        D = torch.stack([uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]], -1)  # (F,2,2): columns are the UV edges
        det = D[:, 0, 0] * D[:, 1, 1] - D[:, 0, 1] * D[:, 1, 0]
        ok = det.abs() > 1e-12
        safe = torch.where(ok, det, torch.ones_like(det))
        #: (F, 2) first column of D^-1: dp/du = e1 a + e2 b for the triangle's edges e1, e2
        self.du = torch.stack([D[:, 1, 1] / safe, -D[:, 1, 0] / safe], -1) * ok[:, None]
        self.decode = torch.as_tensor(srgb_decode(np.arange(256) / 255.0), dtype=torch.float32)  # 8-bit sRGB -> linear

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self) -> Iterator[FrameTexels]:
        from concurrent.futures import ThreadPoolExecutor

        B = self.opts.batch
        batches = [self.index[s:s + B] for s in range(0, len(self.index), B)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._read, batches[0])
            for k, idx in enumerate(batches):
                pictures = pending.result()
                if k + 1 < len(batches):
                    pending = pool.submit(self._read, batches[k + 1])
                verts = self._pose(idx)
                normals = vertex_normals(verts, self.model.faces.long())
                V = verts.shape[1]
                at = (self.interp @ torch.cat([verts, normals], -1).permute(1, 0, 2).reshape(V, -1)).view(-1, len(idx), 6)
                for b, i in enumerate(idx):
                    yield self._frame(int(i), verts[b], at[:, b], *pictures[b])

    def _read(self, idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for i in idx:
            image, mask = self.frames.image(int(i)), self.frames.mask(int(i))
            if image is None or mask is None:
                raise BadInputError(f"{self.frames.directory}: frame {i} ({self.frames.name(int(i))}) lacks its image or mask")
            out.append((image, self._foreground(mask)))
        return out

    def _pose(self, idx: np.ndarray) -> Tensor:
        """(B, V, 3) posed vertices of frames ``idx``."""
        s = self.frames.sequence
        f = lambda a: torch.as_tensor(np.asarray(a)[idx], dtype=torch.float32)  # noqa: E731
        shape = torch.as_tensor(s.shape, dtype=torch.float32)[None].expand(len(idx), -1)
        with torch.no_grad():
            return self.model(shape, f(s.expression), f(s.pose), f(s.transl)).vertices.float()

    def _frame(self, i: int, verts: Tensor, at: Tensor, image: np.ndarray, fg: Tensor) -> FrameTexels:
        """``at`` (M, 6): every texel's posed position and (unnormalised) normal in this frame."""
        cam = self.frames.camera(i)
        K, w2c, W, H = cam.K.float(), cam.world_to_cam.float(), cam.width, cam.height
        R, t = w2c[:3, :3], w2c[:3, 3]
        depth, tri = self._depth(verts, K, w2c, W, H)
        # Only texels of triangles that cover some pixel can be seen: at 1024^2+ texels this skips most of the map.
        shown = torch.zeros(len(self.faces) + 1, dtype=torch.bool)
        shown[tri.reshape(-1)] = True
        cand = torch.nonzero(shown[1:][self.triangle])[:, 0]
        at = at[cand]
        P, Nw = at[:, :3], torch.nn.functional.normalize(at[:, 3:], dim=-1)
        Pc = P @ R.T + t
        cos = (Nw @ R.T * -torch.nn.functional.normalize(Pc, dim=-1)).sum(-1)
        x = K[0, 0] * Pc[:, 0] / Pc[:, 2] + K[0, 2]
        y = K[1, 1] * Pc[:, 1] / Pc[:, 2] + K[1, 2]
        xi, yi = x.round().long(), y.round().long()
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H) & (cos > self.opts.min_cos) & (Pc[:, 2] > 0)
        xi, yi = xi.clamp(0, W - 1), yi.clamp(0, H - 1)
        seen = inside & fg[yi, xi] & ((Pc[:, 2] - depth[yi, xi]).abs() < self.opts.depth_tolerance)
        sel = torch.nonzero(seen)[:, 0]
        img = self.decode[torch.from_numpy(image).long()]
        n, keep = Nw[sel], cand[sel]
        tangent = self._tangents(verts, keep, n)
        centre = -R.T @ t  # camera centre, world frame
        view = torch.nn.functional.normalize(centre - P[sel], dim=-1)
        return FrameTexels(i, keep, bilinear(img, x[sel], y[sel]), n, tangent, torch.linalg.cross(n, tangent), view, cos[sel] ** 2)

    def _tangents(self, verts: Tensor, keep: Tensor, n: Tensor) -> Tensor:
        """(K, 3) unit tangents: dp/du of the posed triangle (per triangle, then per texel) made orthogonal to the normal."""
        f = self.model.faces.long()
        v0 = verts[f[:, 0]]
        Ju = (verts[f[:, 1]] - v0) * self.du[:, :1] + (verts[f[:, 2]] - v0) * self.du[:, 1:]  # (F,3)
        Ju = Ju[self.triangle[keep]]
        return torch.nn.functional.normalize(Ju - n * (n * Ju).sum(-1, keepdim=True), dim=-1)

    def _depth(self, verts: Tensor, K: Tensor, w2c: Tensor, W: int, H: int) -> tuple[Tensor, Tensor]:
        """(H, W) camera-frame depth (metres) of the visible surface (+inf on background) and (H, W) triangle id + 1 (0: none)."""
        pos = world_to_clip(verts[None], raster_intrinsics(K)[None], w2c, W, H)
        rast, _ = rasterize(pos, self.faces, (H, W))
        zc = (verts @ w2c[:3, :3].T + w2c[:3, 3])[:, 2:3]
        d = interpolate(zc[None].contiguous(), rast, self.faces)[0][0, ..., 0]
        tri = rast[0, ..., 3].long()
        return torch.where(tri > 0, d, torch.full_like(d, float("inf"))), tri

    def _foreground(self, mask: np.ndarray) -> Tensor:
        """(H, W) bool person mask, eroded by ``mask_erode`` pixels."""
        import cv2

        m = (mask > 127).astype(np.uint8)
        e = self.opts.mask_erode
        if e > 0:
            m = cv2.erode(m, np.ones((2 * e + 1, 2 * e + 1), np.uint8), borderType=cv2.BORDER_REPLICATE)
        return torch.from_numpy(m > 0)


def _interpolation_matrix(texels: UVTexels, num_vertices: int) -> Tensor:
    """(M, V) sparse CSR: row m holds texel m's barycentrics at its triangle's vertices."""
    import warnings

    M = texels.count
    rows = torch.arange(M).repeat_interleave(3)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": only matmul is used
        warnings.simplefilter("ignore")
        coo = torch.sparse_coo_tensor(torch.stack([rows, texels.faces.reshape(-1)]), texels.bary.reshape(-1), (M, num_vertices))
        return coo.coalesce().to_sparse_csr()


def texel_triangles(model: HeadModel, texels: UVTexels) -> Tensor:
    """(M,) index of the model triangle each texel of ``texels`` lies in (the UV layout rasterized as UVTexels does)."""
    R = texels.resolution
    uv = model.uvs.float()
    pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.zeros_like(uv[:, 0]), torch.ones_like(uv[:, 0])], -1)
    rast, _ = rasterize(pos[None], model.uv_faces.to(torch.int32).contiguous(), (R, R))
    return rast[0, ..., 3].long().reshape(-1)[texels.index] - 1


def bilinear(img: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """(K, C) bilinear samples of (H, W, C) ``img`` at pixel positions x, y (K,) (centres at integers)."""
    H, W = img.shape[:2]
    grid = torch.stack([x / (W - 1) * 2 - 1, y / (H - 1) * 2 - 1], -1)[None, None]
    return torch.nn.functional.grid_sample(img.permute(2, 0, 1)[None], grid, align_corners=True, padding_mode="border")[0, :, 0].T


def optional_map(values: Optional[Tensor], texels: UVTexels) -> Optional[Tensor]:
    """(M,) texel values of an (R, R) map (or already (M,)); None stays None."""
    if values is None:
        return None
    v = torch.as_tensor(values, dtype=torch.float32)
    if v.dim() == 2 and v.shape == (texels.resolution, texels.resolution):
        return v.reshape(-1)[texels.index]
    if v.shape == (texels.count,):
        return v
    raise ValueError(f"expected an ({texels.resolution}, {texels.resolution}) map or ({texels.count},) texel values, got {tuple(v.shape)}")
