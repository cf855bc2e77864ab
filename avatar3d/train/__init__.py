"""Pieces every optimisation loop of avatar3d shares: stages and their learning-rate schedule, frame
mini-batches, per-frame (row-wise) Adam, progress and run log.

The tracking fits (:mod:`avatar3d.tracking.fitting`, :mod:`avatar3d.tracking.photometric`) are built
from them, and so are the trainers that come after tracking (appearance maps, avatars): each trainer
keeps its own problem (parameters and loss terms) and takes the loop's plumbing from here, so nothing
here imports a stage.
"""

from .batches import FrameBatches
from .loop import Problem, run_stage
from .report import Progress, RunLog
from .row_adam import RowAdam
from .schedule import Stage, StageOptimizer, cosine_decay

__all__ = ["Stage", "StageOptimizer", "cosine_decay", "Problem", "run_stage", "FrameBatches", "RowAdam", "Progress", "RunLog"]
