"""Capture: streaming frames (video / image folder / image), stable head crops, MediaPipe landmarks and masks."""

from .stage import CaptureResult, run_capture
from .video import FrameSource, open_source

__all__ = ["CaptureResult", "run_capture", "FrameSource", "open_source"]
