"""Rendering: the one camera, differentiable mesh rasterization (nvdiffrast-style ops), Gaussian splatting
(gsplat-style), the differentiable head renderer (:mod:`.head`), lighting, colour and previews."""

from .backends import build_extensions, mesh_backend_status
from .camera import Camera, full_projection, intrinsics_from_fov, look_at, projection_matrix, world_to_clip
from .gaussians import gaussian_backend_status, rasterize_gaussians
from .mesh import antialias, interpolate, rasterize, texture, texture_mip, triangle_adjacency
from .preview import framing_camera, render_mesh, save_image

__all__ = ["Camera", "rasterize", "interpolate", "texture", "texture_mip", "antialias", "triangle_adjacency", "mesh_backend_status",
           "build_extensions", "rasterize_gaussians", "gaussian_backend_status", "projection_matrix", "full_projection", "world_to_clip",
           "look_at", "intrinsics_from_fov", "render_mesh", "save_image", "framing_camera"]
