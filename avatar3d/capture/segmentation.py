"""Foreground (person) mask with MediaPipe selfie segmentation, from the model inside the wheel."""

from __future__ import annotations

import numpy as np

__all__ = ["Segmenter"]


class Segmenter:
    """Person/background segmentation. Call with RGB uint8 (H, W, 3); returns (H, W) float32 in [0, 1].

    ``landscape=False`` uses the general 256x256 model (better on square head crops than the
    144x256 landscape one).
    """

    def __init__(self, landscape: bool = False):
        import mediapipe as mp

        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=1 if landscape else 0)

    def close(self) -> None:
        self._seg.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"Segmenter expects an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        res = self._seg.process(np.ascontiguousarray(image))
        m = res.segmentation_mask
        if m is None:
            return np.zeros(image.shape[:2], np.float32)
        return np.clip(np.asarray(m, np.float32), 0.0, 1.0)
