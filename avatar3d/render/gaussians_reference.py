"""Pure-PyTorch Gaussian splatting: EWA projection and an obviously-correct (slow) rasterizer.

The projection here is *the* projection for every backend (it is vectorised and cheap next to
compositing; autograd gives its backward). The rasterizer is the slow reference the C++/CUDA
kernels are tested against: per tile, it densely evaluates every (pixel, Gaussian) pair that gsplat's
tile binning would evaluate, in depth order, with gsplat's thresholds (alpha in [1/255, 0.999], stop before
transmittance drops to <= 1e-4).

Conventions (same as gsplat): OpenCV camera (x right, y down, z forward), world->camera ``viewmats``,
pixel (x, y) sampled at (x + 0.5, y + 0.5), row 0 = top of the image, quaternions wxyz.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..geometry import quaternion_to_matrix  # same wxyz, any-norm convention as gsplat

TILE_SIZE = 16
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_EPS = 1e-4
EPS2D = 0.3
# Pixel radii beyond this are clamped so "huge" Gaussians stay finite and cheap to bin.
MAX_RADIUS = 1.0e6


def covariances(quats: Tensor, scales: Tensor) -> Tensor:
    """World covariances R diag(s^2) R^T: quats (N,4), scales (N,3) metres -> (N,3,3) m^2."""
    M = quaternion_to_matrix(quats) * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor, quats: Tensor, scales: Tensor, viewmats: Tensor, Ks: Tensor, width: int, height: int,
    near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = EPS2D,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """EWA-project 3D Gaussians into C pinhole cameras (gsplat's fully_fused_projection).

    means (N,3) m, quats (N,4) wxyz, scales (N,3) m, viewmats (C,4,4) world->cam, Ks (C,3,3) pixels.
    Returns radii (C,N,2) int32 pixels (0 = culled: outside [near, far], off-screen or degenerate),
    means2d (C,N,2) pixels, depths (C,N) camera z in m, conics (C,N,3) upper triangle of the inverse
    2D covariance (after the ``eps2d`` low-pass dilation), covars2d (C,N,2,2) dilated pixel^2.
    Culled entries are finite (safe depth substituted) so gradients never become NaN.
    """
    R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # (C,N,3)
    covars_c = torch.einsum("cij,njk,clk->cnil", R, covariances(quats, scales), R)  # (C,N,3,3)
    tx, ty, tz = means_c.unbind(-1)
    in_depth = (tz > near_plane) & (tz < far_plane)
    # behind-camera / too-near Gaussians are culled; a safe z keeps every division finite
    tz = torch.where(in_depth, tz, torch.ones_like(tz))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # clamp the Jacobian's evaluation point to 1.3x the frustum (gsplat), avoiding blow-ups at the edges
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    u = torch.minimum(torch.maximum(tx / tz, -(cx / fx + 0.3 * tan_x)), (width - cx) / fx + 0.3 * tan_x)
    v = torch.minimum(torch.maximum(ty / tz, -(cy / fy + 0.3 * tan_y)), (height - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * u / tz, zero, fy / tz, -fy * v / tz], -1).reshape(tz.shape + (2, 3))
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    cov2d = cov2d + eps2d * torch.eye(2, dtype=cov2d.dtype, device=cov2d.device)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], -1)
    det = (cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]).clamp_min(1e-10)
    conics = torch.stack([cov2d[..., 1, 1] / det, -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]) / det,
                          cov2d[..., 0, 0] / det], -1)
    with torch.no_grad():
        rad = torch.ceil(3.33 * torch.sqrt(torch.stack([cov2d[..., 0, 0], cov2d[..., 1, 1]], -1)))
        rad = torch.nan_to_num(rad, nan=0.0, posinf=MAX_RADIUS).clamp(0, MAX_RADIUS)
        finite = torch.isfinite(means2d).all(-1) & torch.isfinite(conics).all(-1)
        inside = ((means2d[..., 0] + rad[..., 0] > 0) & (means2d[..., 0] - rad[..., 0] < width)
                  & (means2d[..., 1] + rad[..., 1] > 0) & (means2d[..., 1] - rad[..., 1] < height))
        keep = in_depth & finite & inside
        radii = torch.where(keep[..., None], rad, torch.zeros_like(rad)).to(torch.int32)
    return radii, means2d, means_c[..., 2], conics, cov2d


def tile_ranges(means2d: Tensor, radii: Tensor, width: int, height: int) -> Tensor:
    """Tile rectangles [x0, x1) x [y0, y1) per splat, as (..., 4) int64 (x0, x1, y0, y1).

    Uses float32 maths like the kernels and gsplat so tile membership is bit-identical.
    """
    tw, th = -(-width // TILE_SIZE), -(-height // TILE_SIZE)
    m = means2d.detach().float() / TILE_SIZE
    r = radii.float() / TILE_SIZE
    lo, hi = torch.floor(m - r), torch.ceil(m + r)
    x0, x1 = lo[..., 0].clamp(0, tw), hi[..., 0].clamp(0, tw)
    y0, y1 = lo[..., 1].clamp(0, th), hi[..., 1].clamp(0, th)
    return torch.stack([x0, x1, y0, y1], -1).long()


def _composite(centres: Tensor, m2: Tensor, cn: Tensor, op: Tensor, ft: Tensor) -> Tuple[Tensor, Tensor]:
    """Composite depth-sorted splats (M of them) over pixel centres (P,2): -> colour (P,D), final T (P,1)."""
    d = centres[:, None, :] - m2[None]  # (P,M,2)
    sigma = 0.5 * (cn[:, 0] * d[..., 0] ** 2 + cn[:, 2] * d[..., 1] ** 2) + cn[:, 1] * d[..., 0] * d[..., 1]
    # clamp_min keeps exp finite where sigma < 0 (those pairs are masked out anyway)
    alpha = torch.clamp_max(op * torch.exp(-sigma.clamp_min(0)), ALPHA_MAX)
    ok = (sigma >= 0) & (alpha >= ALPHA_MIN)
    a = torch.where(ok, alpha, torch.zeros_like(alpha))
    # a splat is composited iff the transmittance *after* it stays above T_EPS (monotone => a prefix)
    with torch.no_grad():
        keep = torch.cumprod(1 - a, dim=1) > T_EPS
    a = torch.where(keep, a, torch.zeros_like(a))
    Tincl = torch.cumprod(1 - a, dim=1)
    Texcl = torch.cat([torch.ones_like(Tincl[:, :1]), Tincl[:, :-1]], 1)
    T = Tincl[:, -1:] if a.shape[1] > 0 else torch.ones_like(centres[:, :1])
    return (a * Texcl) @ ft, T


def rasterize_reference(
    means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, radii: Tensor, depths: Tensor,
    width: int, height: int, backgrounds: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """Front-to-back compositing per 16x16 tile, differentiable by autograd (slow; for tests/benchmarks).

    means2d (C,N,2), conics (C,N,3), opacities (C,N), features (C,N,D), radii (C,N,2) int,
    depths (C,N) sort key, backgrounds (C,D) or None. Returns images (C,H,W,D), alphas (C,H,W,1).
    Every pixel of a tile evaluates every splat whose tile rectangle covers that tile (gsplat's binning),
    densely, in depth order (ties by index).
    """
    C, N, D = features.shape
    dev, dt = means2d.device, means2d.dtype
    tw, th = -(-width // TILE_SIZE), -(-height // TILE_SIZE)
    images, alphas = [], []
    for c in range(C):
        idx = torch.nonzero((radii[c] > 0).all(-1)).squeeze(-1)
        idx = idx[torch.sort(depths[c, idx].detach(), stable=True).indices]  # front to back, ties by index
        rect = tile_ranges(means2d[c, idx], radii[c, idx], width, height)  # (M,4)
        m2, cn, op, ft = means2d[c, idx], conics[c, idx], opacities[c, idx], features[c, idx]
        rows_img, rows_T = [], []
        for ty in range(th):
            y0, y1 = ty * TILE_SIZE, min(height, (ty + 1) * TILE_SIZE)
            tiles_img, tiles_T = [], []
            for tx in range(tw):
                x0, x1 = tx * TILE_SIZE, min(width, (tx + 1) * TILE_SIZE)
                sel = torch.nonzero((rect[:, 0] <= tx) & (tx < rect[:, 1]) & (rect[:, 2] <= ty) & (ty < rect[:, 3])).squeeze(-1)
                ys, xs = torch.meshgrid(torch.arange(y0, y1, device=dev), torch.arange(x0, x1, device=dev), indexing="ij")
                centres = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(dt) + 0.5
                col, T = _composite(centres, m2[sel], cn[sel], op[sel], ft[sel])
                tiles_img.append(col.reshape(y1 - y0, x1 - x0, D))
                tiles_T.append(T.reshape(y1 - y0, x1 - x0, 1))
            rows_img.append(torch.cat(tiles_img, 1))
            rows_T.append(torch.cat(tiles_T, 1))
        img, T = torch.cat(rows_img, 0), torch.cat(rows_T, 0)
        if backgrounds is not None:
            img = img + T * backgrounds[c]
        images.append(img)
        alphas.append(1 - T)
    return torch.stack(images), torch.stack(alphas)
