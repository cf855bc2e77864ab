"""``render_mesh``: a shaded, antialiased picture of a mesh from (K, viewmat), used for previews and tests.

Built only from the differentiable ops in :mod:`avatar3d.render.mesh`, so the image is
differentiable w.r.t. vertices, colours and texture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import BadInputError
from ..geometry import vertex_normals
from .camera import world_to_clip
from .camera_builders import framing, orbit
from .mesh import antialias, interpolate, rasterize, texture
from .shading import lambert, sh_irradiance

__all__ = ["render_mesh", "save_image", "framing_camera", "orbit_camera", "to_uint8", "contact_sheet"]


def render_mesh(vertices: Tensor, faces: Tensor, K: Tensor, viewmat: Tensor, width: int, height: int,
                colors: Optional[Tensor] = None, uvs: Optional[Tensor] = None, uv_faces: Optional[Tensor] = None,
                texture_image: Optional[Tensor] = None, light_dir: Sequence[float] = (0.3, -0.5, -1.0),
                ambient: float = 0.3, sh: Optional[Tensor] = None, background: Union[float, Sequence[float], Tensor] = 1.0,
                near: float = 0.01, far: float = 100.0, return_alpha: bool = False, backend: str = "auto"):
    """Render a Lambert-shaded mesh. Row 0 of the result is the top of the image.

    Args:
        vertices: (B,V,3) or (V,3) world-space positions (metres).
        faces: (F,3) int triangles, counter-clockwise seen from outside.
        K: (3,3) or (B,3,3) raster intrinsics (pixel centres at +0.5: ``Camera.raster_K``); viewmat: (4,4)
            or (B,4,4) world-to-camera (see :mod:`avatar3d.render.camera`).
        width, height: image size in pixels.
        colors: (B,V,3) or (V,3) per-vertex albedo in [0,1]; default light grey.
        uvs, uv_faces, texture_image: (T,2) UVs with origin bottom-left (OBJ convention), (F,3)
            UV triangles, (Ht,Wt,3) or (B,Ht,Wt,3) texture whose row 0 is the top of the image.
        light_dir: direction TOWARDS the light in camera coordinates (x right, y down, z forward);
            the default lights from above-right of the camera.
        ambient: ambient fraction for Lambert; sh: (9,3) or (B,9,3) SH lighting (camera frame)
            replacing Lambert when given.
        background: grey level or RGB.
        return_alpha: also return the antialiased coverage (B,H,W,1).

    Returns:
        (B,H,W,3) float image (and alpha when requested).
    """
    v = vertices if vertices.ndim == 3 else vertices[None]
    if v.shape[-1] != 3:
        raise BadInputError(f"vertices must be (B, V, 3) or (V, 3), got {tuple(vertices.shape)}")
    faces_t = torch.as_tensor(faces, device=v.device)
    tri = faces_t.to(torch.int32).contiguous()
    B = v.shape[0]
    K = torch.as_tensor(K, dtype=v.dtype, device=v.device)
    viewmat = torch.as_tensor(viewmat, dtype=v.dtype, device=v.device)
    pos = world_to_clip(v, K, viewmat, width, height, near, far)
    if pos.shape[0] != B:
        v = v.expand(pos.shape[0], -1, -1)
        B = pos.shape[0]
    rast, _ = rasterize(pos, tri, (height, width), backend=backend)
    # normals into the camera frame so light_dir / SH are camera-relative
    R = viewmat[..., :3, :3]
    n_world = vertex_normals(v, faces_t)
    n_cam = n_world @ (R.transpose(-1, -2) if R.ndim == 3 else R.T)
    n_pix = torch.nn.functional.normalize(interpolate(n_cam, rast, tri, backend=backend)[0], dim=-1, eps=1e-12)
    if texture_image is not None:
        if uvs is None or uv_faces is None:
            raise BadInputError("texture_image needs uvs (T, 2) and uv_faces (F, 3)")
        uv = torch.as_tensor(uvs, dtype=v.dtype, device=v.device)
        uv = torch.stack([uv[:, 0], 1 - uv[:, 1]], -1)  # OBJ origin bottom-left -> texture row 0 at the top
        uvt = torch.as_tensor(uv_faces, device=v.device).to(torch.int32).contiguous()
        uv_pix = interpolate(uv, rast, uvt, backend=backend)[0]
        tex = torch.as_tensor(texture_image, dtype=v.dtype, device=v.device)
        tex = tex if tex.ndim == 4 else tex[None]
        albedo = texture(tex, uv_pix, filter_mode="linear", boundary_mode="clamp", backend=backend)
    else:
        col = torch.full_like(v, 0.8) if colors is None else torch.as_tensor(colors, dtype=v.dtype, device=v.device)
        albedo = interpolate(col if col.ndim == 3 else col, rast, tri, backend=backend)[0]
    if sh is not None:
        shaded = albedo * sh_irradiance(n_pix, sh)
    else:
        shaded = lambert(albedo, n_pix, torch.as_tensor(light_dir, dtype=v.dtype, device=v.device), ambient)
    mask = (rast[..., 3:4] > 0).to(v.dtype)
    bg = torch.as_tensor(background, dtype=v.dtype, device=v.device).expand(3) if torch.as_tensor(background).numel() in (1, 3) else torch.as_tensor(background, dtype=v.dtype, device=v.device)
    img = shaded * mask + bg * (1 - mask)
    img = antialias(img.contiguous(), rast, pos, tri, backend=backend)
    if return_alpha:
        alpha = antialias(mask.contiguous(), rast, pos, tri, backend=backend)
        return img, alpha
    return img


def framing_camera(vertices: Tensor, width: int, height: int, direction: Sequence[float] = (0.0, 0.0, 1.0),
                   fov_y_deg: float = 25.0, margin: float = 1.15) -> tuple[Tensor, Tensor]:
    """(raster K (3,3), viewmat (4,4)) for :func:`render_mesh` of :func:`~avatar3d.render.camera_builders.framing`."""
    cam = framing(vertices, width, height, direction, fov_y_deg, margin)
    return cam.raster_K, cam.world_to_cam


def save_image(img: Tensor, path: Union[str, Path]) -> Path:
    """Save an (H,W,3) or (1,H,W,3) float image in [0,1] as PNG (row 0 = top)."""
    from PIL import Image

    a = img.detach().float().cpu()
    if a.ndim == 4:
        a = a[0]
    if a.shape[-1] == 1:
        a = a.expand(-1, -1, 3)
    arr = (a.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def orbit_camera(yaw_deg: float, pitch_deg: float, distance: float, target: Sequence[float], size: int,
                 fov_deg: float = 20.0) -> tuple[Tensor, Tensor]:
    """(raster K (3,3), world->cam (4,4)) for :func:`render_mesh` of :func:`~avatar3d.render.camera_builders.orbit`."""
    cam = orbit(yaw_deg, pitch_deg, distance, target, size, fov_deg)
    return cam.raster_K, cam.world_to_cam


def to_uint8(img: Tensor) -> np.ndarray:
    """(H,W,3) or (1,H,W,3) float image in [0,1] -> (H,W,3) uint8 array (row 0 = top)."""
    a = img.detach().float().cpu()
    if a.ndim == 4:
        a = a[0]
    return (a.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def contact_sheet(images: Sequence[np.ndarray], cols: int = 4, labels: Optional[Sequence[str]] = None,
                  background: int = 255) -> np.ndarray:
    """Tile equally sized (H,W,3) uint8 images row-major into one (rows*(H+L), cols*W, 3) uint8 sheet.

    With ``labels`` (one per image) each tile gets an L = 18 px caption strip above it.
    """
    if len(images) == 0:
        raise BadInputError("contact_sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise BadInputError(f"contact_sheet got {len(images)} images but {len(labels)} labels")
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise BadInputError(f"contact_sheet needs images of one size, got {sorted({im.shape[:2] for im in images})}")
    lab = 18 if labels is not None else 0
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * (h + lab), cols * w, 3), background, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y0 = r * (h + lab) + lab
        out[y0 : y0 + h, c * w : (c + 1) * w] = np.asarray(im)[..., :3]
    if labels is not None:
        from PIL import Image, ImageDraw

        pil = Image.fromarray(out)
        draw = ImageDraw.Draw(pil)
        for i, text in enumerate(labels):
            r, c = divmod(i, cols)
            draw.text((c * w + 4, r * (h + lab) + 3), str(text), fill=(0, 0, 0))
        out = np.asarray(pil).copy()
    return out
