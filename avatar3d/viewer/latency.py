"""Slider-to-screen latency of the viewer window, measured the way a user experiences it.

:func:`measure_gui_latency` starts a private Xvfb, opens ``avatar3d view`` on it in a child process,
then drags an expression slider with synthetic mouse events (the XTest extension, as a real mouse
would) and watches the X framebuffer (``Xvfb -fbdir``, memory-mapped) until the 3D view shows the
new expression. Latency = mouse motion sent -> changed pixels in the X server's framebuffer, so it
includes ImGui's slider handling, the tick, posing, the mesh update, Filament's frame and the
present; only the monitor's scan-out is missing.

The poller shares the 2-core CPU with the viewer (it copies a subsampled view region every
millisecond, ~5% of a core), so the numbers are, if anything, slightly pessimistic.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import Avatar3DError
from .xvfb import ScreenReader, VirtualDisplay

__all__ = ["measure_gui_latency"]

# Control block shared by the benchmark and the viewer process (float64 slots of a small file).
READY, VIEW_X, VIEW_Y, VIEW_W, VIEW_H, SL_X, SL_Y, SL_W, SL_H, QUIT, FAST = range(11)
_CTRL_LEN = 16


class _XTest:
    """Synthetic pointer events through libXtst (what ``xdotool`` does)."""

    def __init__(self, display: str):
        try:
            self.x11 = ctypes.cdll.LoadLibrary("libX11.so.6")
            self.xtst = ctypes.cdll.LoadLibrary("libXtst.so.6")
        except OSError as e:
            raise Avatar3DError(f"the GUI latency probe needs libX11 and libXtst (Debian package libxtst6): {e}") from None
        self.x11.XOpenDisplay.restype = ctypes.c_void_p
        self.x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        self.x11.XFlush.argtypes = [ctypes.c_void_p]
        self.x11.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        self.xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_ulong]
        self.xtst.XTestFakeButtonEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        self.dpy = self.x11.XOpenDisplay(display.encode())
        if not self.dpy:
            raise Avatar3DError(f"could not open X display {display}")

    def move(self, x: int, y: int) -> None:
        self.xtst.XTestFakeMotionEvent(self.dpy, -1, int(x), int(y), 0)
        self.x11.XSync(self.dpy, 0)  # delivered to the server before the clock starts counting

    def button(self, down: bool) -> None:
        self.xtst.XTestFakeButtonEvent(self.dpy, 1, int(down), 0)
        self.x11.XSync(self.dpy, 0)

    def close(self) -> None:
        if self.dpy:
            self.x11.XCloseDisplay(self.dpy)
            self.dpy = None


def _cpu_ns(pids: list[int]) -> int:
    """CPU time (ns) used so far by all threads of ``pids`` (Linux schedstat; 0 elsewhere)."""
    total = 0
    for pid in pids:
        for t in Path(f"/proc/{pid}/task").glob("*"):
            try:
                total += int((t / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def _changed(a: np.ndarray, b: np.ndarray, min_pixels: int) -> bool:
    """More than ``min_pixels`` pixels differ by > 24 levels (Filament's dithering stays below)."""
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(2) > 24).sum()) > min_pixels


def _wait_still(screen: ScreenReader, box: tuple, quiet_s: float = 0.15, timeout: float = 5.0) -> np.ndarray:
    """Wait until the view region stops changing for ``quiet_s``; returns the still image."""
    last, t_last, t0 = screen.grab(*box), time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.005)
        cur = screen.grab(*box)
        if _changed(cur, last, 0):
            last, t_last = cur, time.monotonic()
        elif time.monotonic() - t_last > quiet_s:
            break
    return last


def measure_gui_latency(source: str, steps: int = 16, fast: bool = True, timeout_s: float = 240.0, log=None, watch: str = "view") -> dict:
    """Drag a slider of ``avatar3d view SOURCE`` ``steps`` times; returns latencies in ms.

    ``fast`` picks the viewer's interactive path (default) or the full-quality path for every
    frame (the reference). Result: ``dict(latency=[ms...], median, p90, view=(w, h), slider=name)``.
    """
    with tempfile.TemporaryDirectory(prefix="avatar3d_latency_") as tmp:
        tmp = Path(tmp)
        ctrl_path = tmp / "ctrl"
        ctrl = np.memmap(ctrl_path, np.float64, mode="w+", shape=(_CTRL_LEN,))
        ctrl[:] = 0
        ctrl.flush()
        with VirtualDisplay(tmp / "fb") as disp:
            cmd = [sys.executable, "-m", "avatar3d.viewer.latency", "--child", str(ctrl_path), source, "--fast" if fast else "--full"]
            child = subprocess.Popen(cmd, env=disp.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            xt: Optional[_XTest] = None
            try:
                t0 = time.monotonic()
                while ctrl[READY] != 1:
                    if child.poll() is not None or time.monotonic() - t0 > timeout_s or ctrl[READY] == -1:
                        child.wait(20) if ctrl[READY] == -1 else None
                        out = child.stdout.read().decode(errors="replace") if child.poll() is not None else ""
                        raise Avatar3DError(f"the viewer did not come up for the latency probe: {out[-1500:]}")
                    time.sleep(0.05)
                screen = ScreenReader(disp.screen)
                box = (int(ctrl[VIEW_X]), int(ctrl[VIEW_Y]), int(ctrl[VIEW_W]), int(ctrl[VIEW_H]), 2)
                sx, sy, sw, sh = (float(ctrl[i]) for i in (SL_X, SL_Y, SL_W, SL_H))
                y = int(sy + sh / 2)
                if watch == "slider":  # the GUI's own floor: how soon the slider knob itself moves
                    box = (int(sx), int(sy), int(sw), int(sh), 1)
                xs = [int(sx + f * sw) for f in (0.08, 0.9)]  # slider near its low and high end
                xt = _XTest(disp.display)
                xt.move(xs[0], y)
                xt.button(True)  # ImGui: a press on the track jumps the value there; then drag
                lat: list[float] = []
                cpu: list[float] = []
                cpu_seen: list[float] = []
                pids = [child.pid, disp.proc.pid]  # the viewer and the X server (it copies each presented frame)
                for i in range(1, steps + 1):
                    ref = _wait_still(screen, box)
                    c0 = _cpu_ns(pids)
                    t_sent = time.monotonic()
                    xt.move(xs[i % 2], y + (i % 3) - 1)  # a wiggle in y too: every motion is a new event
                    seen = None
                    while time.monotonic() - t_sent < 5.0:
                        if _changed(screen.grab(*box), ref, 30 if watch == "view" else 3):
                            seen = time.monotonic()
                            cpu_seen.append((_cpu_ns(pids) - c0) / 1e6)
                            break
                        time.sleep(0.001)
                    lat.append(1000 * (seen - t_sent) if seen is not None else float("nan"))
                    _wait_still(screen, box)  # CPU until the viewer is idle again: the whole cost of one step
                    cpu.append((_cpu_ns(pids) - c0) / 1e6)
                    if log:
                        log(f"  step {i}: {lat[-1]:.1f} ms ({cpu_seen[-1] if seen else float('nan'):.1f} CPU ms), "
                            f"{cpu[-1]:.1f} CPU ms until the window rests")
                xt.button(False)
                ctrl[QUIT] = 1
                ctrl.flush()
                child.wait(60)
            finally:
                if xt is not None:
                    xt.close()
                if child.poll() is None:
                    child.kill()
                    child.wait()
        ok = [x for x in lat if x == x]
        if not ok:
            raise Avatar3DError("the viewer never showed a slider change (latency probe timed out on every step)")
        return dict(latency=lat, median=statistics.median(ok), p90=float(np.percentile(ok, 90)), timeouts=len(lat) - len(ok),
                    view=(box[2], box[3]), cpu=statistics.median(cpu), cpu_to_frame=statistics.median(cpu_seen))


# ---------------------------------------------------------------------------------------- child side
def _child(ctrl_path: str, source_spec: str, fast: bool) -> int:
    import open3d as o3d
    import torch

    from .app import ViewerApp
    from .shot import ViewOptions
    from .source import open_source

    torch.set_num_threads(1)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    ctrl = np.memmap(ctrl_path, np.float64, mode="r+", shape=(_CTRL_LEN,))
    src = open_source(source_spec)
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = ViewerApp(src, ViewOptions(), interactive=fast)
    name = next((s.name for s in v.specs if s.name.lower().startswith("jawopen")), v.specs[0].name)
    orig = v._on_tick
    t_start = time.monotonic()
    state = {"ticks": 0}

    def tick() -> bool:
        state["ticks"] += 1
        if ctrl[READY] == 0 and state["ticks"] > 20 and time.monotonic() - t_start > 1.5:
            os_f, view, sl, panel = v.window.os_frame, v.scene_widget.frame, v.sliders[name].frame, v.panel.frame
            if sl.y + sl.height > panel.y + panel.height:
                print(f"the {name} slider is below the fold of the panel", flush=True)
                ctrl[READY] = -1
                ctrl[QUIT] = 1
            else:
                ctrl[VIEW_X:VIEW_H + 1] = (os_f.x + view.x, os_f.y + view.y, view.width, view.height)
                ctrl[SL_X:SL_H + 1] = (os_f.x + sl.x, os_f.y + sl.y, sl.width, sl.height)
                ctrl[READY] = 1
            ctrl.flush()
        if ctrl[QUIT] == 1:
            ctrl[QUIT] = 2
            app.post_to_main_thread(v.window, v.window.close)
        return orig()

    v.window.set_on_tick_event(tick)
    app.run()
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", required=True)
    ap.add_argument("source")
    ap.add_argument("--fast", dest="fast", action="store_true", default=True)
    ap.add_argument("--full", dest="fast", action="store_false")
    a = ap.parse_args()
    sys.exit(_child(a.child, a.source, a.fast))
