"""Rendering: differentiable mesh rasterization (nvdiffrast-style ops), cameras, shading and previews."""

from .backends import mesh_backend_status
from .camera import full_projection, look_at, projection_matrix, world_to_clip
from .mesh import antialias, interpolate, rasterize, texture, triangle_adjacency
from .preview import framing_camera, render_mesh, save_image

__all__ = ["rasterize", "interpolate", "texture", "antialias", "triangle_adjacency", "mesh_backend_status",
           "projection_matrix", "full_projection", "world_to_clip", "look_at", "render_mesh", "save_image", "framing_camera"]
