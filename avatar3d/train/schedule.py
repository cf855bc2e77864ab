"""Optimisation stages: which named parameters move, at which learning rates, for how many steps.

A trainer describes its schedule as a list of :class:`Stage` (data, no behaviour) and runs each with
a :class:`StageOptimizer`, which builds torch's Adam over the stage's parameter groups and decays
their learning rates along the stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor

__all__ = ["Stage", "StageOptimizer", "cosine_decay"]


def cosine_decay(step: int, steps: int, floor: float) -> float:
    """Learning-rate factor at ``step`` of ``steps``: half a cosine from 1 at the first step down to ``floor`` at the last."""
    frac = step / max(1, steps - 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))


@dataclass
class Stage:
    """One stage of an optimisation schedule.

    Attributes:
        name: what the trainer calls the stage (its problem may behave differently per stage).
        iters: optimiser steps.
        lrs: learning rate per parameter name; parameters not named here do not move in this stage.
        desc: progress-bar label.
        decay_floor: the learning rates decay (cosine) to this fraction of ``lrs`` at the last step.
    """

    name: str
    iters: int
    lrs: dict[str, float] = field(default_factory=dict)
    desc: str = ""
    decay_floor: float = 0.1


class StageOptimizer:
    """torch Adam over the parameters a :class:`Stage` names, with its learning-rate decay.

    Parameters that do not require a gradient are left out (e.g. a joint the model lacks).

    Args:
        stage: the stage; params: every trainable tensor of the problem, by name.
    """

    def __init__(self, stage: Stage, params: Mapping[str, Tensor]):
        self.stage = stage
        groups = [dict(params=[params[k]], lr=lr) for k, lr in stage.lrs.items() if params[k].requires_grad]
        self.opt = torch.optim.Adam(groups)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]

    def begin(self, step: int) -> None:
        """Set the learning rates of ``step`` and clear the gradients."""
        factor = cosine_decay(step, self.stage.iters, self.stage.decay_floor)
        for g, base in zip(self.opt.param_groups, self.base_lrs):
            g["lr"] = base * factor
        self.opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One Adam step on the gradients of the last backward pass."""
        self.opt.step()
