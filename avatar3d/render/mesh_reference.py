"""Pure-PyTorch reference implementations of the mesh ops (slow, obviously correct, autograd-differentiable).

They define the semantics the C++/CUDA kernels (``avatar3d/csrc/mesh_*``) must reproduce; tests compare
against them. Conventions are nvdiffrast's (see :mod:`avatar3d.render.mesh` for shapes):

* pixel ``(row i, col j)`` has its centre at NDC ``x = (2j+1)/W - 1``, ``y = (2i+1)/H - 1``
  (so image row 0 is NDC ``y = -1``);
* a pixel is covered by triangle ``(v0, v1, v2)`` when the homogeneous barycentrics of its centre
  are all non-negative (homogeneous rasterization: no clipping needed, triangles crossing the
  eye plane are handled exactly); pixel centres exactly on a shared edge go to one triangle only
  (a top-left-style rule on the interior-facing edge normal);
* the depth ``z/w`` must lie in ``[-1, 1]`` (near/far clipping); the smallest depth wins, ties go
  to the smallest triangle id;
* ``rast = (u, v, z/w, id + 1)`` with the surface point ``u*v0 + v*v1 + (1-u-v)*v2``.

The floating-point evaluation order here matches ``avatar3d/csrc/mesh_math.h`` so that the CPU extension
produces the same triangle ids, not just close values.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["rasterize", "interpolate", "texture", "antialias", "triangle_adjacency", "pixel_centers"]


def pixel_centers(n: int, device, dtype=torch.float32) -> Tensor:
    """NDC coordinates of ``n`` pixel centres along one axis: ``(2i+1)/n - 1``, shape (n,)."""
    return (2 * torch.arange(n, device=device) + 1).to(dtype) / n - 1.0


def cross(a: Tensor, b: Tensor) -> Tensor:
    """Cross product over the last dim (3), written out so the float order matches the C++."""
    return torch.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                        a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                        a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def _edge_normals(vx: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of adj(M) for M = [v0 v1 v2] in (x, y, w): n_i = v_j x v_k. vx (..., 3, 3) -> ((..., 3, 3), det (...))."""
    v0, v1, v2 = vx[..., 0, :], vx[..., 1, :], vx[..., 2, :]
    n = torch.stack([cross(v1, v2), cross(v2, v0), cross(v0, v1)], -2)
    det = (n[..., 0, 0] * v0[..., 0] + n[..., 0, 1] * v0[..., 1]) + n[..., 0, 2] * v0[..., 2]
    return n, det


def _inside(s: Tensor, n: Tensor, det: Tensor) -> Tensor:
    """Coverage test with tie rule. s (P,3) edge values, n (P,3,3) edge normals, det (P,) -> (P,) bool."""
    sg = torch.where(det > 0, 1.0, -1.0).to(s.dtype)[:, None]
    ss = s * sg
    a, b, c = n[..., 0] * sg, n[..., 1] * sg, n[..., 2] * sg
    tie = (a > 0) | ((a == 0) & (b > 0)) | ((a == 0) & (b == 0) & (c > 0))
    ok = (ss > 0) | ((ss == 0) & tie)
    return ok.all(-1) & (det != 0)


def _bbox(p: Tensor, H: int, W: int) -> Tensor:
    """Inclusive pixel-index boxes (F,4) = (x0, x1, y0, y1) of triangles p (F,3,4); empty when x1 < x0.

    Same float formulas as ``a3d_tri_bbox`` in ``avatar3d/csrc/mesh_math.h``.
    """
    w = p[..., 3]
    allpos = (w > 0).all(-1)
    anypos = (w > 0).any(-1)
    ws = torch.where(w > 0, w, torch.ones_like(w))
    sx = (p[..., 0] / ws + 1) * (W * 0.5) - 0.5
    sy = (p[..., 1] / ws + 1) * (H * 0.5) - 0.5
    x0 = torch.floor(sx.min(-1).values).clamp(0, W).long()
    x1 = torch.ceil(sx.max(-1).values).clamp(-1, W - 1).long()
    y0 = torch.floor(sy.min(-1).values).clamp(0, H).long()
    y1 = torch.ceil(sy.max(-1).values).clamp(-1, H - 1).long()
    # a triangle crossing the eye plane (some w <= 0 < other w) can cover anything: test every pixel
    cross = anypos & ~allpos
    x0 = torch.where(cross, 0, x0)
    x1 = torch.where(cross, W - 1, x1)
    y0 = torch.where(cross, 0, y0)
    y1 = torch.where(cross, H - 1, y1)
    dead = ~anypos | ~torch.isfinite(p).all(-1).all(-1) | (x1 < x0) | (y1 < y0)
    return torch.stack([x0, torch.where(dead, x0 - 1, x1), y0, torch.where(dead, y0 - 1, y1)], -1)


def rasterize(pos: Tensor, tri: Tensor, resolution: tuple[int, int], ranges: Optional[Tensor] = None,
              chunk_pairs: int = 1 << 22) -> Tensor:
    """Reference rasterizer. pos (B,V,4) or (V,4) clip space, tri (F,3) int -> rast (B,H,W,4).

    Differentiable w.r.t. ``pos`` through ``(u, v, z/w)`` by autograd. ``ranges`` (B,2) int32
    ``(first_triangle, count)`` per view when ``pos`` is (V,4) (nvdiffrast's range mode).
    """
    H, W = int(resolution[0]), int(resolution[1])
    if pos.ndim == 2:
        B = 1 if ranges is None else int(ranges.shape[0])
        posb = pos[None].expand(B, -1, -1)
    else:
        B = pos.shape[0]
        posb = pos
    tri = tri.long()
    F = tri.shape[0]
    dev, dt = pos.device, pos.dtype
    px = pixel_centers(W, dev, dt)
    py = pixel_centers(H, dev, dt)
    out = []
    for b in range(B):
        if ranges is not None:
            f0, fc = int(ranges[b, 0]), int(ranges[b, 1])
            tids = torch.arange(f0, min(f0 + fc, F), device=dev)
        else:
            tids = torch.arange(F, device=dev)
        bid = torch.full((H * W,), -1, dtype=torch.long, device=dev)
        if len(tids) and H * W:
            with torch.no_grad():
                bid = _visible_ids(posb[b][tri[tids]].detach(), tids, H, W, px, py, chunk_pairs)
        out.append(_resolve(posb[b], tri, bid, H, W, px, py))
    return torch.stack(out, 0)


def _visible_ids(p: Tensor, tids: Tensor, H: int, W: int, px: Tensor, py: Tensor, chunk_pairs: int) -> Tensor:
    """Per-pixel winning triangle id (H*W,) long, -1 for background. p (F,3,4) clip-space corners."""
    dev = p.device
    bb = _bbox(p, H, W)
    nx = (bb[:, 1] - bb[:, 0] + 1).clamp(min=0)
    ny = (bb[:, 3] - bb[:, 2] + 1).clamp(min=0)
    cnt = nx * ny
    cum = torch.cumsum(cnt, 0)
    pixs, ds, ts = [], [], []
    start = 0
    # enumerate (triangle, pixel) pairs inside each bounding box, a bounded number at a time
    while start < len(tids):
        base = int(cum[start - 1]) if start else 0
        end = int(torch.searchsorted(cum, torch.tensor(base + chunk_pairs, device=dev), right=True))
        end = max(end, start + 1)
        c = cnt[start:end]
        if int(c.sum()) > 0:
            ti = torch.repeat_interleave(torch.arange(start, end, device=dev), c)
            k = torch.arange(len(ti), device=dev) - torch.repeat_interleave(cum[start:end] - c, c)
            xx = bb[ti, 0] + k % nx[ti]
            yy = bb[ti, 2] + k // nx[ti]
            pt = p[ti]
            n, det = _edge_normals(pt[..., [0, 1, 3]])
            s = (n[..., 0] * px[xx][:, None] + n[..., 1] * py[yy][:, None]) + n[..., 2]
            ok = _inside(s, n, det)
            Z = (s[:, 0] * pt[:, 0, 2] + s[:, 1] * pt[:, 1, 2]) + s[:, 2] * pt[:, 2, 2]
            Wd = (s[:, 0] * pt[:, 0, 3] + s[:, 1] * pt[:, 1, 3]) + s[:, 2] * pt[:, 2, 3]
            d = Z / Wd
            ok = ok & (d >= -1) & (d <= 1)
            pixs.append((yy * W + xx)[ok])
            ds.append(d[ok])
            ts.append(tids[ti[ok]])
        start = end
    bid = torch.full((H * W,), -1, dtype=torch.long, device=dev)
    if not pixs:
        return bid
    pix, d, t = torch.cat(pixs), torch.cat(ds), torch.cat(ts)
    best = torch.full((H * W,), torch.inf, dtype=p.dtype, device=dev).scatter_reduce_(0, pix, d, "amin")
    win = d == best[pix]
    big = torch.iinfo(torch.long).max
    cand = torch.full((H * W,), big, dtype=torch.long, device=dev).scatter_reduce_(0, pix[win], t[win], "amin")
    return torch.where(cand < big, cand, bid)


def _resolve(pos: Tensor, tri: Tensor, bid: Tensor, H: int, W: int, px: Tensor, py: Tensor) -> Tensor:
    """Differentiable (u, v, z/w, id+1) image (H,W,4) for the winning ids bid (H*W,). pos (V,4)."""
    out = pos.new_zeros(H * W, 4)
    m = bid >= 0
    if m.any():
        idx = m.nonzero()[:, 0]
        pt = pos[tri[bid[idx]]]  # (P,3,4), keeps the autograd graph to pos
        n, det = _edge_normals(pt[..., [0, 1, 3]])
        s = (n[..., 0] * px[idx % W][:, None] + n[..., 1] * py[idx // W][:, None]) + n[..., 2]
        S = (s[:, 0] + s[:, 1]) + s[:, 2]
        Z = (s[:, 0] * pt[:, 0, 2] + s[:, 1] * pt[:, 1, 2]) + s[:, 2] * pt[:, 2, 2]
        Wd = (s[:, 0] * pt[:, 0, 3] + s[:, 1] * pt[:, 1, 3]) + s[:, 2] * pt[:, 2, 3]
        vals = torch.stack([s[:, 0] / S, s[:, 1] / S, Z / Wd, (bid[idx] + 1).to(pos.dtype)], -1)
        out = out.index_put((idx,), vals)
    return out.view(H, W, 4)


def interpolate(attr: Tensor, rast: Tensor, tri: Tensor, rast_db: Optional[Tensor] = None,
                diff_attrs: Optional[list[int]] = None) -> tuple[Tensor, Optional[Tensor]]:
    """Reference interpolate. attr (B,V,A) or (V,A), rast (B,H,W,4), tri (F,3) -> ((B,H,W,A), (B,H,W,2*len(diff_attrs)) or None)."""
    B, H, W, _ = rast.shape
    a = attr if attr.ndim == 3 else attr[None].expand(B, -1, -1)
    tid = rast[..., 3].long() - 1  # (B,H,W)
    m = tid >= 0
    if tri.shape[0] == 0:  # nothing rasterized; keep the graph to attr for a zero gradient
        out = a[:, :1, None, :].expand(B, H, W, -1) * 0
        da_n = 0 if diff_attrs is None else 2 * (a.shape[-1] if diff_attrs == "all" else len(diff_attrs))
        return out, (rast.new_zeros(B, H, W, da_n) if diff_attrs is not None and rast_db is not None else None)
    t = tri.long()[tid.clamp(min=0)]  # (B,H,W,3)
    bidx = torch.arange(B, device=rast.device).view(B, 1, 1, 1).expand_as(t)
    av = a[bidx, t]  # (B,H,W,3,A)
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * av[..., 0, :] + v * av[..., 1, :] + (1 - u - v) * av[..., 2, :]
    out = torch.where(m[..., None], out, torch.zeros_like(out))
    da = None
    if diff_attrs is not None and rast_db is not None:
        idx = list(range(a.shape[-1])) if diff_attrs == "all" else list(diff_attrs)
        d0 = av[..., 0, idx] - av[..., 2, idx]
        d1 = av[..., 1, idx] - av[..., 2, idx]
        dx = rast_db[..., 0:1] * d0 + rast_db[..., 2:3] * d1
        dy = rast_db[..., 1:2] * d0 + rast_db[..., 3:4] * d1
        da = torch.stack([dx, dy], -1).flatten(-2)  # (a0/dX, a0/dY, a1/dX, ...) as nvdiffrast
        da = torch.where(m[..., None], da, torch.zeros_like(da))
    return out, da


def _wrap_index(i: Tensor, n: int, mode: str) -> tuple[Tensor, Tensor]:
    """Texel index under a boundary mode -> (index clamped into range, validity mask)."""
    if mode == "wrap":
        return torch.remainder(i, n), torch.ones_like(i, dtype=torch.bool)
    if mode == "clamp":
        return i.clamp(0, n - 1), torch.ones_like(i, dtype=torch.bool)
    ok = (i >= 0) & (i < n)
    return i.clamp(0, n - 1), ok


def texture(tex: Tensor, uv: Tensor, filter_mode: str = "linear", boundary_mode: str = "wrap") -> Tensor:
    """Reference bilinear / nearest texture lookup. tex (B,Ht,Wt,C) (B may be 1), uv (B,H,W,2) -> (B,H,W,C).

    Texel ``(row r, col c)`` has its centre at ``uv = ((c+0.5)/Wt, (r+0.5)/Ht)`` (nvdiffrast).
    """
    B = uv.shape[0]
    Ht, Wt, C = tex.shape[1], tex.shape[2], tex.shape[3]
    t = tex.expand(B, -1, -1, -1) if tex.shape[0] == 1 else tex
    flat = t.reshape(B, Ht * Wt, C)
    x = uv[..., 0] * Wt - 0.5
    y = uv[..., 1] * Ht - 0.5
    bsel = torch.arange(B, device=uv.device).view(B, 1, 1)

    def fetch(ix: Tensor, iy: Tensor) -> Tensor:
        jx, okx = _wrap_index(ix, Wt, boundary_mode)
        jy, oky = _wrap_index(iy, Ht, boundary_mode)
        v = flat[bsel.expand_as(jx), jy * Wt + jx]
        return v * (okx & oky)[..., None].to(v.dtype)

    if filter_mode == "nearest":
        return fetch(torch.floor(x + 0.5).long(), torch.floor(y + 0.5).long())
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0f)[..., None], (y - y0f)[..., None]
    x0, y0 = x0f.long(), y0f.long()
    t00, t10 = fetch(x0, y0), fetch(x0 + 1, y0)
    t01, t11 = fetch(x0, y0 + 1), fetch(x0 + 1, y0 + 1)
    return (1 - fy) * ((1 - fx) * t00 + fx * t10) + fy * ((1 - fx) * t01 + fx * t11)


def triangle_adjacency(tri: Tensor) -> Tensor:
    """For each triangle edge e = (tri[f,e], tri[f,(e+1)%3]) the other triangle sharing it: (F,3) int32, -1 if none.

    Non-manifold edges (3+ triangles) are treated as boundaries (-1): any of them may be a silhouette.
    """
    t = tri.long()
    F = t.shape[0]
    if F == 0:
        return torch.zeros(0, 3, dtype=torch.int32, device=tri.device)
    a = t
    b = t[:, [1, 2, 0]]
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    nv = int(t.max()) + 1
    key = lo * nv + hi
    order = torch.argsort(key, stable=True)
    ks = key[order]
    uniq, inv, counts = torch.unique_consecutive(ks, return_inverse=True, return_counts=True)
    adj = torch.full((F * 3,), -1, dtype=torch.long, device=tri.device)
    two = counts[inv] == 2
    first = torch.cat([torch.ones(1, dtype=torch.bool, device=tri.device), ks[1:] != ks[:-1]])
    pos_first = first.nonzero()[:, 0]
    # for 2-manifold edges the partner of slot k is the other slot of the same key
    grp_start = pos_first[inv]
    partner = torch.where(torch.arange(len(ks), device=tri.device) == grp_start, grp_start + 1, grp_start)
    partner = partner.clamp(max=len(ks) - 1)
    other_face = order[partner] // 3
    adj[order[two]] = other_face[two]
    return adj.view(F, 3).to(torch.int32)


def _screen(p: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """Clip-space points (...,4) -> pixel coordinates (sx, sy) where pixel i spans [i, i+1)."""
    return (p[..., 0] / p[..., 3] + 1) * (W * 0.5), (p[..., 1] / p[..., 3] + 1) * (H * 0.5)


def antialias(color: Tensor, rast: Tensor, pos: Tensor, tri: Tensor, adj: Optional[Tensor] = None) -> Tensor:
    """Reference silhouette antialiasing. color (B,H,W,C), rast (B,H,W,4), pos (B,V,4) or (V,4), tri (F,3) -> (B,H,W,C).

    For each horizontally / vertically adjacent pixel pair with different triangle ids, the nearer
    surface's triangle (background counts as infinitely far) is searched for a silhouette edge
    (a mesh boundary, or an edge whose neighbour triangle has the opposite screen orientation)
    crossing the segment between the two pixel centres. With ``t`` in [0, 1] the crossing's
    distance from the nearer pixel's centre, the pixel on the far side of the crossing point takes
    ``|t - 0.5|`` of the other pixel's colour. An edge is handled only along the axis it is closer
    to perpendicular to (a horizontal pair needs a mostly vertical edge), so no coverage is counted twice. The crossing depends on the edge's projected
    vertices, which gives gradients to ``pos``.
    """
    B, H, W, C = color.shape
    posb = pos if pos.ndim == 3 else pos[None].expand(B, -1, -1)
    tl = tri.long()
    if adj is None:
        adj = triangle_adjacency(tri)
    adj = adj.long()
    out = color
    tid = rast[..., 3].long() - 1
    depth = torch.where(tid >= 0, rast[..., 2], torch.full_like(rast[..., 2], torch.inf))
    for axis in (2, 1):  # horizontal pairs (along W), then vertical pairs (along H)
        n = color.shape[axis]
        if n < 2:
            continue
        ia = torch.arange(n - 1, device=color.device)
        ta, tb = tid.index_select(axis, ia), tid.index_select(axis, ia + 1)
        da, db = depth.index_select(axis, ia), depth.index_select(axis, ia + 1)
        diff = ta != tb
        a_front = da < db  # background has depth inf
        # ties (same depth, different ids) cannot be silhouettes of a nearer surface: skip
        diff = diff & (da != db)
        idx = diff.nonzero()  # (P,3) = (b, row, col) of the first pixel of the pair
        if idx.shape[0] == 0:
            continue
        bb, r, c = idx[:, 0], idx[:, 1], idx[:, 2]
        af = a_front[bb, r, c]
        f = torch.where(af, ta[bb, r, c], tb[bb, r, c])  # front triangle
        pf = posb[bb[:, None], tl[f]]  # (P,3,4)
        w = pf[..., 3].detach()
        vd = pf.detach()[..., [0, 1, 3]]
        det = _edge_normals(vd)[1]
        # pixel centres of the pair in pixel coordinates
        ca = torch.stack([c.to(color.dtype) + 0.5, r.to(color.dtype) + 0.5], -1)
        ax_i = 0 if axis == 2 else 1  # coordinate that varies along the pair
        ot_i = 1 - ax_i
        tsel = torch.full((len(bb),), -1.0, dtype=color.dtype, device=color.device)
        found = torch.zeros(len(bb), dtype=torch.bool, device=color.device)
        for e in range(3):
            j, k = e, (e + 1) % 3
            nb = adj[f, e]
            sil = nb < 0
            if (~sil).any():
                pn = posb[bb[:, None], tl[nb.clamp(min=0)]].detach()[..., [0, 1, 3]]
                dn = _edge_normals(pn)[1]
                sil = sil | ((dn > 0) != (det > 0)) | (dn == 0)
            ok = sil & (w[:, j] > 0) & (w[:, k] > 0) & ~found
            sxj, syj = _screen(pf[:, j], H, W)
            sxk, syk = _screen(pf[:, k], H, W)
            A = torch.stack([sxj, syj], -1)
            Bv = torch.stack([sxk, syk], -1)
            den = Bv[:, ot_i] - A[:, ot_i]
            # only edges closer to perpendicular to the pair's axis: each edge is handled along one axis
            ok = ok & (den != 0) & ((Bv[:, ax_i] - A[:, ax_i]).abs() <= den.abs())
            dens = torch.where(ok, den, torch.ones_like(den))
            tau = (ca[:, ot_i] - A[:, ot_i]) / dens
            cross = A[:, ax_i] + tau * (Bv[:, ax_i] - A[:, ax_i])
            tt = cross - ca[:, ax_i]  # 0 at the first pixel's centre, 1 at the second's
            ok = ok & (tau >= 0) & (tau <= 1) & (tt >= 0) & (tt <= 1)
            tsel = torch.where(ok, tt, tsel)
            found = found | ok
        if not found.any():
            continue
        sel = found.nonzero()[:, 0]
        bb, r, c, af, tt = bb[sel], r[sel], c[sel], af[sel], tsel[sel]
        t_front = torch.where(af, tt, 1 - tt)  # distance of the crossing from the nearer pixel's centre
        # alpha: how much of the pixel on the far side of the crossing the other surface covers
        alpha = (t_front - 0.5).abs()
        # the target pixel: the back pixel when the crossing lies beyond the midpoint, else the front one
        tgt_is_first = torch.where(t_front > 0.5, ~af, af)
        r2, c2 = (r, c + 1) if axis == 2 else (r + 1, c)
        tr, tc = torch.where(tgt_is_first, r, r2), torch.where(tgt_is_first, c, c2)
        sr, sc = torch.where(tgt_is_first, r2, r), torch.where(tgt_is_first, c2, c)
        delta = alpha[:, None] * (color[bb, sr, sc] - color[bb, tr, tc])
        out = out.index_put((bb, tr, tc), delta, accumulate=True)
    return out
