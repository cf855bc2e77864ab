"""Which rasterizer backend runs an op, and what ``avatar3d info`` reports about them.

Mesh backends: our CUDA extension (``csrc/mesh_kernels.cu`` + ``csrc/mesh_cuda_bind.cpp``), our CPU
extension (``csrc/mesh_cpu.cpp``, OpenMP), the pure-PyTorch reference, and nvdiffrast when installed.
Extensions build on first use (cached in the user cache); a failed build warns once (in
:func:`avatar3d._ext.load_extension`) and ``auto`` falls back to the reference.

The Gaussian engineer's ``gaussian_backend_status()`` lives in ``avatar3d.render.gaussians``;
``avatar3d info`` lists both.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Optional

import torch

from .._ext import extension_error, load_extension

__all__ = ["mesh_backend_status", "get_mesh_backend", "mesh_cpu_extension", "mesh_cuda_extension", "build_extensions",
           "nvdiffrast_context"]

CPU_SOURCES = ["mesh_cpu.cpp"]
CUDA_SOURCES = ["mesh_cuda_bind.cpp", "mesh_kernels.cu"]
_CPU_NAME = "a3d_mesh_cpu"
_CUDA_NAME = "a3d_mesh_cuda"
_nv_ctx: dict = {}


def mesh_cpu_extension() -> Optional[ModuleType]:
    """The compiled CPU mesh extension (built and cached on first call), or ``None`` if it cannot build."""
    return load_extension(_CPU_NAME, CPU_SOURCES)


class _StreamBound:
    """Adapter giving the CUDA extension the CPU extension's signatures: appends the current stream handle."""

    def __init__(self, mod: ModuleType):
        self._mod = mod

    def __getattr__(self, name: str):
        fn = getattr(self._mod, name)
        return lambda *args: fn(*args, torch.cuda.current_stream().cuda_stream)


_cuda_wrapped: dict = {}


def mesh_cuda_extension():
    """The compiled CUDA mesh extension (wrapped to take the current stream), or ``None`` without CUDA or when the build fails."""
    if not torch.cuda.is_available():
        return None
    mod = load_extension(_CUDA_NAME, CUDA_SOURCES, cuda=True)
    if mod is None:
        return None
    if "m" not in _cuda_wrapped:
        _cuda_wrapped["m"] = _StreamBound(mod)
    return _cuda_wrapped["m"]


def build_extensions(verbose: bool = False) -> list[tuple[str, bool, str]]:
    """Build (or load from cache) every rasterizer extension this machine can use; for the set-up script.

    Mesh extensions first, then the Gaussian module's (if it provides ``_cpu_ext``/``_cuda_ext``).
    Never raises: failures are reported in the returned status rows (and warned once).
    """
    mesh_cpu_extension()
    mesh_cuda_extension()
    rows = mesh_backend_status()
    try:
        from . import gaussians

        for fn in ("_cpu_ext", "_cuda_ext") if torch.cuda.is_available() else ("_cpu_ext",):
            if hasattr(gaussians, fn):
                getattr(gaussians, fn)()
    except Exception as e:  # the set-up must go on; info reports details
        rows.append(("gaussian-extensions", False, f"{type(e).__name__}: {e}"))
    if verbose:
        for name, ok, detail in rows:
            print(f"{'[x]' if ok else '[ ]'} {name:<18} {detail}")
    return rows


def _has_nvdiffrast() -> bool:
    return importlib.util.find_spec("nvdiffrast") is not None


def nvdiffrast_context(device: torch.device):
    """A cached ``nvdiffrast.torch.RasterizeCudaContext`` for ``device``."""
    import nvdiffrast.torch as dr

    key = str(device)
    if key not in _nv_ctx:
        _nv_ctx[key] = dr.RasterizeCudaContext(device=device)
    return _nv_ctx[key]


def get_mesh_backend(name: str, like: torch.Tensor) -> tuple[str, Optional[ModuleType]]:
    """Resolve ``name`` for data on ``like.device`` -> (resolved name, extension module or None for reference/nvdiffrast)."""
    from ..errors import BadInputError

    cuda = like.is_cuda
    if name == "auto":
        if cuda:
            ext = mesh_cuda_extension()
            return ("cuda", ext) if ext is not None else ("reference", None)
        ext = mesh_cpu_extension()
        return ("cpu", ext) if ext is not None else ("reference", None)
    if name == "reference":
        return "reference", None
    if name == "cpu":
        if cuda:
            raise BadInputError("backend 'cpu' needs CPU tensors; move them with .cpu() or use backend='auto'")
        ext = mesh_cpu_extension()
        if ext is None:
            raise BadInputError(f"the CPU mesh extension is unavailable ({extension_error(_CPU_NAME)}); use backend='reference'")
        return "cpu", ext
    if name == "cuda":
        if not cuda:
            raise BadInputError("backend 'cuda' needs CUDA tensors; use backend='auto' on the CPU")
        ext = mesh_cuda_extension()
        if ext is None:
            raise BadInputError(f"the CUDA mesh extension is unavailable ({extension_error(_CUDA_NAME + '_cuda')}); use backend='auto'")
        return "cuda", ext
    if name == "nvdiffrast":
        if not _has_nvdiffrast():
            raise BadInputError("backend 'nvdiffrast' is not installed (pip install nvdiffrast needs a CUDA toolchain); use backend='auto'")
        if not cuda:
            raise BadInputError("backend 'nvdiffrast' needs CUDA tensors")
        return "nvdiffrast", None
    raise BadInputError(f"unknown mesh backend {name!r}; expected one of auto, cuda, cpu, reference, nvdiffrast")


def mesh_backend_status() -> list[tuple[str, bool, str]]:
    """For ``avatar3d info``: (backend, available, detail) for each mesh rasterizer backend."""
    rows: list[tuple[str, bool, str]] = []
    cpu = mesh_cpu_extension()
    rows.append(("mesh-cpu", cpu is not None, "C++/OpenMP extension (cached build)" if cpu is not None else f"not built: {extension_error(_CPU_NAME)}"))
    if torch.cuda.is_available():
        cu = mesh_cuda_extension()
        rows.append(("mesh-cuda", cu is not None, f"CUDA extension on {torch.cuda.get_device_name(0)}" if cu is not None else f"not built: {extension_error(_CUDA_NAME + '_cuda')}"))
    else:
        rows.append(("mesh-cuda", False, "no CUDA device (torch.cuda.is_available() is False)"))
    nv = _has_nvdiffrast()
    rows.append(("mesh-nvdiffrast", nv and torch.cuda.is_available(), "installed" if nv else "not installed (optional GPU backend)"))
    rows.append(("mesh-reference", True, "pure PyTorch (slow, always available)"))
    return rows
