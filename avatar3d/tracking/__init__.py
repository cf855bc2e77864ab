"""Tracking: fit a head model to a capture (landmarks), write the tracking directory (see ``pipeline``)."""
