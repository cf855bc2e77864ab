"""One line naming the machine a benchmark ran on, printed at the top of every benchmark's output.

Speed figures only compare on the same CPU: the README's tracking speeds were measured on one 2-core machine
and a user's AMD EPYC of the same size gave a third less, so every printed table says where it was measured.
"""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def simd_flags() -> str:
    """The widest x86 vector extensions the CPU reports (what the C++ kernels can use), e.g. ``AVX2, AVX-512``."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    names = [("avx2", "AVX2"), ("avx512f", "AVX-512")]
    return ", ".join(n for flag, n in names if flag in flags) or "no AVX2"


def describe() -> str:
    """``machine: CPU MODEL (N cores, SIMD), load average L, Python X, torch Y (T threads)``."""
    try:
        import torch

        torch_part = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_part = "no torch"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu_model()} ({os.cpu_count()} cores, {simd_flags()}), load average {load:.2f}, "
            f"Python {platform.python_version()}, {torch_part}")
