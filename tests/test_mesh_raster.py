"""CPU extension vs the pure-PyTorch reference: images, gradients, gradcheck (double precision)."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from avatar3d._ext import extension_error
from avatar3d.render import mesh as M
from avatar3d.render.backends import mesh_cpu_extension


@pytest.fixture(scope="module")
def cpu_ext():
    ext = mesh_cpu_extension()
    if ext is None:
        pytest.skip(f"CPU mesh extension unavailable: {extension_error('a3d_mesh_cpu')}")
    return ext


def random_scene(seed: int, B: int = 2, F: int = 60, soup: bool = True):
    """Random overlapping triangles (a soup, or a shared-vertex strip), all in front of the camera."""
    g = torch.Generator().manual_seed(seed)
    V = 3 * F if soup else F + 2
    pos = torch.empty(B, V, 4)
    pos[..., :2] = torch.rand(B, V, 2, generator=g) * 2.4 - 1.2
    pos[..., 2] = torch.rand(B, V, generator=g) * 1.6 - 0.8
    pos[..., 3] = torch.rand(B, V, generator=g) * 0.8 + 0.8
    pos[..., :3] *= pos[..., 3:4]  # keep NDC in range so most triangles are visible
    if soup:
        tri = torch.arange(V, dtype=torch.int32).view(F, 3)
    else:
        i = torch.arange(F, dtype=torch.int32)
        tri = torch.stack([i, i + 1, i + 2], -1)
    return pos, tri


def pipeline(backend, pos, tri, attr, tex, H, W):
    """rasterize -> interpolate -> texture -> antialias, returns (B,H,W,C)."""
    rast, _ = M.rasterize(pos, tri, (H, W), backend=backend)
    a, _ = M.interpolate(attr, rast, tri, backend=backend)
    t = M.texture(tex, a[..., :2].contiguous(), filter_mode="linear", boundary_mode="wrap", backend=backend)
    col = torch.cat([a[..., 2:], t], -1)
    return M.antialias(col.contiguous(), rast, pos, tri, backend=backend)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


@pytest.mark.parametrize("seed,soup,size", [(0, True, (37, 53)), (1, False, (64, 48)), (2, True, (1, 1)), (3, True, (16, 128))])
def test_forward_matches_reference(cpu_ext, seed, soup, size):
    pos, tri = random_scene(seed, soup=soup)
    H, W = size
    r_ref, db_ref = M.rasterize(pos, tri, (H, W), backend="reference")
    r_cpu, db_cpu = M.rasterize(pos, tri, (H, W), backend="cpu")
    same = r_ref[..., 3] == r_cpu[..., 3]
    # same evaluation order as the reference: identical triangle ids, not just close
    assert same.float().mean() >= 0.999
    if H * W > 1:
        assert (r_ref[..., 3] > 0).float().mean() > 0.3, "scene should cover a good part of the image"
    assert torch.allclose(r_ref[same], r_cpu[same], atol=1e-4, rtol=0)
    assert torch.allclose(db_ref[same], db_cpu[same], atol=1e-4, rtol=1e-4)
    attr = torch.randn(pos.shape[0], pos.shape[1], 5, generator=torch.Generator().manual_seed(seed))
    a_ref = M.interpolate(attr, r_ref, tri, backend="reference")[0]
    a_cpu = M.interpolate(attr, r_ref, tri, backend="cpu")[0]
    assert (a_ref - a_cpu).abs().max() <= 1e-4
    col = torch.rand(pos.shape[0], H, W, 3, generator=torch.Generator().manual_seed(seed))
    aa_ref = M.antialias(col, r_ref, pos, tri, backend="reference")
    aa_cpu = M.antialias(col, r_ref, pos, tri, backend="cpu")
    assert (aa_ref - aa_cpu).abs().max() <= 1e-4
    if H * W > 100:
        assert (aa_ref - col).abs().max() > 0.01, "antialias should change silhouette pixels"


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_reference(cpu_ext, seed):
    pos, tri = random_scene(seed, soup=bool(seed % 2 == 0), F=40)
    H, W = 40, 56
    g = torch.Generator().manual_seed(seed + 10)
    attr = torch.rand(pos.shape[0], pos.shape[1], 5, generator=g)
    tex = torch.rand(1, 12, 9, 3, generator=g)
    wgt = torch.randn(pos.shape[0], H, W, 6, generator=g)
    res = {}
    for be in ("reference", "cpu"):
        p, a, t = (x.clone().requires_grad_() for x in (pos, attr, tex))
        out = pipeline(be, p, tri, a, t, H, W)
        (out * wgt).sum().backward()
        res[be] = (out.detach(), p.grad, a.grad, t.grad)
    for name, ref, got in zip(("image", "pos", "attr", "tex"), res["reference"], res["cpu"]):
        assert got.abs().max() > 0, f"{name} gradient is all zero"
        assert rel_err(got, ref) < 1e-3, f"{name}: relative error {rel_err(got, ref):.2e}"


def test_head_mesh_matches_reference(cpu_ext):
    """The builtin head (25k triangles), rendered through the whole preview pipeline on both backends."""
    from avatar3d.models import load_head_model
    from avatar3d.render import framing_camera, render_mesh

    head = load_head_model("builtin")
    v = head().vertices.detach()
    K, vm = framing_camera(v[0], 72, 96, direction=(0.4, 0.1, 1.0))
    out = {}
    for be in ("reference", "cpu"):
        vv = v.clone().requires_grad_()
        img = render_mesh(vv, head.faces, K, vm, 72, 96, backend=be)
        (img * torch.linspace(-1, 1, 72)[None, None, :, None]).sum().backward()
        out[be] = (img.detach(), vv.grad)
    assert (out["cpu"][0] - out["reference"][0]).abs().max() <= 1e-4
    assert rel_err(out["cpu"][1], out["reference"][1]) < 1e-3
    assert out["cpu"][1].abs().sum() > 0


# ------------------------------------------------------------------------------------- gradcheck
TINY_POS = torch.tensor([[[-0.8, -0.7, 0.1, 1.0], [0.9, -0.5, 0.3, 1.2], [0.1, 0.8, 0.5, 0.9], [0.7, 0.9, -0.2, 1.1]]], dtype=torch.float64)
TINY_TRI = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
BACKENDS = ["cpu", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_rasterize(cpu_ext, backend):
    f = lambda p: M.rasterize(p, TINY_TRI, (5, 6), backend=backend)[0][..., :3]  # noqa: E731
    assert gradcheck(f, (TINY_POS.clone().requires_grad_(),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_interpolate(cpu_ext, backend):
    rast = M.rasterize(TINY_POS, TINY_TRI, (5, 6), backend=backend)[0]
    attr = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    uv = rast[..., :2].clone().requires_grad_()
    # the id channel is discrete, so only (u, v) are perturbed
    f = lambda a, b: M.interpolate(a, torch.cat([b, rast[..., 2:]], -1), TINY_TRI, backend=backend)[0]  # noqa: E731
    assert gradcheck(f, (attr, uv), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_gradcheck_texture(cpu_ext, backend, boundary):
    g = torch.Generator().manual_seed(3)
    tex = torch.rand(1, 4, 5, 2, dtype=torch.float64, generator=g).requires_grad_()
    uv = (torch.rand(2, 3, 3, 2, dtype=torch.float64, generator=g) * 1.4 - 0.2).requires_grad_()
    f = lambda t, u: M.texture(t, u, filter_mode="linear", boundary_mode=boundary, backend=backend)  # noqa: E731
    assert gradcheck(f, (tex, uv), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_antialias(cpu_ext, backend):
    rast = M.rasterize(TINY_POS, TINY_TRI, (5, 6), backend=backend)[0]
    col = torch.rand(1, 5, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    pos = TINY_POS.clone().requires_grad_()
    f = lambda c, p: M.antialias(c, rast, p, TINY_TRI, backend=backend)  # noqa: E731
    assert gradcheck(f, (col, pos), eps=1e-6, atol=1e-6)
    # silhouette edges really move colour and pass gradient to positions
    out = f(col, pos)
    assert (out - col).abs().sum() > 0.1
    out.sum().backward()
    assert pos.grad.abs().sum() > 0


def test_texture_nearest_matches_reference(cpu_ext):
    g = torch.Generator().manual_seed(5)
    tex = torch.rand(2, 7, 5, 3, generator=g)
    uv = torch.rand(2, 9, 11, 2, generator=g) * 3 - 1
    for bm in ("wrap", "clamp", "zero"):
        a = M.texture(tex, uv, filter_mode="nearest", boundary_mode=bm, backend="reference")
        b = M.texture(tex, uv, filter_mode="nearest", boundary_mode=bm, backend="cpu")
        assert (a - b).abs().max() <= 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_mipmap_filters(cpu_ext, backend):
    """Trilinear mipmapping: LOD 0 equals bilinear, a 16-texel footprint on a 16x16 checkerboard gives its mean."""
    ii = torch.arange(16)
    tex = ((ii[:, None] + ii[None, :]) % 2).float()[None, :, :, None].expand(1, 16, 16, 2).contiguous()
    g = torch.Generator().manual_seed(8)
    uv = torch.rand(1, 6, 7, 2, generator=g)
    small = torch.full((1, 6, 7, 4), 0.5 / 16)  # half a texel per pixel: LOD < 0 -> level 0
    lin = M.texture(tex, uv, filter_mode="linear", backend=backend)
    assert torch.allclose(M.texture(tex, uv, uv_da=small, filter_mode="linear-mipmap-linear", backend=backend), lin, atol=1e-6)
    big = torch.zeros(1, 6, 7, 4)
    big[..., 0] = big[..., 3] = 16 / 16  # 16 texels per pixel -> LOD 4 = the 1x1 level
    out = M.texture(tex, uv, uv_da=big, filter_mode="linear-mipmap-linear", backend=backend)
    assert torch.allclose(out, torch.full_like(out, 0.5), atol=1e-5)
    mid = M.texture(tex, uv, uv_da=big * 0.25, filter_mode="linear-mipmap-nearest", backend=backend)  # LOD 2
    assert torch.allclose(mid, torch.full_like(mid, 0.5), atol=1e-5)  # a 4x4 box of a 1-texel checkerboard
    # gradients reach the texture through every level used, and the UVs
    t64 = torch.rand(1, 4, 4, 1, dtype=torch.float64, generator=g).requires_grad_()
    u64 = (torch.rand(1, 2, 3, 2, dtype=torch.float64, generator=g) * 0.8 + 0.1).requires_grad_()
    da = torch.full((1, 2, 3, 4), 0.6, dtype=torch.float64)  # LOD ~1.8: levels 1 and 2 blended
    f = lambda t, u: M.texture(t, u, uv_da=da, filter_mode="linear-mipmap-linear", backend=backend)  # noqa: E731
    assert gradcheck(f, (t64, u64), eps=1e-6, atol=1e-6)
