"""An orbit camera with explicit state: a starting OpenCV camera turned, dollied and panned about a centre.

The avatar view (:mod:`.gaussians`, :mod:`.avatar_app`) drives it with the mouse, and ``--yaw`` turns the
screenshots' camera with it (:mod:`.shot`, :mod:`.gaussians`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..render.camera import scale_intrinsics

__all__ = ["OrbitCamera", "fit_intrinsics"]


def fit_intrinsics(K: np.ndarray, size: tuple[int, int], target: tuple[int, int]) -> np.ndarray:
    """(3, 3) intrinsics showing the view of ``K`` at ``size`` (width, height) letterboxed into ``target``
    (width, height): the whole original picture fits, centred, at one scale (pixel centres at integers)."""
    s = min(target[0] / size[0], target[1] / size[1])
    out = scale_intrinsics(np.asarray(K, np.float64), s)
    out[0, 2] += (target[0] - size[0] * s) / 2
    out[1, 2] += (target[1] - size[1] * s) / 2
    return out


def _rx(degrees: float) -> np.ndarray:
    """(3, 3) rotation about x by ``degrees`` (right-handed)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(degrees: float) -> np.ndarray:
    """(3, 3) rotation about y by ``degrees`` (right-handed)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


class OrbitCamera:
    """A camera turned about ``centre`` starting from ``K``/``world_to_cam`` (OpenCV, a ``size`` = (width, height) picture).

    State (all explicit, :meth:`reset` zeroes it): ``yaw`` degrees the camera circles about its own vertical axis
    through the centre (+: to its right, so the head's near side moves left in the picture; a face looking at the
    camera then shows more of its left cheek), ``pitch`` degrees about its horizontal axis (+: the camera rises,
    the near side moves down), ``zoom`` (camera-to-centre distance factor, < 1 closer), ``pan`` (2,) metres
    across the view at the centre's depth.
    """

    DEG_PER_PIXEL = 0.4  # a drag across a 450-pixel view turns the head 180 degrees

    def __init__(self, K: np.ndarray, world_to_cam: np.ndarray, size: tuple[int, int], centre: np.ndarray):
        self.K0 = np.asarray(K, np.float64)
        self.w2c0 = np.asarray(world_to_cam, np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.centre = np.asarray(centre, np.float64).reshape(3)
        self.reset()

    def reset(self) -> None:
        self.yaw, self.pitch, self.zoom = 0.0, 0.0, 1.0
        self.pan = np.zeros(2)

    @property
    def _centre_cam(self) -> np.ndarray:
        return self.w2c0[:3, :3] @ self.centre + self.w2c0[:3, 3]

    def world_to_cam(self) -> np.ndarray:
        """(4, 4) OpenCV world-to-camera of the current state."""
        c = self._centre_cam
        R = _rx(self.pitch) @ _ry(self.yaw)  # (camera axes: x right, y down, z forward)
        M = np.eye(4)
        M[:3, :3] = R
        M[:3, 3] = c - R @ c + np.array([self.pan[0], self.pan[1], (self.zoom - 1.0) * c[2]])
        return M @ self.w2c0

    def matrices(self, width: Optional[int] = None, height: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """``K`` (3, 3) for a ``width`` x ``height`` picture (default: the original size; the original view
        letterboxed into it) and ``world_to_cam`` (4, 4)."""
        size = (width or self.size[0], height or self.size[1])
        return fit_intrinsics(self.K0, self.size, size), self.world_to_cam()

    # ------------------------------------------------------------------ mouse gestures
    def drag(self, dx: float, dy: float) -> None:
        """Turn by a mouse drag of (dx, dy) pixels (x right, y down): the head's near side follows the mouse."""
        self.yaw -= dx * self.DEG_PER_PIXEL
        self.pitch = float(np.clip(self.pitch + dy * self.DEG_PER_PIXEL, -89.0, 89.0))

    def move(self, dx: float, dy: float, view_width: int) -> None:
        """Pan by a drag of (dx, dy) pixels in a view ``view_width`` pixels wide (the head follows the mouse)."""
        K, _ = self.matrices(view_width, max(1, round(view_width * self.size[1] / self.size[0])))
        depth = self._centre_cam[2] * self.zoom
        self.pan += np.array([dx, dy]) * depth / K[0, 0]

    def wheel(self, steps: float) -> None:
        """Zoom by mouse-wheel ``steps`` (+: closer), 10 % of the distance per step, within 0.2x to 5x."""
        self.zoom = float(np.clip(self.zoom * 0.9 ** steps, 0.2, 5.0))
