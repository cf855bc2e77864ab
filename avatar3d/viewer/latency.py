"""Slider-to-screen latency of the viewer window, measured the way a user experiences it.

:func:`measure_gui_latency` starts a private Xvfb, opens ``avatar3d view`` on it in a child process,
then presses on an expression slider's track, alternately near its low and high end, with synthetic
mouse events (the XTest extension, as a real mouse would) and watches the X framebuffer (``Xvfb
-fbdir``, memory-mapped) until the 3D view shows the new expression. Latency = mouse press sent ->
the new expression's pixels in the X server's framebuffer, so it includes ImGui's slider handling,
posing, the mesh update, Filament's frame and the present; only the monitor's scan-out is missing.

The poller shares the 2-core CPU with the viewer (it copies a subsampled view region every
millisecond, ~5% of a core), so the numbers are, if anything, slightly pessimistic. Before each
press it waits until the viewer and the X server are idle (moving the pointer onto the slider
draws a hover frame that would otherwise compete with the press), and it records whether the
slider event reached the viewer (a shared counter the child's slider callback bumps) and how long
the callback took, so a timeout says whether the event or the frame went missing.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ..errors import Avatar3DError
from .xvfb import ScreenReader, VirtualDisplay

__all__ = ["measure_gui_latency", "measure_window_floor", "PATHS"]

# Control block shared by the benchmark and the viewer process (float64 slots of a small file).
READY, VIEW_X, VIEW_Y, VIEW_W, VIEW_H, SL_X, SL_Y, SL_W, SL_H, QUIT, FAST, CB_T, CB_N, CB_MS = range(14)
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


def _wait_idle(pids: list[int], quiet_s: float = 0.06, timeout: float = 3.0) -> None:
    """Wait until ``pids`` use less than 10% of a core for ``quiet_s`` (their frames are done)."""
    t0 = time.monotonic()
    c, t = _cpu_ns(pids), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.01)
        c1, t1 = _cpu_ns(pids), time.monotonic()
        if c1 - c > 0.1 * 1e9 * (t1 - t):
            c, t = c1, t1
        elif t1 - t > quiet_s:
            return


def _changed(a: np.ndarray, b: np.ndarray, min_pixels: int) -> bool:
    """More than ``min_pixels`` pixels differ by > 24 levels (Filament's dithering stays below)."""
    return int((np.abs(a.astype(np.int16) - b.astype(np.int16)).max(2) > 24).sum()) > min_pixels


def _wait_still(screen: ScreenReader, box: tuple, quiet_s: float = 0.5, timeout: float = 10.0) -> np.ndarray:
    """Wait until the view region stops changing for ``quiet_s`` (longer than the viewer's settle
    delay, so its full-quality frame has come); returns the still image."""
    last, t_last, t0 = screen.grab(*box), time.monotonic(), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.005)
        cur = screen.grab(*box)
        if _changed(cur, last, 0):
            last, t_last = cur, time.monotonic()
        elif time.monotonic() - t_last > quiet_s:
            break
    return last


def _wait_change(screen: ScreenReader, box: tuple, ref: np.ndarray, timeout: float = 20.0) -> bool:
    """Wait until the view region differs from ``ref`` (the first frame after a change can take
    seconds: llvmpipe compiles each new shader variant on first use); whether it did."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _changed(screen.grab(*box), ref, 30):
            return True
        time.sleep(0.01)
    return False


def _wait_for(screen: ScreenReader, box: tuple, target: np.ndarray, other: np.ndarray, mask: np.ndarray, timeout: float) -> Optional[float]:
    """Poll every millisecond until the view shows ``target``; the time it did, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if _closer_to(screen.grab(*box), target, other, mask):
            return time.monotonic()
        time.sleep(0.001)
    return None


def _closer_to(cur: np.ndarray, target: np.ndarray, other: np.ndarray, mask: np.ndarray) -> bool:
    """Whether ``cur`` shows the target state: nearer to its reference than to the other one where
    the two states differ (robust to the small interactive-vs-full differences and to late frames
    of the previous state)."""
    c = cur[mask].astype(np.int16)
    return int(np.abs(c - target[mask]).sum()) < int(np.abs(c - other[mask]).sum())


PATHS = ("software", "filament", "full")


@dataclass
class _Probe:
    """A child window on a private Xvfb that has reported READY (see :func:`_child_window`)."""

    ctrl: np.ndarray  # the shared control block (float64 memmap)
    disp: VirtualDisplay
    child: subprocess.Popen
    screen: ScreenReader
    box: tuple  # (x, y, w, h, subsample) of the watched region, from the child's READY report
    t0: float  # time.monotonic() when the child was started

    @property
    def pids(self) -> list[int]:
        """The child and the X server (it copies each presented frame): whose CPU a frame costs."""
        return [self.child.pid, self.disp.proc.pid]


@contextmanager
def _child_window(args: list[str], timeout_s: float, what: str) -> Iterator[_Probe]:
    """Start a private Xvfb and ``python -m avatar3d.viewer.latency --child CTRL *args`` on it; yield
    once the child has written READY (its window is up and the watched region is in the control
    block). A normal exit asks the child to quit and waits for it; an error kills it.

    Raises Avatar3DError naming ``what`` when the child exits, reports failure (READY = -1) or is not
    ready within ``timeout_s``."""
    with tempfile.TemporaryDirectory(prefix="avatar3d_latency_") as tmp:
        tmp = Path(tmp)
        ctrl = np.memmap(tmp / "ctrl", np.float64, mode="w+", shape=(_CTRL_LEN,))
        ctrl[:] = 0
        ctrl.flush()
        with VirtualDisplay(tmp / "fb") as disp:
            cmd = [sys.executable, "-m", "avatar3d.viewer.latency", "--child", str(tmp / "ctrl"), *args]
            child = subprocess.Popen(cmd, env=disp.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                t0 = time.monotonic()
                while ctrl[READY] != 1:
                    if child.poll() is not None or time.monotonic() - t0 > timeout_s or ctrl[READY] == -1:
                        if ctrl[READY] == -1:  # the child saw a problem and is closing: let it print why
                            child.wait(20)
                        out = child.stdout.read().decode(errors="replace") if child.poll() is not None else ""
                        raise Avatar3DError(f"{what} did not come up: {out[-1500:]}")
                    time.sleep(0.05)
                box = (int(ctrl[VIEW_X]), int(ctrl[VIEW_Y]), int(ctrl[VIEW_W]), int(ctrl[VIEW_H]), 2)
                yield _Probe(ctrl, disp, child, ScreenReader(disp.screen), box, t0)
                ctrl[QUIT] = 1
                ctrl.flush()
                child.wait(60)
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()


def measure_gui_latency(source: str, steps: int = 16, path: str = "software", size: Optional[tuple[int, int]] = None,
                        timeout_s: float = 240.0, log=None) -> dict:
    """Move a slider of ``avatar3d view SOURCE`` ``steps`` times (presses on its track); latencies in ms.

    ``path`` picks how the viewer draws slider steps: ``"software"`` (the default viewer: our CPU
    rasterizer into an image widget, :mod:`.softview`), ``"filament"`` (Filament's interactive
    frames in the 3D view, :mod:`.fastshade`; the viewer's previous default) or ``"full"`` (every
    step at full quality; the original viewer). ``size`` (w, h) overrides the default window size.

    Result: ``dict(latency=[ms...], median, p90, timeouts, undelivered, view=(w, h), cpu_to_frame,
    callback_ms)``: ``cpu_to_frame`` is the median CPU ms (viewer + X server, all threads) from the
    press to the changed frame, a load-independent measure of the work per step; ``callback_ms`` the
    median time the viewer spent in the slider callback (posing, and for "software" drawing the
    picture); ``undelivered`` counts presses whose slider event never reached the viewer.
    """
    if path not in PATHS:
        raise ValueError(f"unknown viewer path {path!r}; expected one of: {', '.join(PATHS)}")
    args = [source, "--path", path] + (["--size", f"{int(size[0])}x{int(size[1])}"] if size is not None else [])
    with _child_window(args, timeout_s, "the viewer for the latency probe") as probe:
        ctrl, screen, box = probe.ctrl, probe.screen, probe.box
        xt: Optional[_XTest] = None
        try:
            sx, sy, sw, sh = (float(ctrl[i]) for i in (SL_X, SL_Y, SL_W, SL_H))
            y = int(sy + sh / 2)
            xs = [int(sx + f * sw) for f in (0.08, 0.9)]  # slider near its low and high end
            xt = _XTest(probe.disp.display)
            # Each step presses on the slider's track (ImGui jumps the value there).
            # References of both slider positions once everything has settled; a step counts as
            # seen when the view shows the new one (not merely "something changed"). The first
            # presses also warm up llvmpipe's shader compilation for both paths.
            refs: list[np.ndarray] = []
            still = _wait_still(screen, box, 1.0)
            for x in (xs[1], xs[0], xs[1]):
                for _ in range(3):
                    xt.move(x, y)
                    xt.button(True)  # held until the view changes: a short click that lands
                    ok = _wait_change(screen, box, still, 8.0)  # during a slow frame can be lost
                    xt.button(False)
                    if ok:
                        break
                time.sleep(1.0)  # past the viewer's settle delay: its full-quality frame
                still = _wait_still(screen, box, 1.0)
                refs.append(still)
            refs = refs[1:]  # (low, high)
            mask = np.abs(refs[0].astype(np.int16) - refs[1].astype(np.int16)).max(2) > 40
            if mask.sum() < 30:
                raise Avatar3DError(f"dragging the slider does not visibly change the view ({int(mask.sum())} pixels)")
            lat: list[float] = []
            cpu_seen: list[float] = []
            cb_ms: list[float] = []
            undelivered = 0
            pids = probe.pids
            for i in range(steps):
                target, other = refs[i % 2], refs[1 - i % 2]
                xt.move(xs[i % 2], y)
                # The pointer's arrival is not part of the step: the hover frame it triggers
                # (~100-250 ms of llvmpipe work) would otherwise compete with the press.
                _wait_idle(pids)
                if _closer_to(screen.grab(*box), target, other, mask):
                    # The last step's change never arrived (or arrived late): re-sync so this
                    # step starts from the other state instead of counting a stale frame.
                    xt.move(xs[1 - i % 2], y)
                    xt.button(True)
                    _wait_for(screen, box, other, target, mask, 20.0)
                    xt.button(False)
                    time.sleep(1.0)
                    _wait_still(screen, box, 0.8)
                    xt.move(xs[i % 2], y)
                    _wait_idle(pids)
                c0 = _cpu_ns(pids)
                n0 = int(ctrl[CB_N])
                t_sent = time.monotonic()
                # Press and hold until the frame is seen (ImGui can lose a short click that lands
                # while a slow frame renders), then release.
                xt.button(True)
                seen = _wait_for(screen, box, target, other, mask, 10.0)
                if seen is not None:
                    cpu_seen.append((_cpu_ns(pids) - c0) / 1e6)
                xt.button(False)
                lat.append(1000 * (seen - t_sent) if seen is not None else float("nan"))
                delivered = int(ctrl[CB_N]) > n0
                undelivered += not delivered
                if delivered:
                    cb_ms.append(float(ctrl[CB_MS]))
                if log:
                    cb = f"slider callback {1000 * (ctrl[CB_T] - t_sent):.1f} ms after the press, took {ctrl[CB_MS]:.1f} ms" if delivered else "slider event not delivered"
                    log(f"  step {i + 1}: {lat[-1]:.1f} ms ({cpu_seen[-1] if seen else float('nan'):.1f} CPU ms to the frame; {cb})")
                # Let the viewer finish the step (its full-quality frame comes SETTLE_S after the
                # last change and takes a while on a busy CPU) before the next press.
                if i + 1 < steps:
                    time.sleep(1.0)
                    _wait_still(screen, box, 0.8)
        finally:
            if xt is not None:
                xt.close()
    ok = [x for x in lat if x == x]
    if not ok:
        why = f"{undelivered} of {len(lat)} slider events never reached the viewer" if undelivered else "the events reached it"
        raise Avatar3DError(f"the viewer never showed a slider change (latency probe timed out on every step; {why})")
    return dict(latency=lat, median=statistics.median(ok), p90=float(np.percentile(ok, 90)), timeouts=len(lat) - len(ok),
                undelivered=undelivered, view=(box[2], box[3]), cpu_to_frame=statistics.median(cpu_seen) if cpu_seen else float("nan"),
                callback_ms=statistics.median(cb_ms) if cb_ms else float("nan"))


def measure_window_floor(size: Optional[tuple[int, int]] = None, changes: int = 10, timeout_s: float = 120.0) -> dict:
    """The floor under any slider latency: an Open3D window showing one label (no 3D view, no
    panel) changes the label's text every 0.7 s; time from the change to the new pixels in the X
    framebuffer and CPU ms (window process + X server) per change. ``size``: window (w, h), None:
    the viewer's default. Result: ``dict(median, p90, cpu, size)``."""
    from .app import DEFAULT_WINDOW

    size = size or DEFAULT_WINDOW
    with _child_window(["-", "--bare", "--size", f"{size[0]}x{size[1]}"], timeout_s, "the bare window") as probe:
        ctrl, screen, box, pids = probe.ctrl, probe.screen, probe.box, probe.pids
        lat, cpu = [], []
        seen_n = int(ctrl[CB_N])
        while len(lat) < changes and time.monotonic() - probe.t0 < timeout_s:
            if int(ctrl[CB_N]) == seen_n:
                time.sleep(0.001)
                continue
            seen_n, t_change, c0 = int(ctrl[CB_N]), float(ctrl[CB_T]), _cpu_ns(pids)
            ref = screen.grab(*box)
            while time.monotonic() - t_change < 2.0:
                if _changed(screen.grab(*box), ref, 20):
                    if seen_n > 2:  # the first changes warm up the shaders
                        lat.append(1000 * (time.monotonic() - t_change))
                        cpu.append((_cpu_ns(pids) - c0) / 1e6)
                    break
                time.sleep(0.001)
    if not lat:
        raise Avatar3DError("the bare window never showed a change")
    return dict(median=statistics.median(lat), p90=float(np.percentile(lat, 90)), cpu=statistics.median(cpu), size=tuple(size))


def _bare_child(ctrl_path: str, size: tuple[int, int]) -> int:
    """A window with one label whose text changes every 0.7 s (see measure_window_floor)."""
    import open3d as o3d

    gui = o3d.visualization.gui
    ctrl = np.memmap(ctrl_path, np.float64, mode="r+", shape=(_CTRL_LEN,))
    app = gui.Application.instance
    app.initialize()
    w = app.create_window("floor", *size)
    label = gui.Label("0")
    w.add_child(label)
    st = {"ticks": 0, "last": 0.0}

    def tick() -> bool:
        st["ticks"] += 1
        if ctrl[READY] == 0 and st["ticks"] > 20:
            f = w.os_frame
            ctrl[VIEW_X:VIEW_H + 1] = (f.x, f.y, min(size[0], 400), min(size[1], 60))  # where the label is
            ctrl[READY] = 1
        if ctrl[QUIT] == 1:
            ctrl[QUIT] = 2
            app.post_to_main_thread(w, w.close)
            return False
        if ctrl[READY] == 1 and time.monotonic() - st["last"] > 0.7:
            st["last"] = time.monotonic()
            n = int(ctrl[CB_N]) + 1
            label.text = ("wide " * 6 if n % 2 else "narrow") + f" {n}"
            ctrl[CB_T] = time.monotonic()
            ctrl[CB_N] = n
            w.post_redraw()
            return True
        return False

    w.set_on_tick_event(tick)
    app.run()
    return 0


# ---------------------------------------------------------------------------------------- child side
def _child(ctrl_path: str, source_spec: str, path: str, size: Optional[tuple[int, int]]) -> int:
    import open3d as o3d
    import torch

    from .app import DEFAULT_WINDOW, ViewerApp
    from .shot import ViewOptions
    from .source import open_source

    torch.set_num_threads(1)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    ctrl = np.memmap(ctrl_path, np.float64, mode="r+", shape=(_CTRL_LEN,))
    src = open_source(source_spec)
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = ViewerApp(src, ViewOptions(), interactive=path != "full", software=path == "software", window_size=size or DEFAULT_WINDOW)

    name = next((s.name for s in v.specs if s.name.lower().startswith("jawopen")), v.specs[0].name)
    orig = v._on_tick
    orig_slider = v._on_slider

    def on_slider(spec, value):  # when the viewer got the slider event (CLOCK_MONOTONIC, shared)
        ctrl[CB_T] = time.monotonic()
        ctrl[CB_N] += 1
        orig_slider(spec, value)
        ctrl[CB_MS] = 1000 * (time.monotonic() - ctrl[CB_T])

    v._on_slider = on_slider
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
    ap.add_argument("--path", choices=PATHS, default="software")
    ap.add_argument("--size", default=None, help="window size WxH")
    ap.add_argument("--bare", action="store_true", help="a window with one label (measure_window_floor)")
    a = ap.parse_args()
    if a.bare:
        sys.exit(_bare_child(a.child, tuple(map(int, a.size.split("x")))))
    sys.exit(_child(a.child, a.source, a.path, tuple(map(int, a.size.split("x"))) if a.size else None))
