"""Per-frame corrections of the tracked parameters, refined jointly with the avatar on the training frames only.

The tracker fits a mesh to landmarks and a low-resolution texture; a few millimetres or a little jaw opening off
in one frame blur the Gaussians that must explain it. :class:`FrameRefinement` holds, for each *training* frame,
a small correction to its expression, joint rotations (jaw, neck, eyes, root) and translation, all starting at zero;
the trainer adds them to the tracked values and steps them with Adam at small learning rates (:data:`REFINE_LRS`),
so the Gaussians explain the images and the parameters absorb per-frame tracking error. Held-out frames never
get a correction: they are driven by their tracked parameters alone, as any new sequence would be.
Shapes: n training frames, E expressions, J joints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FrameRefinement", "REFINE_LRS"]

#: Adam learning rates per step (expression coefficients, radians, metres): a few hundred steps per frame move
#: an expression by ~0.1, a joint by ~1 degree and the head by ~1 mm at most.
REFINE_LRS = {"expression": 1e-3, "pose": 1e-4, "transl": 1e-5}


class FrameRefinement(nn.Module):
    """Zero-initialised corrections ``expression`` (n, E), ``pose`` (n, J, 3) axis-angle, ``transl`` (n, 3) metres."""

    def __init__(self, n: int, num_expression: int, num_joints: int):
        super().__init__()
        self.expression = nn.Parameter(torch.zeros(n, num_expression))
        self.pose = nn.Parameter(torch.zeros(n, num_joints, 3))
        self.transl = nn.Parameter(torch.zeros(n, 3))

    def forward(self, rows: Tensor, expression: Tensor, pose: Tensor, transl: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The tracked parameters of rows ``rows`` (B,) (``expression`` (B, E), ``pose`` (B, J, 3), ``transl`` (B, 3))
        plus their corrections."""
        return expression + self.expression[rows], pose + self.pose[rows], transl + self.transl[rows]

    def optimizer(self, scale: float = 1.0) -> torch.optim.Optimizer:
        """Adam over the three corrections at :data:`REFINE_LRS` times ``scale``."""
        return torch.optim.Adam([{"params": [getattr(self, k)], "lr": lr * scale} for k, lr in REFINE_LRS.items()], eps=1e-15)

    def regulariser(self) -> Tensor:
        """Mean square of the expression corrections (the tracked values stay the prior)."""
        return self.expression.square().mean()
