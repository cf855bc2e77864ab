"""MediaPipe face mesh (478 points with irises) on one face per frame: the largest, consistently.

Uses the face detector + landmark models shipped inside the ``mediapipe`` wheel (offline). In video
mode MediaPipe tracks the face from frame to frame (the detector re-runs only when tracking is lost),
which is what makes it fast.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["FaceLandmarker", "NUM_LANDMARKS", "LEFT_EYE", "RIGHT_EYE", "IRIS_LEFT", "IRIS_RIGHT", "eye_centers", "interocular"]

NUM_LANDMARKS = 478
# MediaPipe face mesh indices. "Left"/"right" are the subject's; in a frontal image the subject's
# right eye is on the image's left. Eye corners (outer, inner) and iris centres.
RIGHT_EYE = (33, 133)
LEFT_EYE = (263, 362)
IRIS_RIGHT = 468
IRIS_LEFT = 473


def eye_centers(lmk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, 2) centres of the subject's right and left eye (mean of the corners) from (…, 478, ≥2)."""
    r = lmk[..., list(RIGHT_EYE), :2].mean(-2)
    l_ = lmk[..., list(LEFT_EYE), :2].mean(-2)
    return r, l_


def interocular(lmk: np.ndarray) -> np.ndarray:
    """(…,) inter-ocular distance (between eye centres) of (…, 478, ≥2) landmarks, same units."""
    r, l_ = eye_centers(lmk)
    return np.linalg.norm(r - l_, axis=-1)


def _bbox(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceLandmarker:
    """Detect 478 face-mesh landmarks of one face per image.

    Args:
        video: True for consecutive video frames (tracking between frames); False for unrelated images.
        max_faces: faces MediaPipe may return; among them we keep the largest at the start and then
            the one overlapping the previous choice most (so a second, passing face does not steal
            the track).
        min_confidence: detection / tracking confidence threshold.
        min_detection_confidence: the face detector's threshold alone (default ``min_confidence``; the
            landmark embedding's flat-shaded renders need a lower one).
        dtype: of the returned landmarks. float64 keeps the exact pixel positions (MediaPipe's
            normalised float32 coordinates times the image size); float32 rounds them once.

    Call with an RGB uint8 (H, W, 3) image; returns (478, 3) landmarks in pixels
    (x right, y down, z relative depth in the same pixel scale, smaller = nearer) or None.
    """

    def __init__(self, video: bool = True, max_faces: int = 2, min_confidence: float = 0.5, min_detection_confidence: Optional[float] = None,
                 dtype: type = np.float32):
        try:
            import mediapipe as mp
        except ImportError as e:  # pragma: no cover - mediapipe is a dependency
            raise ImportError(f"mediapipe is needed to detect face landmarks ({e})") from e

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not video,
            max_num_faces=max_faces,
            refine_landmarks=True,  # 478 points: adds the 10 iris points
            min_detection_confidence=min_confidence if min_detection_confidence is None else min_detection_confidence,
            min_tracking_confidence=min_confidence,  # also drops low-presence landmarks of still images
        )
        self._dtype = dtype
        self._prev_box: Optional[np.ndarray] = None
        self.num_faces_last = 0

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, image: np.ndarray) -> Optional[np.ndarray]:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"FaceLandmarker expects an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(image))
        faces = res.multi_face_landmarks or []
        self.num_faces_last = len(faces)
        if not faces:
            return None
        cands = []
        for f in faces:
            a = np.array([(p.x, p.y, p.z) for p in f.landmark], self._dtype)
            a *= np.array([w, h, w], self._dtype)  # normalised -> pixels; z uses the x scale (MediaPipe docs)
            cands.append(a)
        boxes = [_bbox(c) for c in cands]
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        pick = int(np.argmax(areas))
        if self._prev_box is not None and len(cands) > 1:
            ious = [_iou(b, self._prev_box) for b in boxes]
            if max(ious) > 0.1:
                pick = int(np.argmax(ious))
        self._prev_box = boxes[pick]
        return cands[pick]
