"""Differentiable mesh rasterization ops with nvdiffrast's argument conventions.

``rasterize`` -> ``interpolate`` -> ``texture`` -> ``antialias`` compose into a differentiable
renderer (see :func:`avatar3d.render.preview.render_mesh`). Shapes (B views, V vertices, F
triangles, H x W image, A attribute channels, C colour channels):

* ``pos``  (B,V,4) or (V,4) float: clip-space vertex positions ``(x, y, z, w)``;
* ``tri``  (F,3) int32: vertex indices per triangle;
* ``rast`` (B,H,W,4) float: ``(u, v, z/w, triangle_id + 1)``; 0 in the last channel = background;
  the surface point is ``u*v0 + v*v1 + (1-u-v)*v2`` (perspective-correct);
* ``rast_db`` (B,H,W,4): ``(du/dX, du/dY, dv/dX, dv/dY)`` in pixels (X along W, Y along H).

Pixel ``(row i, col j)`` samples NDC ``((2j+1)/W - 1, (2i+1)/H - 1)``: row 0 is NDC ``y = -1``,
exactly as nvdiffrast. With the projection built by :mod:`avatar3d.render.camera` NDC ``y = -1``
is the TOP of the OpenCV image, so our images need no flip.

Backends (``backend=``): ``"auto"`` (CUDA extension for CUDA tensors, else the CPU extension,
else the reference), ``"cuda"``, ``"cpu"`` (our C++ extension), ``"reference"`` (pure PyTorch,
:mod:`avatar3d.render.mesh_reference`), ``"nvdiffrast"`` (when installed, CUDA tensors).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from ..errors import BadInputError
from . import mesh_reference as ref
from .backends import get_mesh_backend, nvdiffrast_context

__all__ = ["rasterize", "interpolate", "texture", "texture_mip", "antialias", "triangle_adjacency", "BACKENDS"]

BACKENDS = ("auto", "cuda", "cpu", "reference", "nvdiffrast")
_FILTERS = {"nearest": 0, "linear": 1}
_BOUNDARY = {"wrap": 0, "clamp": 1, "zero": 2}

triangle_adjacency = ref.triangle_adjacency


def _check_tri(tri: Tensor, V: int) -> Tensor:
    if not isinstance(tri, Tensor) or tri.ndim != 2 or tri.shape[1] != 3:
        raise BadInputError(f"tri must be an (F, 3) integer tensor of vertex indices, got {getattr(tri, 'shape', type(tri))}")
    if tri.dtype.is_floating_point:
        raise BadInputError(f"tri must be an integer tensor (int32), got {tri.dtype}")
    if tri.numel() and (int(tri.min()) < 0 or int(tri.max()) >= V):
        raise BadInputError(f"tri indexes vertices outside 0..{V - 1}")
    return tri.to(torch.int32).contiguous()


def _check_pos(pos: Tensor) -> None:
    if not isinstance(pos, Tensor) or pos.ndim not in (2, 3) or pos.shape[-1] != 4 or not pos.dtype.is_floating_point:
        raise BadInputError(f"pos must be a float tensor of clip-space positions (B, V, 4) or (V, 4), got {getattr(pos, 'shape', type(pos))}")


def _check_rast(rast: Tensor) -> None:
    if not isinstance(rast, Tensor) or rast.ndim != 4 or rast.shape[-1] != 4:
        raise BadInputError(f"rast must be the (B, H, W, 4) output of rasterize, got {getattr(rast, 'shape', type(rast))}")


# ----------------------------------------------------------------------------------------- autograd
class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, tri, H, W, ranges, want_db, ext):  # noqa: D102
        rast, db = ext.rasterize_fwd(pos, tri, H, W, ranges, want_db)
        ctx.save_for_backward(pos, tri, rast)
        ctx.ext = ext
        ctx.mark_non_differentiable(db)
        return rast, db

    @staticmethod
    def backward(ctx, g_rast, g_db):  # noqa: D102
        pos, tri, rast = ctx.saved_tensors
        if g_rast is None:
            return (None,) * 7
        g = ctx.ext.rasterize_bwd(pos, tri, rast, g_rast.contiguous())
        return g, None, None, None, None, None, None


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr, rast, tri, ext):  # noqa: D102
        out = ext.interpolate_fwd(attr, rast, tri)
        ctx.save_for_backward(attr, rast, tri)
        ctx.ext = ext
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        attr, rast, tri = ctx.saved_tensors
        ga, gr = ctx.ext.interpolate_bwd(attr, rast, tri, g.contiguous())
        return ga, gr, None, None


class _Texture(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tex, uv, filt, bound, ext):  # noqa: D102
        out = ext.texture_fwd(tex, uv, filt, bound)
        ctx.save_for_backward(tex, uv)
        ctx.cfg = (filt, bound, ext)
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        tex, uv = ctx.saved_tensors
        filt, bound, ext = ctx.cfg
        gt, gu = ext.texture_bwd(tex, uv, g.contiguous(), filt, bound)
        return gt, gu, None, None, None


class _Antialias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color, rast, pos, tri, adj, ext):  # noqa: D102
        out = ext.antialias_fwd(color, rast, pos, tri, adj)
        ctx.save_for_backward(color, rast, pos, tri, adj)
        ctx.ext = ext
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        color, rast, pos, tri, adj = ctx.saved_tensors
        gc, gp = ctx.ext.antialias_bwd(color, rast, pos, tri, adj, g.contiguous())
        return gc, None, gp, None, None, None


# ------------------------------------------------------------------------------------------ public
def rasterize(pos: Tensor, tri: Tensor, resolution: Sequence[int], ranges: Optional[Tensor] = None,
              grad_db: bool = True, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Rasterize triangles given in clip space.

    Args:
        pos: (B,V,4) clip-space positions, or (V,4) shared by all views (with ``ranges``: B = len(ranges)).
        tri: (F,3) int32 triangle vertex indices.
        resolution: ``(H, W)`` in pixels.
        ranges: optional (B,2) int32 ``(first_triangle, count)`` per view, with (V,4) ``pos`` (range mode).
        grad_db: accepted for nvdiffrast compatibility; ``rast_db`` is always returned but carries
            no gradient in our backends (it only feeds texture LOD / ``diff_attrs``).
        backend: see module docstring.

    Returns:
        ``rast`` (B,H,W,4) = (u, v, z/w, triangle_id + 1), differentiable w.r.t. ``pos`` through
        ``u, v, z/w``; ``rast_db`` (B,H,W,4) = (du/dX, du/dY, dv/dX, dv/dY) per pixel.
    """
    _check_pos(pos)
    tri = _check_tri(tri, pos.shape[-2])
    if len(resolution) != 2 or int(resolution[0]) < 1 or int(resolution[1]) < 1:
        raise BadInputError(f"resolution must be (H, W) with positive sizes, got {tuple(resolution)}")
    H, W = int(resolution[0]), int(resolution[1])
    if ranges is not None:
        if pos.ndim != 2:
            raise BadInputError("ranges is only valid with (V, 4) pos (range mode), as in nvdiffrast")
        ranges = torch.as_tensor(ranges).to(torch.int32).reshape(-1, 2).cpu().contiguous()
    name, ext = get_mesh_backend(backend, pos)
    if name == "nvdiffrast":
        import nvdiffrast.torch as dr

        p = pos if (pos.ndim == 3 or ranges is not None) else pos[None]
        return dr.rasterize(nvdiffrast_context(pos.device), p.contiguous(), tri, (H, W), ranges=ranges, grad_db=grad_db)
    if ext is None:
        rast = ref.rasterize(pos, tri, (H, W), ranges=ranges)
        return rast, _rast_db_reference(pos, tri, rast, ranges)
    p = (pos if pos.ndim == 3 else pos[None]).contiguous()
    rg = ranges if ranges is not None else torch.zeros(0, 2, dtype=torch.int32)
    return _Rasterize.apply(p, tri, H, W, rg, True, ext)


def _rast_db_reference(pos: Tensor, tri: Tensor, rast: Tensor, ranges: Optional[Tensor]) -> Tensor:
    """Screen-space derivatives of (u, v) by differentiating the reference barycentrics (no grad)."""
    with torch.no_grad():
        B, H, W, _ = rast.shape
        posb = pos if pos.ndim == 3 else pos[None].expand(B, -1, -1)
        tid = rast[..., 3].long() - 1
        m = tid >= 0
        if tri.shape[0] == 0:
            return torch.zeros_like(rast)
        pt = posb[torch.arange(B, device=pos.device).view(B, 1, 1, 1), tri.long()[tid.clamp(min=0)]]  # (B,H,W,3,4)
        v = pt[..., [0, 1, 3]]
        n = torch.stack([ref.cross(v[..., 1, :], v[..., 2, :]), ref.cross(v[..., 2, :], v[..., 0, :]), ref.cross(v[..., 0, :], v[..., 1, :])], -2)
        px = ref.pixel_centers(W, pos.device, pos.dtype).view(1, 1, W, 1)
        py = ref.pixel_centers(H, pos.device, pos.dtype).view(1, H, 1, 1)
        s = n[..., 0] * px + n[..., 1] * py + n[..., 2]
        S = s.sum(-1, keepdim=True)
        S = torch.where(S == 0, torch.ones_like(S), S)
        b = s / S
        # d b_i / d ndc = (n_i - b_i * sum_j n_j) / S; pixels are 2/W (2/H) NDC units wide
        dx = (n[..., 0] - b * n[..., 0].sum(-1, keepdim=True)) / S * (2.0 / W)
        dy = (n[..., 1] - b * n[..., 1].sum(-1, keepdim=True)) / S * (2.0 / H)
        db = torch.stack([dx[..., 0], dy[..., 0], dx[..., 1], dy[..., 1]], -1)
        return torch.where(m[..., None], db, torch.zeros_like(db))


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Optional[Tensor] = None,
                diff_attrs: Union[None, str, Sequence[int]] = None, backend: str = "auto") -> tuple[Tensor, Optional[Tensor]]:
    """Interpolate vertex attributes to pixels.

    Args:
        attr: (B,V,A) or (V,A) float vertex attributes.
        rast: (B,H,W,4) from :func:`rasterize`.
        tri: (F,3) int32, the same triangles.
        rast_db: (B,H,W,4) from :func:`rasterize`, needed only with ``diff_attrs``.
        diff_attrs: attribute indices (or ``"all"``) whose screen-space derivatives to return.

    Returns:
        ``out`` (B,H,W,A) (zero on background) with gradients to ``attr`` and, through ``rast``, to
        the rasterized positions; ``out_da`` (B,H,W,2*len(diff_attrs)) = (d a/dX, d a/dY) per
        selected attribute, or ``None``.
    """
    _check_rast(rast)
    if not isinstance(attr, Tensor) or attr.ndim not in (2, 3) or not attr.dtype.is_floating_point:
        raise BadInputError(f"attr must be a float tensor (B, V, A) or (V, A), got {getattr(attr, 'shape', type(attr))}")
    if attr.ndim == 3 and attr.shape[0] not in (1, rast.shape[0]):
        raise BadInputError(f"attr batch {attr.shape[0]} does not match rast batch {rast.shape[0]}")
    tri = _check_tri(tri, attr.shape[-2])
    da = None
    if diff_attrs is not None:
        if rast_db is None:
            raise BadInputError("diff_attrs needs rast_db (the second output of rasterize)")
        da = ref.interpolate(attr, rast, tri, rast_db, diff_attrs)[1]
    name, ext = get_mesh_backend(backend, rast)
    if name == "nvdiffrast":
        import nvdiffrast.torch as dr

        return dr.interpolate(attr.contiguous(), rast, tri, rast_db=rast_db, diff_attrs=diff_attrs)
    if ext is None:
        return ref.interpolate(attr, rast, tri)[0], da
    a = (attr if attr.ndim == 3 else attr[None]).contiguous()
    return _Interpolate.apply(a, rast.contiguous(), tri, ext), da


def texture(tex: Tensor, uv: Tensor, uv_da: Optional[Tensor] = None, mip_level_bias: Optional[Tensor] = None,
            mip: Optional[Sequence[Tensor]] = None, filter_mode: str = "auto", boundary_mode: str = "wrap",
            max_mip_level: Optional[int] = None, backend: str = "auto") -> Tensor:
    """Sample a texture at per-pixel UVs, optionally mipmapped.

    Args:
        tex: (B,Ht,Wt,C) texture (B may be 1 to share it across views).
        uv: (B,H,W,2) texture coordinates; texel ``(r, c)`` centre is at ``((c+0.5)/Wt, (r+0.5)/Ht)``,
            i.e. ``v = 0`` is texture row 0 (flip images loaded with origin bottom-left yourself).
        uv_da: (B,H,W,4) = (du/dX, du/dY, dv/dX, dv/dY) screen-space UV derivatives (from
            ``interpolate(..., rast_db, diff_attrs="all")``), needed by the mipmap filters.
        mip_level_bias: (B,H,W) added to the computed level of detail.
        mip: prebuilt pyramid from :func:`texture_mip` (levels 1..L), reused across calls.
        filter_mode: ``"auto"`` (``linear-mipmap-linear`` when ``uv_da`` is given, else ``linear``),
            ``"nearest"``, ``"linear"``, ``"linear-mipmap-nearest"``, ``"linear-mipmap-linear"``.
        boundary_mode: ``"wrap"``, ``"clamp"`` or ``"zero"``.
        max_mip_level: highest pyramid level used (default: down to 1x1).

    Returns:
        (B,H,W,C) samples, differentiable w.r.t. ``tex`` and (bilinear filters) ``uv``.
    """
    if not isinstance(tex, Tensor) or tex.ndim != 4:
        raise BadInputError(f"tex must be (B, Ht, Wt, C), got {getattr(tex, 'shape', type(tex))}")
    if not isinstance(uv, Tensor) or uv.ndim != 4 or uv.shape[-1] != 2:
        raise BadInputError(f"uv must be (B, H, W, 2), got {getattr(uv, 'shape', type(uv))}")
    if tex.shape[0] not in (1, uv.shape[0]):
        raise BadInputError(f"tex batch {tex.shape[0]} must be 1 or match uv batch {uv.shape[0]}")
    fm = ("linear-mipmap-linear" if uv_da is not None else "linear") if filter_mode == "auto" else filter_mode
    if fm not in _FILTERS and fm not in ("linear-mipmap-nearest", "linear-mipmap-linear"):
        raise BadInputError(f"filter_mode must be one of auto, nearest, linear, linear-mipmap-nearest, linear-mipmap-linear, got {filter_mode!r}")
    if boundary_mode not in _BOUNDARY:
        raise BadInputError(f"boundary_mode must be one of wrap, clamp, zero, got {boundary_mode!r}")
    name, ext = get_mesh_backend(backend, uv)
    if name == "nvdiffrast":
        import nvdiffrast.torch as dr

        return dr.texture(tex.contiguous(), uv.contiguous(), uv_da=uv_da, mip_level_bias=mip_level_bias,
                          filter_mode=filter_mode, boundary_mode=boundary_mode, max_mip_level=max_mip_level)
    uv = uv.to(tex.dtype)
    if fm in _FILTERS:
        return _sample(tex, uv, fm, boundary_mode, ext)
    if uv_da is None or not isinstance(uv_da, Tensor) or uv_da.shape != uv.shape[:3] + (4,):
        raise BadInputError(f"filter_mode {fm!r} needs uv_da of shape (B, H, W, 4) (interpolate with diff_attrs)")
    levels = [tex] + list(mip if mip is not None else texture_mip(tex, max_mip_level))
    if max_mip_level is not None:
        levels = levels[: max_mip_level + 1]
    Ht, Wt = tex.shape[1], tex.shape[2]
    # isotropic level of detail: log2 of the longer screen-pixel footprint axis, in level-0 texels
    dx = torch.stack([uv_da[..., 0] * Wt, uv_da[..., 2] * Ht], -1)
    dy = torch.stack([uv_da[..., 1] * Wt, uv_da[..., 3] * Ht], -1)
    rho2 = torch.maximum((dx * dx).sum(-1), (dy * dy).sum(-1)).clamp(min=1e-20)
    lod = 0.5 * torch.log2(rho2)
    if mip_level_bias is not None:
        lod = lod + mip_level_bias
    lod = lod.clamp(0, len(levels) - 1)
    if fm == "linear-mipmap-nearest":
        lod = torch.floor(lod + 0.5)
    out = None
    for li, lv in enumerate(levels):
        w = (1 - (lod - li).abs()).clamp(min=0)[..., None]  # trilinear weights: two levels per pixel
        if not bool((w > 0).any()):
            continue
        smp = _sample(lv, uv, "linear", boundary_mode, ext) * w
        out = smp if out is None else out + smp
    return out


def texture_mip(tex: Tensor, max_mip_level: Optional[int] = None) -> list[Tensor]:
    """Mip pyramid levels 1..L of ``tex`` (B,Ht,Wt,C) by 2x2 box filtering (differentiable), down to 1x1."""
    out: list[Tensor] = []
    cur = tex
    while (cur.shape[1] > 1 or cur.shape[2] > 1) and (max_mip_level is None or len(out) < max_mip_level):
        x = cur.permute(0, 3, 1, 2)
        kh, kw = (2 if cur.shape[1] > 1 else 1), (2 if cur.shape[2] > 1 else 1)
        cur = torch.nn.functional.avg_pool2d(x, (kh, kw), ceil_mode=True).permute(0, 2, 3, 1).contiguous()
        out.append(cur)
    return out


def _sample(tex: Tensor, uv: Tensor, fm: str, boundary_mode: str, ext) -> Tensor:
    if ext is None:
        return ref.texture(tex, uv, fm, boundary_mode)
    return _Texture.apply(tex.contiguous(), uv.contiguous(), _FILTERS[fm], _BOUNDARY[boundary_mode], ext)


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, topology_hash: Optional[Tensor] = None,
              pos_gradient_boost: float = 1.0, backend: str = "auto") -> Tensor:
    """Antialias silhouette edges analytically, with gradients to vertex positions.

    Args:
        color: (B,H,W,C) image to antialias (background already composited).
        rast: (B,H,W,4) from :func:`rasterize` with the same ``pos``/``tri``.
        pos: (B,V,4) or (V,4) clip-space positions.
        tri: (F,3) int32.
        topology_hash: optional (F,3) int32 from :func:`triangle_adjacency` (reuse it across calls
            with the same ``tri``; computed on the fly otherwise). nvdiffrast's own hash object is
            accepted with ``backend="nvdiffrast"``.
        pos_gradient_boost: multiplies the gradient to ``pos`` (nvdiffrast's knob).

    Returns:
        (B,H,W,C) antialiased image, differentiable w.r.t. ``color`` and ``pos``.
    """
    _check_rast(rast)
    _check_pos(pos)
    if not isinstance(color, Tensor) or color.ndim != 4 or color.shape[:3] != rast.shape[:3]:
        raise BadInputError(f"color must be (B, H, W, C) matching rast {tuple(rast.shape[:3])}, got {getattr(color, 'shape', type(color))}")
    tri = _check_tri(tri, pos.shape[-2])
    name, ext = get_mesh_backend(backend, color)
    if name == "nvdiffrast":
        import nvdiffrast.torch as dr

        th = None if isinstance(topology_hash, Tensor) else topology_hash  # our adjacency is not nvdiffrast's hash
        return dr.antialias(color.contiguous(), rast, pos.contiguous(), tri, topology_hash=th, pos_gradient_boost=pos_gradient_boost)
    adj = topology_hash if isinstance(topology_hash, Tensor) else ref.triangle_adjacency(tri)
    adj = adj.to(device=tri.device, dtype=torch.int32).contiguous()
    if pos_gradient_boost != 1.0:
        pos = _GradScale.apply(pos, float(pos_gradient_boost))
    color = color.to(pos.dtype) if color.dtype != pos.dtype else color
    if ext is None:
        return ref.antialias(color, rast, pos, tri, adj)
    p = (pos if pos.ndim == 3 else pos[None]).contiguous()
    return _Antialias.apply(color.contiguous(), rast.contiguous(), p, tri, adj, ext)


class _GradScale(torch.autograd.Function):
    """Identity forward, gradient multiplied by ``k`` (pos_gradient_boost)."""

    @staticmethod
    def forward(ctx, x, k):  # noqa: D102
        ctx.k = k
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g * ctx.k, None
