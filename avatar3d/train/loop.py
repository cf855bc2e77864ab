"""The step loop of one :class:`~avatar3d.train.schedule.Stage` for a problem that owns its parameters and loss."""

from __future__ import annotations

from typing import Mapping, Protocol

import torch
from torch import Tensor

from .report import Progress, RunLog
from .schedule import Stage, StageOptimizer

__all__ = ["Problem", "run_stage"]


class Problem(Protocol):
    """What :func:`run_stage` needs of an optimisation problem."""

    def parameters(self) -> Mapping[str, Tensor]:
        """Every trainable tensor, by the names a :class:`Stage` uses."""
        ...

    def loss(self, stage: Stage) -> Tensor:
        """Scalar loss of the current parameters in ``stage``."""
        ...

    def constrain(self) -> None:
        """Project the parameters back into their valid set after a step (called without gradient)."""
        ...


def run_stage(problem: Problem, stage: Stage, log: RunLog, progress: bool = False) -> None:
    """``stage.iters`` Adam steps on ``problem`` with the stage's decaying learning rates; losses go to ``log``."""
    opt = StageOptimizer(stage, problem.parameters())
    with Progress(stage.iters, stage.desc or stage.name, progress, dynamic_ncols=True) as bar:
        for it in range(stage.iters):
            opt.begin(it)
            loss = problem.loss(stage)
            loss.backward()
            opt.step()
            with torch.no_grad():
                problem.constrain()
            log.loss(loss.detach())
            bar.update()
