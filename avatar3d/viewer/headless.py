"""Headless rendering with Open3D's ``OffscreenRenderer`` (Filament on Mesa's Vulkan llvmpipe driver).

On a machine without a GPU, Open3D 0.20 picks Filament's Vulkan backend on Mesa's software device
(``libvulkan1`` + ``mesa-vulkan-drivers``); no display or EGL is needed. When those pieces are
missing Filament aborts the whole process, so :func:`check_offscreen_support` looks for them first
and raises one sentence naming the package to install.
"""

from __future__ import annotations

import atexit
import ctypes.util
import glob
import os
import weakref
from typing import Optional

import numpy as np

from ..errors import Avatar3DError
from ..render.camera import raster_intrinsics
from ..render.camera_builders import frontal
from .mesh import HeadMesh
from .params import HeadParams
from .scene import HeadScene, Lighting

__all__ = ["check_offscreen_support", "HeadlessRenderer"]

_ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")


def check_offscreen_support() -> None:
    """Raise :class:`Avatar3DError` (one sentence) if Open3D offscreen rendering cannot work here."""
    try:
        import open3d  # noqa: F401
        from open3d.visualization import rendering  # noqa: F401
    except ImportError as e:
        raise Avatar3DError(f"the viewer needs Open3D with rendering ({e}); install it with 'pip install open3d-cpu' (or 'open3d')") from None
    if ctypes.util.find_library("vulkan") is None and not glob.glob("/usr/lib/*/libvulkan.so.1"):
        raise Avatar3DError("offscreen rendering needs the Vulkan loader: install the Debian package libvulkan1 "
                            "(sudo apt-get install libvulkan1 mesa-vulkan-drivers)")
    icds = [f for d in _ICD_DIRS for f in glob.glob(os.path.join(d, "*.json"))]
    if os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES"):
        return
    if not icds:
        raise Avatar3DError("offscreen rendering needs a Vulkan driver (Mesa's software llvmpipe works): install the Debian "
                            "package mesa-vulkan-drivers (sudo apt-get install mesa-vulkan-drivers)")


_live: Optional["weakref.ref[HeadlessRenderer]"] = None


@atexit.register
def _close_live() -> None:
    """Close the live renderer while Python still runs: left to interpreter teardown, Filament may
    be destroyed before the geometry that uses its materials, which aborts the process."""
    r = _live() if _live is not None else None
    if r is not None:
        r.close()


class HeadlessRenderer:
    """Render a head to (H, W, 3) uint8 images without a window.

    Filament allows one offscreen renderer per process (two alive abort the process when either is
    destroyed), so creating one closes the previous; reuse it across frames and parameters.
    """

    def __init__(self, mesh: HeadMesh, width: int = 512, height: int = 512, fast: bool = False):
        global _live
        check_offscreen_support()
        import open3d as o3d

        prev = _live() if _live is not None else None
        if prev is not None:
            prev.close()
        o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
        self.width, self.height = int(width), int(height)
        if self.width < 8 or self.height < 8:
            raise ValueError(f"image size must be at least 8x8 pixels, got {self.width}x{self.height}")
        self.renderer = o3d.visualization.rendering.OffscreenRenderer(self.width, self.height)
        self.head = HeadScene(self.renderer.scene, mesh)
        if fast:  # the interactive setting: no MSAA / post-processing (3x faster on llvmpipe)
            self.renderer.scene.view.set_antialiasing(False)
        self.K: Optional[np.ndarray] = None
        self.world_to_cam: Optional[np.ndarray] = None
        _live = weakref.ref(self)

    def close(self) -> None:
        """Release the geometry before the renderer: Filament aborts the process if a renderer is
        destroyed while a material instance is still attached to a renderable."""
        r = getattr(self, "renderer", None)
        if r is not None:
            r.scene.clear_geometry()
            self.renderer = None
            self.head = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def set_camera(self, K: Optional[np.ndarray] = None, world_to_cam: Optional[np.ndarray] = None) -> None:
        """Use ``K``/``world_to_cam`` (OpenCV), or a frontal camera framing the current head if None."""
        if K is None or world_to_cam is None:
            verts = self.head.vertices
            if verts is None:
                raise RuntimeError("set the head parameters before the camera")
            cam = frontal(verts, self.width, self.height)
            K, world_to_cam = cam.K.numpy(), cam.world_to_cam.numpy()
        self.K, self.world_to_cam = np.asarray(K, np.float64), np.asarray(world_to_cam, np.float64)
        # Open3D samples pixel centres at +0.5 (measured: renders were shifted half a pixel up-left otherwise).
        self.renderer.setup_camera(raster_intrinsics(self.K), self.world_to_cam, self.width, self.height)

    def render(self, params: Optional[HeadParams] = None, lighting: Optional[Lighting] = None, mode: Optional[str] = None) -> np.ndarray:
        """(H, W, 3) uint8 image; arguments left None keep their previous state."""
        if self.renderer is None:
            raise RuntimeError("this HeadlessRenderer was closed (a newer one replaced it: Filament allows one per process)")
        if params is not None:
            self.head.set_params(params)
        if mode is not None:
            self.head.set_display(mode)
        if lighting is not None:
            self.head.set_lighting(lighting)
        elif self.head._ibl_prefix is None:
            self.head.apply_lighting()
        if self.K is None:
            self.set_camera()
        return np.asarray(self.renderer.render_to_image()).copy()

    def silhouette(self) -> np.ndarray:
        """(H, W) bool: where the head covers the image (white-on-black unlit pass)."""
        prev = self.head.mode
        img = self.render(mode="mask")
        self.head.set_display(prev)
        return img.mean(2) > 127
