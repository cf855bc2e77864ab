"""Interactive frames drawn by our own CPU rasterizer, for the window's image widget.

Why: in the window, a frame of Open3D's ``SceneWidget`` reaches the screen one *window* frame
late (the GUI pass composites the 3D view's texture before Filament has re-rendered it, so a
change shows only when a second frame is drawn; measured with ``viewer/latency.py``), and each
window frame costs ~60-110 ms of llvmpipe CPU at 1280x820. While a slider moves, the viewer hides
the ``SceneWidget`` and shows this picture in a ``gui.ImageWidget`` instead: one window frame per
slider step, and no Filament 3D pass at all. Half a second after the last change the
``SceneWidget`` (full quality) comes back.

The picture is the same as :mod:`.fastshade`'s interactive frame (per-vertex lighting, Filament's
tone curve, x the sRGB albedo texture, no anti-aliasing), rasterized by
:mod:`avatar3d.render.mesh` (C++ extension) in the head's screen bounding box only, with the
texture sampled at covered pixels only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..render.mesh import interpolate, rasterize, texture
from .fastshade import VertexLighting, front_facing
from .mesh import HeadMesh

__all__ = ["SoftwareView", "open3d_clip_matrix"]


def open3d_clip_matrix(camera) -> np.ndarray:
    """(4, 4) world-to-clip matrix of an ``open3d.visualization.rendering.Camera`` (OpenGL clip
    space: x right, y up, z/w in [-1, 1])."""
    P = np.asarray(camera.get_projection_matrix(), np.float64)
    V = np.asarray(camera.get_view_matrix(), np.float64)
    return P @ V


class SoftwareView:
    """Renders a head into (H, W, 3) uint8 pictures that look like the interactive Filament frame.

    ``mesh`` gives the render layout (UV-seam split vertices); ``lighting_model`` the
    :class:`~.fastshade.VertexLighting` shared with the Filament path (same colours).
    """

    def __init__(self, mesh: HeadMesh, lighting_model: VertexLighting):
        self.mesh = mesh
        self.shade = lighting_model
        self.faces = mesh.render_faces.astype(np.int32)
        self._tex: Optional[torch.Tensor] = None
        if lighting_model.texture_srgb is not None and mesh.render_uvs is not None:
            # The sRGB albedo as the unlit shader sees it (fastshade uploads it re-encoded so that
            # Filament's sRGB decode returns these values), at the interactive frames' size.
            self._tex = torch.from_numpy(lighting_model.texture_srgb.astype(np.float32) / 255.0)[None].contiguous()
            uv = mesh.render_uvs
            self._uv = np.ascontiguousarray(np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1), np.float32)  # row 0 = top
        self._buf: Optional[np.ndarray] = None

    def render(self, verts: np.ndarray, clip: np.ndarray, eye: np.ndarray, width: int, height: int, lighting, sh: Optional[np.ndarray],
               sun_lux: float, ibl_scale: float, background: tuple) -> np.ndarray:
        """The head posed at ``verts`` (V, 3) seen through ``clip`` (4, 4, world to OpenGL clip) from
        ``eye`` (3,), ``width`` x ``height`` pixels on ``background`` (display sRGB in [0, 1]).
        Returns an (H, W, 3) uint8 array (row 0 = top) that is reused by the next call."""
        pos, nrm = self.mesh.render_arrays(verts)
        col = self.shade.colors(pos, nrm, eye, lighting, sh, sun_lux, ibl_scale)  # (R, 3) display / albedo
        keep = front_facing(pos, self.mesh.render_faces, eye, nrm)
        tri = self.faces[keep]
        bg = np.round(np.clip(np.asarray(background, np.float64), 0, 1) * 255).astype(np.uint8)
        if self._buf is None or self._buf.shape != (height, width, 3):
            self._buf = np.empty((height, width, 3), np.uint8)
        out = self._buf
        out[:] = bg
        hom = np.concatenate([pos, np.ones((len(pos), 1), np.float32)], 1) @ clip.T.astype(np.float32)
        w = hom[:, 3]
        front = w > 1e-6
        if not front.any() or len(tri) == 0:
            return out
        # Screen bounding box of the vertices in front of the camera (pixels, row 0 = top).
        px = (hom[front, 0] / w[front] + 1) * 0.5 * width
        py = (1 - hom[front, 1] / w[front]) * 0.5 * height
        x0, x1 = int(max(np.floor(px.min()) - 1, 0)), int(min(np.ceil(px.max()) + 1, width))
        y0, y1 = int(max(np.floor(py.min()) - 1, 0)), int(min(np.ceil(py.max()) + 1, height))
        if x1 - x0 < 1 or y1 - y0 < 1:
            return out
        wc, hc = x1 - x0, y1 - y0
        # Clip space of the crop: u = (x/w + 1) W / 2 - x0 maps to [0, wc]; the rasterizer's row 0 is
        # NDC y = -1, so y is negated to put the picture's top row first.
        cp = np.empty_like(hom)
        cp[:, 0] = hom[:, 0] * (width / wc) + w * (width / wc - 2.0 * x0 / wc - 1.0)
        ndc_down = -hom[:, 1]  # y pointing down
        cp[:, 1] = ndc_down * (height / hc) + w * (height / hc - 2.0 * y0 / hc - 1.0)
        cp[:, 2] = hom[:, 2]
        cp[:, 3] = w
        rast, _ = rasterize(torch.from_numpy(cp)[None], torch.from_numpy(tri), (hc, wc))
        # Colour (and UV) interpolation and texture sampling in the C++ ops over the crop: the
        # numpy gathers they replace cost ~3x more at ~200k covered pixels.
        attr = np.concatenate([col, self._uv], 1) if self._tex is not None else col
        a = interpolate(torch.from_numpy(np.ascontiguousarray(attr, np.float32))[None], rast, torch.from_numpy(tri))[0][0]
        c = a[..., :3]
        if self._tex is not None:
            c = c * texture(self._tex, a[None, ..., 3:5].contiguous(), filter_mode="linear", boundary_mode="clamp")[0]
        else:
            c = c * torch.from_numpy(self.shade.vertex_srgb[0])
        covered = rast[0, ..., 3:4] > 0
        pix = torch.where(covered, (c * 255.0 + 0.5).clamp_(0, 255), torch.from_numpy(bg.astype(np.float32)))
        out[y0:y1, x0:x1] = pix.to(torch.uint8).numpy()
        return out
