"""Rendering: differentiable mesh rasterization (nvdiffrast-style ops), cameras, shading and previews."""

from .backends import build_extensions, mesh_backend_status
from .camera import full_projection, intrinsics_from_fov, look_at, projection_matrix, world_to_clip
from .mesh import antialias, interpolate, rasterize, texture, texture_mip, triangle_adjacency
from .preview import framing_camera, render_mesh, save_image

# (the Gaussian rasterizer's public names are imported here by its module's owner)
from .gaussians import gaussian_backend_status, rasterize_gaussians  # noqa: E402,F401  (Gaussian splatting)

__all__ = ["rasterize", "interpolate", "texture", "texture_mip", "antialias", "triangle_adjacency", "mesh_backend_status", "build_extensions",
           "projection_matrix", "full_projection", "world_to_clip", "look_at", "intrinsics_from_fov", "render_mesh",
           "save_image", "framing_camera"]
