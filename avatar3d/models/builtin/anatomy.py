"""Anatomical key points and proportions of the built-in head (metres, +Y up, face towards +Z).

Origin: the midpoint between the two ear canals (tragion level), so the skull base, TMJ and eyes
sit near the origin and rotations of the head look natural. Proportions follow average adult
anthropometry (chin to crown 0.23 m, head breadth 0.155 m, head length 0.20 m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Anatomy:
    """Where the generator puts things. Left = the subject's left = +X."""

    crown_y: float = 0.125  #: top of the head
    chin_y: float = -0.105  #: menton (bottom of the chin)
    neck_cut_y: float = -0.19  #: the open boundary where a body would attach
    eye_center: tuple = (0.0315, 0.012, 0.067)  #: left eyeball centre (right is mirrored)
    eye_radius: float = 0.0120
    lid_radius: float = 0.0134  #: eyelid skin sits on this sphere around the eyeball centre
    eye_half_width: float = 0.0138  #: half the palpebral fissure length
    eye_open_up: float = 0.0037  #: upper-lid margin above the eye centre (open eye)
    eye_open_down: float = 0.0030  #: lower-lid margin below the eye centre
    mouth_y: float = -0.0625  #: stomion (the lip contact line) at the midline
    mouth_z: float = 0.0955
    mouth_half_width: float = 0.0245
    nose_tip: tuple = (0.0, -0.026, 0.114)
    subnasale: tuple = (0.0, -0.043, 0.100)
    ray_center: tuple = (0.0, 0.0, -0.005)  #: every head-surface ray starts here (the surface is star-shaped around it)
    neck_center_z: float = -0.030  #: the neck sits behind the ear canal and leans forward going up (as in scans)
    neck_radii: tuple = (0.060, 0.062)  #: neck half-width (x) and half-depth (z) at the cut
    ear_root: tuple = (0.074, -0.004, -0.008)  #: where the left ear attaches (front of the ear, at the tragus)
    tmj: tuple = (0.0, -0.008, 0.004)  #: jaw hinge axis midpoint (the axis is X)
    skull_base: tuple = (0.0, -0.035, -0.022)  #: neck joint (C1/occipital condyles)
    neck_base: tuple = (0.0, -0.18, -0.029)  #: root joint

    def eye(self, side: int) -> np.ndarray:
        """Eyeball centre for side +1 (left, +X) or -1 (right)."""
        c = np.array(self.eye_center, float)
        c[0] *= side
        return c

    def mouth_line(self, x: np.ndarray) -> np.ndarray:
        """(N, 3) points of the lip contact line at lateral offsets x (|x| <= mouth_half_width).

        The line follows the dental arch (corners set back) and turns up slightly at the corners.
        """
        t = np.clip(np.abs(x) / self.mouth_half_width, 0, 1)
        y = self.mouth_y + 0.0015 * t**2
        z = self.mouth_z - 0.016 * t**2.2
        return np.stack([x, y, z], 1)


DEFAULT = Anatomy()
