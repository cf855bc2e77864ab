"""The C allocator's settings for loops that allocate and free the same large tensors every step.

glibc's malloc serves blocks above its mmap threshold (128 KiB at start, raised as such blocks are freed)
with fresh ``mmap`` pages and returns free memory at the top of the heap to the system above its trim
threshold. An optimisation loop over a few hundred frames allocates and frees a few dozen 0.2-2 MB
tensors per step (the (N, 3, 478) landmark planes and their gradients), so every step paid ~1000 page
faults that zero-fill fresh pages: measured on the 90-frame landmark fit, 256k minor page faults and
15-20% of its CPU time, gone with the settings below (results bit-identical: only where memory comes
from changes). Other platforms' allocators are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
#: blocks up to this size come from the heap (glibc's own upper limit for its adaptive threshold)
MMAP_THRESHOLD = 32 << 20
#: free memory kept at the top of the heap before any is returned to the system
TRIM_THRESHOLD = 256 << 20
_done = False


def keep_freed_memory() -> bool:
    """Let glibc reuse freed heap memory for the next large tensor instead of mapping fresh pages (once per process).

    Process-wide and kept: the process may hold up to :data:`TRIM_THRESHOLD` of freed memory for reuse.
    Returns True where the settings were applied (Linux with glibc), else False.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
