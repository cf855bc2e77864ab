"""Build-and-cache loader for the C++/CUDA extensions whose sources live in ``avatar3d/csrc/``.

The sources are package data (an installed wheel carries them). Extensions are compiled on first use with ``torch.utils.cpp_extension.load`` into the user cache
(keyed by torch version, the sources' folder and a hash of the sources, so a rebuild happens only when one changes).
A failed build warns once and returns ``None``; callers fall back to the pure-PyTorch reference.
Set ``AVATAR3D_NO_EXT=1`` to skip building (tests of the fallback path use it).
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from .paths import cache_dir

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
_loaded: dict[str, Optional[ModuleType]] = {}
_errors: dict[str, str] = {}


def _digest(paths: Sequence[Path], extra: str) -> str:
    h = hashlib.sha1(extra.encode())
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def load_extension(name: str, sources: Sequence[str], cuda: bool = False, verbose: bool = False) -> Optional[ModuleType]:
    """Compile (once) and import the extension ``name`` from source file names in ``CSRC_DIR``.

    Headers in ``CSRC_DIR`` (``*.h``, ``*.cuh``) are part of the cache key. Returns ``None`` when the
    build fails or is disabled; :func:`extension_error` then says why.
    """
    key = f"{name}{'_cuda' if cuda else ''}"
    if key in _loaded:
        return _loaded[key]
    mod: Optional[ModuleType] = None
    if os.environ.get("AVATAR3D_NO_EXT"):
        _errors[key] = "disabled by AVATAR3D_NO_EXT"
    else:
        try:
            import torch
            from torch.utils.cpp_extension import load

            src = [CSRC_DIR / s for s in sources]
            headers = list(CSRC_DIR.glob("*.h")) + list(CSRC_DIR.glob("*.cuh"))
            # The sources' path is part of the key: torch's build files record absolute source paths,
            # so two checkouts (or installs) sharing one build folder would rebuild each other's extension.
            tag = _digest(src + headers, f"{torch.__version__}|{sys.version_info[:2]}|{cuda}|{CSRC_DIR}")
            build = cache_dir(f"ext/{key}_{tag}")
            flags = ["-O3", "-std=c++17"]
            kw = dict(extra_cflags=flags + ["-fopenmp"], extra_ldflags=["-fopenmp"])
            if cuda:
                kw["extra_cuda_cflags"] = ["-O3", "--use_fast_math", "-std=c++17"]
            mod = load(name=f"{key}_{tag}", sources=[str(s) for s in src], extra_include_paths=[str(CSRC_DIR)],
                       build_directory=str(build), verbose=verbose, **kw)
        except Exception as e:  # any compiler/linker failure: fall back, never break import
            _errors[key] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
            warnings.warn(f"avatar3d: could not build the {key} extension ({_errors[key]}); using the PyTorch reference (slow).", RuntimeWarning, stacklevel=2)
    _loaded[key] = mod
    return mod


def extension_error(name: str) -> Optional[str]:
    """Why ``name`` is unavailable (after a failed :func:`load_extension`), else ``None``."""
    return _errors.get(name)
