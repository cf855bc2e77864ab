"""What an optimisation reports: a progress bar (optional) and a run log of losses and stage timings."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, contextmanager
from typing import Iterator

__all__ = ["Progress", "RunLog"]


class Progress(AbstractContextManager):
    """A tqdm bar when ``enabled`` (transient: it is removed when done), nothing otherwise.

    Args:
        total: steps; desc: label; enabled: show it; unit / dynamic_ncols: passed to tqdm.
    """

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "it", dynamic_ncols: bool = False):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=dynamic_ncols)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __exit__(self, *exc) -> None:  # (AbstractContextManager's __enter__ returns self)
        self.close()


class RunLog:
    """Losses per step and wall / CPU seconds per stage of one optimisation run.

    ``timings`` maps a stage name to wall seconds (and ``cpu_<name>`` to process CPU seconds where
    asked); :meth:`finish` adds ``total`` and ``cpu_total`` since the log was made.
    """

    def __init__(self):
        self.losses: list[float] = []
        self.timings: dict[str, float] = {}
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def loss(self, value: float) -> None:
        """Record one step's loss."""
        self.losses.append(float(value))

    @contextmanager
    def timed(self, name: str, cpu: bool = False, add: bool = False, wall: bool = True) -> Iterator[None]:
        """Time the block as stage ``name`` (``cpu``: also ``cpu_<name>``; ``add``: add to what is there;
        ``wall=False``: CPU time only)."""
        t, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            if wall:
                self._record(name, time.perf_counter() - t, add)
            if cpu:
                self._record("cpu_" + name, time.process_time() - c, add)

    def _record(self, key: str, seconds: float, add: bool) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + seconds if add else seconds

    def finish(self, cpu: bool = True) -> dict[str, float]:
        """``timings`` with ``total`` (and ``cpu_total``) seconds since the log was made."""
        self.timings["total"] = time.perf_counter() - self._t0
        if cpu:
            self.timings["cpu_total"] = time.process_time() - self._c0
        return self.timings

    def elapsed(self) -> float:
        """Wall seconds since the log was made."""
        return time.perf_counter() - self._t0
