"""Gaussians for what the head mesh does not reach: long hair, the neck's sides, a collar inside the mask.

The head model ends at the scalp and the neck, but the masks (and so the targets over white) hold the whole
hairdo: every uncovered mask pixel costs the loss a full white-against-hair error that no amount of training
of surface Gaussians can remove. So before training, in a few training frames spread over the set, the mask
pixels the avatar does not yet cover (rendered coverage < 0.5) are sampled on a grid, lifted to 3D at the depth of
the nearest covered pixel (hair beside the face hangs about as deep as the head's silhouette), and bound to
the nearest *free* triangle (:func:`~avatar3d.avatar.model.free_triangles`: scalp, ears, neck; never the face)
at that frame's pose, far off its surface; the model's offset regulariser lets free Gaussians sit up to
:data:`~avatar3d.avatar.model.FREE_OFFSET_M` from their triangle. Each takes its pixel's colour, is round
(hair has no surface to lie flat on) and its spacing wide, and each later frame only fills what the earlier
ones left open.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import Tensor

from ..render.gaussians import rasterize_gaussians
from .binding import bind_points, triangle_frames
from .dataset import FrameSet
from .model import GaussianHead, free_triangles

__all__ = ["cover_silhouettes"]


@torch.no_grad()
def cover_silhouettes(avatar: GaussianHead, frames: FrameSet, max_frames: int = 4, spacing_px: float = 4.0,
                      opacity: float = 0.8, spread: float = 0.6, backend: str = "auto") -> int:
    """Add Gaussians where the masks of up to ``max_frames`` frames (evenly spread) are not covered; returns how many.

    Args:
        spacing_px: grid step of the sampled pixels at the frames' resolution (one Gaussian per step^2 pixels).
        opacity: their starting opacity; spread: their standard deviation as a fraction of their spacing.
    """
    free = torch.nonzero(free_triangles(avatar.head_model))[:, 0]
    n = len(frames)
    order = torch.linspace(0, n - 1, min(n, max_frames)).round().long().unique()
    added = 0
    for row in order[torch.argsort((order - (n - 1) / 2).abs())]:  # the middle frame first, then outwards
        added += _cover_frame(avatar, frames, row[None], free, spacing_px, opacity, spread, backend)
    return added


def _cover_frame(avatar: GaussianHead, frames: FrameSet, rows: Tensor, free: Tensor, spacing_px: float, opacity: float,
                 spread: float, backend: str) -> int:
    cam = frames.camera(rows)[0]
    g, opac = avatar.pose(frames.expression[rows], frames.pose[rows], frames.transl[rows])
    N = avatar.num_gaussians
    _, alpha, depth, _, _ = rasterize_gaussians(g.means[0], g.quats[0], g.scales[0], opac, torch.zeros(N, 1),
                                                cam.world_to_cam.expand(1, 4, 4), cam.raster_K.expand(1, 3, 3),
                                                cam.width, cam.height, backend=backend)
    covered = (alpha[0, ..., 0] > 0.5).numpy()
    if not covered.any():
        return 0
    open_ = (frames.masks[rows[0]] > 127).numpy() & (frames.inside[rows[0]] > 127).numpy() & ~covered
    step = max(1, int(round(spacing_px)))
    grid = np.zeros_like(open_)
    grid[step // 2::step, step // 2::step] = True
    ys, xs = np.nonzero(open_ & grid)
    if len(ys) == 0:
        return 0
    # the depth of the nearest covered pixel (the silhouette's, beside the head)
    _, (iy, ix) = distance_transform_edt(~covered, return_indices=True)
    z = depth[0, torch.as_tensor(iy[ys, xs]), torch.as_tensor(ix[ys, xs]), 0]
    pix = torch.as_tensor(np.stack([xs, ys], -1), dtype=torch.float32)
    origin, d = cam.rays_at(pix)
    forward = cam.world_to_cam[2, :3].to(d)  # the camera's viewing axis in the world frame
    points = origin + d * (z / (d @ forward))[:, None]
    verts = avatar.head_model(avatar.shape[None], frames.expression[rows], frames.pose[rows], frames.transl[rows]).vertices
    tri = triangle_frames(verts, avatar.head_model.faces)
    parent = free[torch.cdist(points, tri.centre[0, free]).argmin(1)]
    sigma = spread * spacing_px * z / cam.K[0, 0]  # metres: the pixel step at that depth
    colours = frames.targets(rows)[0, torch.as_tensor(ys), torch.as_tensor(xs)]
    _append(avatar, parent, bind_points(tri, parent, points), sigma / tri.scale[0, parent], colours, opacity)
    return len(parent)


def _append(avatar: GaussianHead, parent: Tensor, offset: Tensor, sigma: Tensor, colours: Tensor, opacity: float) -> None:
    """Add round Gaussians (``sigma`` (M,) triangle units) at ``offset`` (M, 3) of triangles ``parent`` (M,)."""
    M, K = len(parent), avatar.expr_index.numel()
    params = {"offset": offset, "rotation": torch.tensor([1.0, 0, 0, 0]).expand(M, 4).clone(),
              "log_scale": torch.log(sigma)[:, None].expand(M, 3).clone(),
              "opacity": torch.logit(torch.full((M,), float(opacity))),
              "expr_offset": torch.zeros(M, K, 3)}
    params.update(avatar.appearance.fields(colours, K))
    avatar.add_gaussians(params, parent)
