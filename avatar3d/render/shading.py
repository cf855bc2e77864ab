"""Shading helpers: Lambert + ambient, second-order spherical-harmonics irradiance (basis in :mod:`.lighting`)."""

from __future__ import annotations

import torch
from torch import Tensor

from .lighting import irradiance_basis

__all__ = ["lambert", "sh_irradiance"]


def lambert(albedo: Tensor, normals: Tensor, light_dir: Tensor, ambient: float = 0.3) -> Tensor:
    """``albedo * (ambient + (1 - ambient) * max(0, n.l))``. albedo (...,3), normals (...,3) unit, light_dir (3,) or (B,3) towards the light."""
    l = torch.nn.functional.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device), dim=-1)
    while l.ndim < normals.ndim:
        l = l.unsqueeze(-2)
    ndl = (normals * l).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * ndl)


def sh_irradiance(normals: Tensor, sh: Tensor) -> Tensor:
    """Irradiance from 9 SH coefficients per colour. normals (B,...,3) unit, sh (B,9,3) or (9,3) -> (B,...,3).

    ``sh`` are radiance SH coefficients in :mod:`.lighting`'s basis (order 1, y, z, x, xy, yz, 3z^2-1, xz,
    x^2-y^2 in the normals' frame); the cosine-lobe convolution is :func:`.lighting.irradiance_basis`.
    """
    basis = irradiance_basis(normals)  # (B,...,9)
    sh = torch.as_tensor(sh, dtype=normals.dtype, device=normals.device)
    if sh.ndim == 2:
        sh = sh[None]
    shape = (sh.shape[0],) + (1,) * (normals.ndim - 2) + (9, 3)
    return (basis[..., :, None] * sh.view(shape)).sum(-2)
