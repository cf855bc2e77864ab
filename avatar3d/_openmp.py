"""OpenMP start-up settings for commands that render on several CPU threads (no torch import here).

libgomp (the OpenMP runtime torch and our extensions share) reads ``OMP_WAIT_POLICY`` once, when ``import torch``
loads it: a setting made later is ignored, so a command calls :func:`prefer_passive_wait` before it imports
anything that imports torch.
"""

from __future__ import annotations

import os
import sys

__all__ = ["prefer_passive_wait"]


def prefer_passive_wait() -> bool:
    """Let idle OpenMP threads sleep between parallel regions (``OMP_WAIT_POLICY=PASSIVE``) unless the user chose
    a policy. Returns whether the setting takes effect (False once torch is imported or with the user's own policy).

    Why: with the default policy an idle thread spins for a while on its core; when anything else runs on the
    machine, that spinning takes the core the working thread needs, and two threads render a frame about 4x slower
    than one (benchmarks/bench_avatar_render.py); passive, two threads are ~1.8x faster than one.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
