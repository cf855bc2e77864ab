"""Differentiable tile-based Gaussian splatting (gsplat conventions), with interchangeable backends.

``rasterize_gaussians`` projects 3D Gaussians with EWA splatting and composites them front to back per
16x16 tile. The extensions project with explicit backward passes; when ``viewmats`` or ``Ks`` require
gradients the PyTorch projection (``gaussians_reference.project_gaussians``, autograd) is used instead.

* ``"cpu"``   - our C++/OpenMP extension (``avatar3d/csrc/gs_project_cpu.cpp``, ``gs_bin_cpu.cpp``, ``gs_raster_cpu.cpp``),
  explicit backward;
* ``"cuda"``  - our CUDA extension (``avatar3d/csrc/gs_raster.cu``, ``gs_project.cu``), binning with torch ops;
* ``"torch"`` - the pure-PyTorch reference (per-tile dense compositing; slow, autograd);
* ``"gsplat"``- ``gsplat.rasterization`` when gsplat with its CUDA build is installed;
* ``"auto"``  - ``cuda`` on CUDA tensors, else ``cpu``, else ``torch`` when a build failed.

Depth and normals are composited as extra feature channels, so every backend handles them alike
(``depth_mode="none"`` leaves depth out: one channel less to composite).

Forward only (autograd off, or no input needing gradients) the CPU backend calls the extension directly
(:func:`_render_cpu`): no autograd records and no per-pixel list ends kept for a backward pass; the images
are the same, bit for bit.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from .._ext import extension_error, load_extension
from . import gaussians_reference as ref
from .gaussians_reference import TILE_SIZE, project_gaussians

BACKENDS = ("auto", "cpu", "cuda", "torch", "gsplat")
_CPU_SOURCES = ["gs_cpu_bind.cpp", "gs_raster_cpu.cpp", "gs_bin_cpu.cpp", "gs_project_cpu.cpp", "gs_pose_cpu.cpp"]
_CUDA_SOURCES = ["gs_raster_cuda_bind.cpp", "gs_raster.cu", "gs_project.cu"]


def _cpu_ext():
    return load_extension("a3d_gs_cpu", _CPU_SOURCES)


def cpu_extension():
    """The CPU Gaussian extension (built on first use; also poses triangle-bound Gaussians), or None when it
    cannot be built or ``AVATAR3D_NO_EXT`` is set."""
    return _cpu_ext()


def _cuda_ext():
    return load_extension("a3d_gs", _CUDA_SOURCES, cuda=True)


def _gsplat_rasterization():
    try:
        from gsplat import rasterization  # noqa: F401  (imports fine without its CUDA build)
        from gsplat.cuda._backend import _C
    except Exception:  # ImportError or a failed JIT build inside gsplat
        return None
    return rasterization if _C is not None else None


def gaussian_backend_status() -> Dict[str, str]:
    """One line per backend for ``avatar3d info``: ``{"cpu": "ok (2 threads)", ...}`` (builds the CPU ext)."""
    out: Dict[str, str] = {"torch": "ok (PyTorch reference, slow)"}
    ext = _cpu_ext()
    if ext is not None:
        out["cpu"] = f"ok ({ext.num_threads()} OpenMP threads, {ext.simd()})"
    else:
        out["cpu"] = f"unavailable: {extension_error('a3d_gs_cpu')}"
    if torch.cuda.is_available():
        cx = _cuda_ext()
        out["cuda"] = "ok (unmeasured until a GPU benchmark run exists)" if cx is not None else f"unavailable: {extension_error('a3d_gs_cuda')}"
    else:
        out["cuda"] = "unavailable: no CUDA device"
    try:
        import gsplat

        # do not import gsplat.cuda._backend here: on CUDA machines that JIT-builds gsplat (minutes)
        need = "selectable with backend='gsplat'" if torch.cuda.is_available() else "needs CUDA tensors"
        out["gsplat"] = f"gsplat {gsplat.__version__} installed ({need})"
    except Exception:
        out["gsplat"] = "not installed"
    return out


# ----------------------------------------------------------------------------------------------------
# binning with torch ops (device-agnostic; the CUDA backend uses it, tests compare it with the C++ one)


def bin_gaussians_torch(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int) -> Tuple[Tensor, Tensor]:
    """Per-tile depth-sorted Gaussian lists: (tile_offsets (C*tiles+1,) int64, flat_ids (M,) int32).

    means2d (C,N,2), radii (C,N,2), depths (C,N). Tile t of camera c owns
    ``flat_ids[offsets[c*tiles+t] : offsets[c*tiles+t+1]]`` (Gaussian indices, front to back, ties by index).
    """
    C, N = depths.shape
    tw, th = -(-width // TILE_SIZE), -(-height // TILE_SIZE)
    T = tw * th
    dev = means2d.device
    valid = (radii > 0).all(-1)
    # rank of each Gaussian in its camera's depth order (invalid ones pushed last, never emitted)
    key = torch.where(valid, depths.detach().float(), torch.full_like(depths, float("inf"), dtype=torch.float32))
    order = torch.sort(key, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=dev).expand(C, N).contiguous())
    rect = ref.tile_ranges(means2d, radii, width, height)  # (C,N,4)
    nx, ny = (rect[..., 1] - rect[..., 0]).clamp_min(0), (rect[..., 3] - rect[..., 2]).clamp_min(0)
    count = torch.where(valid, nx * ny, torch.zeros_like(nx)).reshape(-1)
    total = int(count.sum())
    src = torch.repeat_interleave(torch.arange(C * N, device=dev), count)  # flat (c*N+n) per intersection
    first = torch.cumsum(count, 0) - count
    local = torch.arange(total, device=dev) - first[src]  # index within the Gaussian's rectangle
    r = rect.reshape(-1, 4)[src]
    w = nx.reshape(-1)[src].clamp_min(1)
    tx, ty = r[:, 0] + local % w, r[:, 2] + local // w
    cam = src // N
    tile_key = cam * T + ty * tw + tx
    sort_key = tile_key * N + rank.reshape(-1)[src]
    perm = torch.sort(sort_key).indices
    flat_ids = (src[perm] % N).to(torch.int32)
    counts = torch.bincount(tile_key, minlength=C * T)
    offsets = torch.zeros(C * T + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(counts, 0)
    return offsets, flat_ids


# ----------------------------------------------------------------------------------------------------
# autograd glue around the extensions


def _stream_arg(t: Tensor) -> tuple:
    """The CUDA extension takes the current stream as a trailing int; the CPU one takes nothing."""
    return (torch.cuda.current_stream(t.device).cuda_stream,) if t.is_cuda else ()


class _RasterizeExt(torch.autograd.Function):
    """Compositing with an extension module ``ext`` (forward/backward with identical signatures).

    The composited channels come back already split at ``splits`` (e.g. colour | depth | normals)
    as separate tensors: slicing one packed output would make autograd zero-fill a full-size gradient
    per slice (several image-sized fills per backward, measurable at 512^2).
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, features, backgrounds, radii, depths, width, height, ext, is_cuda,
                splits):
        bg = backgrounds if backgrounds is not None else means2d.new_zeros(0)
        if is_cuda:
            offsets, ids = bin_gaussians_torch(means2d, radii, depths, width, height)
            images, alphas, last = ext.forward(means2d, conics, opacities, features, bg, offsets, ids, width, height,
                                               *_stream_arg(means2d))
        else:
            images, alphas, last, offsets, ids = ext.forward(means2d, conics, opacities, features, radii, depths, bg, width, height)
        ctx.save_for_backward(means2d, conics, opacities, features, radii, bg, alphas, last, offsets, ids)
        ctx.meta = (width, height, ext, backgrounds is not None, splits)
        ctx.mark_non_differentiable(last)
        parts = [p.contiguous() for p in torch.split(images, splits, dim=-1)] if len(splits) > 1 else [images]
        return (*parts, alphas)

    @staticmethod
    def backward(ctx, *grads):
        means2d, conics, opacities, features, radii, bg, alphas, last, offsets, ids = ctx.saved_tensors
        width, height, ext, has_bg, splits = ctx.meta
        C = features.shape[0]
        v_parts = [g if g is not None else features.new_zeros(C, height, width, n) for g, n in zip(grads[:-1], splits)]
        v_images = (torch.cat(v_parts, -1) if len(v_parts) > 1 else v_parts[0]).contiguous()
        v_alphas = grads[-1].contiguous() if grads[-1] is not None else features.new_zeros(C, height, width, 1)
        vm, vc, vo, vf, vb = ext.backward(means2d, conics, opacities, features, radii, bg, alphas, last, offsets, ids,
                                          v_images, v_alphas, width, height, *_stream_arg(means2d))
        return vm, vc, vo, vf, (vb if has_bg else None), None, None, None, None, None, None, None


class _ProjectExt(torch.autograd.Function):
    """EWA projection with an extension's explicit backward (cameras fixed: no viewmat/K gradients)."""

    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, width, height, near, far, eps2d, ext):
        radii, means2d, depths, conics = ext.project_forward(means, quats, scales, viewmats, Ks, width, height, near, far,
                                                             eps2d, *_stream_arg(means))
        ctx.save_for_backward(means, quats, scales, viewmats, Ks)
        ctx.meta = (width, height, near, far, eps2d, ext)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics

    @staticmethod
    def backward(ctx, _v_radii, v_means2d, v_depths, v_conics):
        means, quats, scales, viewmats, Ks = ctx.saved_tensors
        width, height, near, far, eps2d, ext = ctx.meta
        z = lambda g, like: (torch.zeros_like(like) if g is None else g.contiguous())  # noqa: E731
        C, N = viewmats.shape[0], means.shape[0]
        v_means2d = z(v_means2d, means.new_empty(C, N, 2))
        v_depths = z(v_depths, means.new_empty(C, N))
        v_conics = z(v_conics, means.new_empty(C, N, 3))
        vm, vq, vs = ext.project_backward(means, quats, scales, viewmats, Ks, width, height, near, far, eps2d,
                                          v_means2d, v_depths, v_conics, *_stream_arg(means))
        return vm, vq, vs, None, None, None, None, None, None, None, None


def project_gaussians_ext(means, quats, scales, viewmats, Ks, width, height, near_plane=0.01, far_plane=1e10,
                          eps2d=0.3, backend="cpu"):
    """Same contract as ``gaussians_reference.project_gaussians`` (minus covars2d), with our extension.

    Returns radii (C,N,2) int32, means2d (C,N,2), depths (C,N), conics (C,N,3). Gradients flow to
    means/quats/scales only; use the reference projection when cameras need gradients.
    """
    ext = _cpu_ext() if backend == "cpu" else _cuda_ext()
    if ext is None or not hasattr(ext, "project_forward"):
        raise ValueError(f"the {backend} Gaussian extension is unavailable.")
    c = lambda t: t.contiguous()  # noqa: E731
    return _ProjectExt.apply(c(means), c(quats), c(scales), c(viewmats.to(means.dtype)), c(Ks.to(means.dtype)),
                             int(width), int(height), float(near_plane), float(far_plane), float(eps2d), ext)


def _resolve_backend(backend: str, device: torch.device):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if backend == "auto":
        ext = _cuda_ext() if device.type == "cuda" else _cpu_ext() if device.type == "cpu" else None
        return ("cuda" if device.type == "cuda" else "cpu", ext) if ext is not None else ("torch", None)
    if backend in ("cpu", "cuda"):
        if device.type != backend:
            raise ValueError(f"backend={backend!r} needs {backend.upper()} tensors, got tensors on {device}.")
        ext = _cpu_ext() if backend == "cpu" else _cuda_ext()
        if ext is None:
            warnings.warn(f"avatar3d: {backend} Gaussian extension unavailable; using the PyTorch reference.", RuntimeWarning, stacklevel=3)
            return "torch", None
        return backend, ext
    if backend == "gsplat":
        if _gsplat_rasterization() is None:
            raise ValueError("backend='gsplat' needs gsplat with its CUDA build (pip install gsplat) and CUDA tensors.")
        return "gsplat", None
    return "torch", None


def _check_inputs(means, quats, scales, opacities, features, viewmats, Ks, width, height, backgrounds, normals):
    def bad(name, want, t):
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}.")

    if means.ndim != 2 or means.shape[1] != 3:
        bad("means", "(N, 3)", means)
    N = means.shape[0]
    if quats.shape != (N, 4):
        bad("quats", f"({N}, 4) wxyz", quats)
    if scales.shape != (N, 3):
        bad("scales", f"({N}, 3)", scales)
    if opacities.shape != (N,):
        bad("opacities", f"({N},)", opacities)
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        bad("viewmats", "(C, 4, 4)", viewmats)
    C = viewmats.shape[0]
    if Ks.shape != (C, 3, 3):
        bad("Ks", f"({C}, 3, 3)", Ks)
    if not (features.ndim == 2 and features.shape[0] == N) and not (features.ndim == 3 and features.shape[:2] == (C, N)):
        bad("features", f"({N}, D) or ({C}, {N}, D)", features)
    if features.shape[-1] < 1:
        raise ValueError("features need at least one channel (D >= 1).")
    D = features.shape[-1]
    if backgrounds is not None and backgrounds.shape not in ((C, D), (D,)):
        bad("backgrounds", f"({C}, {D}) or ({D},)", backgrounds)
    if normals is not None and normals.shape != (N, 3):
        bad("normals", f"({N}, 3)", normals)
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"width and height must be positive integers, got {width}x{height}.")


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    features: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    backgrounds: Optional[Tensor] = None,
    normals: Optional[Tensor] = None,
    depth_mode: str = "expected",
    eps2d: float = 0.3,
    backend: str = "auto",
) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor], Dict[str, Any]]:
    """Render 3D Gaussians into C pinhole cameras (gsplat ``rasterization`` conventions).

    Args:
        means: (N, 3) centres in world units (metres).
        quats: (N, 4) rotations, wxyz, need not be normalised.
        scales: (N, 3) standard deviations along the rotated axes (metres, already activated).
        opacities: (N,) in [0, 1] (already activated).
        features: (N, D) or (C, N, D) any channel count (e.g. RGB), composited linearly.
        viewmats: (C, 4, 4) world->camera, OpenCV camera (x right, y down, looks along +z).
        Ks: (C, 3, 3) pixel intrinsics; pixel (x, y) covers [x, x+1) x [y, y+1), row 0 = top.
        width, height: image size in pixels.
        near_plane, far_plane: camera-z culling range (metres).
        backgrounds: (C, D) or (D,) colour behind the Gaussians; default black.
        normals: optional (N, 3) per-Gaussian normals (any frame), composited like features.
        depth_mode: "expected" (sum w z / alpha, 0 where empty), "accumulated" (sum w z, gsplat "D") or "none"
            (no depth composited; depths is None).
        eps2d: low-pass dilation added to 2D covariances (gsplat default 0.3, antialiased=False).
        backend: "auto", "cpu", "cuda", "torch" or "gsplat" (see module docstring).

    Returns:
        images (C, H, W, D), alphas (C, H, W, 1), depths (C, H, W, 1) (None with depth_mode "none"), normals (C, H, W, 3) or None
        (un-normalised weighted sum), and meta with "radii" (C, N, 2) int32, "means2d" (C, N, 2),
        "conics" (C, N, 3), "depths" (C, N), "tile_size", "backend".
    """
    _check_inputs(means, quats, scales, opacities, features, viewmats, Ks, width, height, backgrounds, normals)
    if depth_mode not in ("expected", "accumulated", "none"):
        raise ValueError(f"depth_mode must be 'expected', 'accumulated' or 'none', got {depth_mode!r}.")
    width, height = int(width), int(height)
    C, N, D = viewmats.shape[0], means.shape[0], features.shape[-1]
    dt = means.dtype
    if dt not in (torch.float32, torch.float64):
        raise ValueError(f"Gaussian parameters must be float32 or float64, got {dt}.")
    name, ext = _resolve_backend(backend, means.device)
    if name == "cuda" and dt != torch.float32:
        name, ext = "torch", None  # the CUDA kernels are float32-only; double (gradcheck) uses the reference
    if backgrounds is not None and backgrounds.ndim == 1:
        backgrounds = backgrounds.expand(C, D)
    if name == "cpu" and not _needs_grad(means, quats, scales, opacities, features, viewmats, Ks, backgrounds, normals):
        return _render_cpu(ext, means, quats, scales, opacities, features, viewmats, Ks, width, height, near_plane,
                           far_plane, backgrounds, normals, depth_mode, eps2d)
    if name == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, features, viewmats, Ks, width, height, near_plane,
                                 far_plane, backgrounds, normals, depth_mode, eps2d)

    if name != "torch" and hasattr(ext, "project_forward") and not (viewmats.requires_grad or Ks.requires_grad):
        prj = _ProjectExt.apply(means.contiguous(), quats.to(dt).contiguous(), scales.to(dt).contiguous(),
                                viewmats.to(dt).contiguous(), Ks.to(dt).contiguous(), width, height, float(near_plane),
                                float(far_plane), float(eps2d), ext)
        radii, means2d, depths, conics = prj
    else:  # reference projection: autograd also reaches viewmats and Ks
        radii, means2d, depths, conics, _ = project_gaussians(means, quats, scales, viewmats, Ks, width, height,
                                                              near_plane, far_plane, eps2d)
    feats, bg, splits = _channels(features, depths, normals, backgrounds, depth_mode, C, N, dt)
    opac = opacities.to(dt).expand(C, N)
    meta = {"radii": radii, "means2d": means2d, "conics": conics, "depths": depths, "tile_size": TILE_SIZE, "backend": name}
    if name == "torch":
        img, alphas = ref.rasterize_reference(means2d, conics, opac, feats, radii, depths, width, height, bg)
        parts = torch.split(img, splits, dim=-1)
    else:
        c = lambda t: t.contiguous()  # noqa: E731
        *parts, alphas = _RasterizeExt.apply(c(means2d), c(conics), c(opac), c(feats), None if bg is None else c(bg),
                                             c(radii), c(depths.detach()), width, height, ext, name == "cuda", splits)
    return _outputs(parts, alphas, normals, depth_mode) + (meta,)


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd will record through any of ``tensors`` (None entries ignored)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _channels(features: Tensor, depths: Tensor, normals: Optional[Tensor], backgrounds: Optional[Tensor],
              depth_mode: str, C: int, N: int, dt: torch.dtype) -> Tuple[Tensor, Optional[Tensor], list]:
    """What is composited: features (C, N, D') = colour | depth (unless depth_mode "none") | normals, the
    background (C, D') (0 behind depth and normals) or None, and the channel counts of those parts."""
    D = features.shape[-1]
    feats = features if features.ndim == 3 else features.expand(C, N, D)
    extra = ([depths[..., None]] if depth_mode != "none" else []) + ([normals.to(dt).expand(C, N, 3)] if normals is not None else [])
    splits = [D] + [e.shape[-1] for e in extra]
    feats = torch.cat([feats.to(dt)] + extra, -1) if extra else feats.to(dt)
    bg = None
    if backgrounds is not None:
        bg = torch.cat([backgrounds.to(dt), backgrounds.new_zeros(C, feats.shape[-1] - D).to(dt)], -1) if extra else backgrounds.to(dt)
    return feats, bg, splits


def _outputs(parts, alphas: Tensor, normals: Optional[Tensor], depth_mode: str) -> tuple:
    """(images, alphas, depth or None, normals or None) from the composited parts (as :func:`_channels` split them)."""
    parts = list(parts)
    images = parts.pop(0)
    depth = parts.pop(0) if depth_mode != "none" else None
    nrm = parts.pop(0) if normals is not None else None
    if depth_mode == "expected":
        # 0 (not NaN) where nothing was drawn; the clamp keeps the gradient finite there too
        depth = depth / alphas.clamp_min(1e-10)
    return images, alphas, depth, nrm


def _render_cpu(ext, means, quats, scales, opacities, features, viewmats, Ks, width, height, near_plane, far_plane,
                backgrounds, normals, depth_mode, eps2d):
    """:func:`rasterize_gaussians` on the CPU extension without autograd (forward only): the projection and the
    compositing called directly (``ext.render`` keeps nothing for a backward pass). Same results, bit for bit."""
    dt = means.dtype
    C, N = viewmats.shape[0], means.shape[0]
    c = lambda t: t.to(dt).contiguous()  # noqa: E731
    radii, means2d, depths, conics = ext.project_forward(c(means), c(quats), c(scales), c(viewmats), c(Ks), width, height,
                                                         float(near_plane), float(far_plane), float(eps2d))
    feats, bg, splits = _channels(features, depths, normals, backgrounds, depth_mode, C, N, dt)
    images, alphas = ext.render(means2d, conics, c(opacities.expand(C, N)), feats.contiguous(), radii, depths,
                                bg.contiguous() if bg is not None else means2d.new_zeros(0), width, height)
    parts = torch.split(images, splits, dim=-1) if len(splits) > 1 else [images]
    meta = {"radii": radii, "means2d": means2d, "conics": conics, "depths": depths, "tile_size": TILE_SIZE, "backend": "cpu"}
    return _outputs(parts, alphas, normals, depth_mode) + (meta,)


def _rasterize_gsplat(means, quats, scales, opacities, features, viewmats, Ks, width, height, near_plane, far_plane,
                      backgrounds, normals, depth_mode, eps2d):
    """Delegate to gsplat.rasterization with depth/normals packed as extra colour channels."""
    rasterization = _gsplat_rasterization()
    C, N, D = viewmats.shape[0], means.shape[0], features.shape[-1]
    feats = features if features.ndim == 3 else features.expand(C, N, D)
    if normals is not None:
        feats = torch.cat([feats, normals.expand(C, N, 3)], -1)
    bg = None
    if backgrounds is not None:
        bg = torch.cat([backgrounds, backgrounds.new_zeros(C, feats.shape[-1] - D)], -1)
    render, alphas, meta = rasterization(means, quats, scales, opacities, feats, viewmats, Ks, width, height,
                                         near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, backgrounds=bg,
                                         render_mode="RGB+D" if depth_mode == "accumulated" else "RGB+ED",
                                         packed=False, tile_size=TILE_SIZE, sh_degree=None)
    images, depth = render[..., :D], (render[..., -1:] if depth_mode != "none" else None)
    nrm = render[..., D:D + 3] if normals is not None else None
    meta = dict(meta, backend="gsplat")
    return images, alphas, depth, nrm, meta
