"""Shading helpers: Lambert + ambient, second-order spherical-harmonics irradiance."""

from __future__ import annotations


import torch
from torch import Tensor

__all__ = ["lambert", "sh_irradiance", "SH_C"]

# Ramamoorthi & Hanrahan irradiance constants for 9 real SH coefficients (bands 0..2).
SH_C = (0.886227, 1.023328, 0.858086, 0.247708, 0.429043)


def lambert(albedo: Tensor, normals: Tensor, light_dir: Tensor, ambient: float = 0.3) -> Tensor:
    """``albedo * (ambient + (1 - ambient) * max(0, n.l))``. albedo (...,3), normals (...,3) unit, light_dir (3,) or (B,3) towards the light."""
    l = torch.nn.functional.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device), dim=-1)
    while l.ndim < normals.ndim:
        l = l.unsqueeze(-2)
    ndl = (normals * l).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * ndl)


def sh_irradiance(normals: Tensor, sh: Tensor) -> Tensor:
    """Irradiance from 9 SH coefficients per colour. normals (B,...,3) unit, sh (B,9,3) or (9,3) -> (B,...,3).

    Basis order: 1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2 (the usual real SH order) in the normals' frame.
    """
    c1, c2, c3, c4, c5 = SH_C
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    one = torch.ones_like(x)
    basis = torch.stack([c1 * one, c2 * y, c2 * z, c2 * x, c3 * x * y, c3 * y * z, c4 * (3 * z * z - 1), c3 * x * z,
                         c5 * (x * x - y * y)], -1)  # (B,...,9)
    sh = torch.as_tensor(sh, dtype=normals.dtype, device=normals.device)
    if sh.ndim == 2:
        sh = sh[None]
    shape = (sh.shape[0],) + (1,) * (normals.ndim - 2) + (9, 3)
    return (basis[..., :, None] * sh.view(shape)).sum(-2)
