"""Tracking: fit a head model to a capture (landmarks), write the tracking directory (see ``pipeline``)."""

from .sequence import PARAMS_FILE, TRANSFORMS_FILE, TrackedSequence

__all__ = ["TrackedSequence", "PARAMS_FILE", "TRANSFORMS_FILE"]
