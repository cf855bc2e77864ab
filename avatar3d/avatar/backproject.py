"""Starting colours from the training frames themselves: each Gaussian takes the mean colour of the pixels it lands on.

A CPU run has hundreds of steps, not 3DGS's tens of thousands, and colour from grey at 3DGS's learning rate
takes most of them. So before training, every Gaussian is projected into (up to ``max_frames``) training
frames at their tracked parameters; where it is visible there (its camera depth within ``tolerance`` of the
depth the avatar itself renders at that pixel, inside the mask) the frame's pixel colour is added, weighted by
how squarely the surface faces the camera. Gaussians no frame saw keep their colour.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..geometry import quaternion_to_matrix
from ..render.gaussians import rasterize_gaussians
from .dataset import FrameSet
from .model import GaussianHead

__all__ = ["backproject_colours"]


@torch.no_grad()
def backproject_colours(avatar: GaussianHead, frames: FrameSet, max_frames: int = 24, tolerance: float = 0.004,
                        backend: str = "auto") -> tuple[Tensor, Tensor]:
    """(N, 3) mean display colour of each Gaussian over the frames that see it, and (N,) how many saw it.

    Args:
        frames: the training frames (their masked crops over white are sampled).
        max_frames: at most this many frames, evenly spread over the set.
        tolerance: metres between a Gaussian's depth and the rendered depth for it to count as visible.
    """
    N = avatar.num_gaussians
    total, weight, seen = torch.zeros(N, 3), torch.zeros(N), torch.zeros(N)
    n = len(frames)
    for row in torch.linspace(0, n - 1, min(n, max_frames)).round().long().unique():
        rows = row[None]
        cam = frames.camera(rows)[0]
        g, opac = avatar.pose(frames.expression[rows], frames.pose[rows], frames.transl[rows])
        vm, K = cam.world_to_cam.expand(1, 4, 4), cam.raster_K.expand(1, 3, 3)
        _, alpha, depth, _, _ = rasterize_gaussians(g.means[0], g.quats[0], g.scales[0], opac, torch.zeros(N, 1), vm, K,
                                                    cam.width, cam.height, backend=backend)
        pix, z = cam.project(g.means[0])  # (N, 2) pixel centres at integers, (N,) metres
        col, rw = pix[:, 0].round().long(), pix[:, 1].round().long()
        inside = (col >= 0) & (col < cam.width) & (rw >= 0) & (rw < cam.height) & (z > 0)
        c, r = col.clamp(0, cam.width - 1), rw.clamp(0, cam.height - 1)
        visible = inside & ((depth[0, r, c, 0] - z).abs() < tolerance) & (alpha[0, r, c, 0] > 0.5)
        visible &= frames.masks[row, r, c] > 127
        # facing: the local normal (the Gaussian's thin axis ~ its triangle's normal) against the view ray
        normal = quaternion_to_matrix(g.quats[0])[..., 2]
        ray = torch.nn.functional.normalize(g.means[0] - cam.centre, dim=-1)
        w = (normal * ray).sum(-1).abs() * visible
        target = frames.targets(rows)[0]
        total += w[:, None] * target[r, c]
        weight += w
        seen += visible.float()
    colours = total / weight.clamp_min(1e-8)[:, None]
    return colours, seen
