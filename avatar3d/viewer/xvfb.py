"""A private virtual X server (Xvfb) whose screen can be read while windows draw on it.

Used by the GUI test and the latency benchmark: ``Xvfb -fbdir DIR`` keeps its framebuffer in an
XWD file that it writes in place, so another process can ``mmap`` it and see each frame the moment
the X server has it (what a user would see on a monitor, minus the scan-out).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import Avatar3DError

__all__ = ["VirtualDisplay", "read_xwd", "ScreenReader"]


def _xwd_layout(head: bytes) -> tuple[int, int, int, int, int]:
    """(pixel data offset, width, height, bytes per line, byte order) of an XWD header."""
    h = struct.unpack(">25I", head[:100])
    header_size, byte_order, width, height, bits_per_pixel, bytes_per_line, ncolors = h[0], h[7], h[4], h[5], h[11], h[12], h[19]
    if bits_per_pixel != 32:
        raise Avatar3DError(f"unexpected XWD depth {bits_per_pixel} bits per pixel; start Xvfb with a 24-bit screen (-screen 0 WxHx24)")
    return header_size + ncolors * 12, width, height, bytes_per_line, byte_order


def _to_rgb(a: np.ndarray, byte_order: int) -> np.ndarray:
    return a[..., [2, 1, 0]] if byte_order == 0 else a[..., [1, 2, 3]]  # LSB first: B G R X


def read_xwd(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 copy of an XWD dump (24/32-bit TrueColor)."""
    d = Path(path).read_bytes()
    off, width, height, bpl, order = _xwd_layout(d[:100])
    a = np.frombuffer(d, np.uint8, count=height * bpl, offset=off).reshape(height, bpl)[:, : width * 4].reshape(height, width, 4)
    return _to_rgb(a, order).copy()


class ScreenReader:
    """Zero-copy view of a live Xvfb framebuffer file; :meth:`grab` copies a region as RGB."""

    def __init__(self, path: Path):
        with open(path, "rb") as f:
            off, self.width, self.height, bpl, self._order = _xwd_layout(f.read(100))
        raw = np.memmap(path, np.uint8, mode="r", offset=off, shape=(self.height, bpl))
        self._px = raw[:, : self.width * 4].reshape(self.height, self.width, 4)

    def grab(self, x: int = 0, y: int = 0, w: Optional[int] = None, h: Optional[int] = None, step: int = 1) -> np.ndarray:
        """(h/step, w/step, 3) uint8 copy of the screen rectangle (pixels, top-left origin)."""
        w = self.width - x if w is None else w
        h = self.height - y if h is None else h
        return _to_rgb(np.asarray(self._px[y : y + h : step, x : x + w : step]), self._order).copy()


class VirtualDisplay:
    """``with VirtualDisplay() as d:`` runs Xvfb on a free display; ``d.env`` has its ``DISPLAY`` and
    ``d.screen`` is the framebuffer file (read it with :class:`ScreenReader` or :func:`read_xwd`)."""

    def __init__(self, fbdir: Path, width: int = 1400, height: int = 900):
        if shutil.which("Xvfb") is None:
            raise Avatar3DError("no Xvfb found: install the Debian package xvfb (sudo apt-get install xvfb)")
        self.fbdir, self.size = Path(fbdir), (int(width), int(height))
        self.proc: Optional[subprocess.Popen] = None
        self.display = ""

    def __enter__(self) -> "VirtualDisplay":
        self.fbdir.mkdir(parents=True, exist_ok=True)
        r, w = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24", "-fbdir", str(self.fbdir),
                                      "-nolisten", "tcp"], pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(w)
        display = b""
        with os.fdopen(r, "rb") as f:  # Xvfb writes the display number and a newline once it accepts clients
            while not display.endswith(b"\n"):
                c = f.read(1)
                if not c:
                    break
                display += c
        if not display.strip():
            self.__exit__()
            raise Avatar3DError("Xvfb did not start (no display number reported)")
        self.display = f":{display.decode().strip()}"
        return self

    @property
    def env(self) -> dict:
        return dict(os.environ, DISPLAY=self.display)

    @property
    def screen(self) -> Path:
        return self.fbdir / "Xvfb_screen0"

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
