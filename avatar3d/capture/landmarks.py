"""MediaPipe face mesh (478 points with irises) on one face per frame: the largest, consistently.

Uses the face detector + landmark models shipped inside the ``mediapipe`` wheel (offline). In video
mode MediaPipe tracks the face from frame to frame (the detector re-runs only when tracking is lost),
which is what makes it fast.

The face mesh's own detector is short-range: it misses faces smaller than about a fifth of the frame
(a 170 px face in a 1080p shot). With ``small_faces`` on, a frame where it finds nothing is searched again
with the wheel's full-range detector (faces down to about 60 px), and the mesh runs on an upscaled square
crop around the face; the landmarks are mapped back to the frame's pixels. Frames where the face mesh
finds the face itself are untouched.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["FaceLandmarker", "SmallFaceSearch", "NUM_LANDMARKS", "LEFT_EYE", "RIGHT_EYE", "IRIS_LEFT", "IRIS_RIGHT", "eye_centers", "interocular"]

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
        small_faces: when the face mesh finds no face, look again with the full-range detector and run
            the mesh on an upscaled crop (:class:`SmallFaceSearch`).

    Call with an RGB uint8 (H, W, 3) image; returns (478, 3) landmarks in pixels
    (x right, y down, z relative depth in the same pixel scale, smaller = nearer) or None.
    """

    def __init__(self, video: bool = True, max_faces: int = 2, min_confidence: float = 0.5, min_detection_confidence: Optional[float] = None,
                 dtype: type = np.float32, small_faces: bool = False):
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
        self._small = SmallFaceSearch(dtype=dtype, min_confidence=min_confidence) if small_faces else None
        self.num_faces_last = 0
        self.small_face_frames = 0  #: frames whose face only the full-range search found

    def close(self) -> None:
        self._mesh.close()
        if self._small is not None:
            self._small.close()

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
            return self._search_small(image)
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

    def _search_small(self, image: np.ndarray) -> Optional[np.ndarray]:
        """The full-range search of a frame where the face mesh found nothing (None when off or not found)."""
        if self._small is None:
            return None
        pts = self._small(image, self._prev_box)
        if pts is None:
            return None
        self.num_faces_last = 1
        self.small_face_frames += 1
        self._prev_box = _bbox(pts)
        return pts


def _tiles(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (x0, y0, side, side) of two thirds of the shorter side covering a w x h frame."""
    side = max(1, int(round(min(w, h) * 2 / 3)))
    xs = np.linspace(0, w - side, int(np.ceil((w - side) / (side / 2))) + 1).round().astype(int)
    ys = np.linspace(0, h - side, int(np.ceil((h - side) / (side / 2))) + 1).round().astype(int)
    return [(int(x), int(y), side, side) for y in ys for x in xs]


class SmallFaceSearch:
    """Landmarks of a face too small for the face mesh's own detector.

    The full-range face detector (``face_detection_full_range_sparse`` in the wheel) finds the face, or
    the previous frame's face box is used when it does not; a square crop of ``margin`` times the box
    around it is resized to ``crop`` pixels and a still-image face mesh runs on it. Returns (478, 3)
    frame-pixel landmarks (z in the same pixel scale) or None.

    Args:
        dtype: of the landmarks. min_confidence: the face mesh's threshold on the crop.
        detector_confidence: the full-range detector's threshold. Low, because its scores on small faces are
            low (0.4-0.6 on an 85 px face) and the face mesh on the crop confirms or rejects what it finds.
        crop: side of the resized crop in pixels. margin: crop side / the face box's longer side.
    """

    def __init__(self, dtype: type = np.float32, min_confidence: float = 0.5, detector_confidence: float = 0.2, crop: int = 384,
                 margin: float = 2.2):
        import mediapipe as mp

        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=detector_confidence)
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                                     min_detection_confidence=min_confidence)
        self.crop, self.margin, self._dtype = int(crop), float(margin), dtype

    def close(self) -> None:
        self._detector.close()
        self._mesh.close()

    def face_box(self, image: np.ndarray) -> Optional[np.ndarray]:
        """(4,) x0, y0, x1, y1 pixel box of the largest face the full-range detector finds, or None.

        The whole frame first; where that finds nothing, overlapping square tiles of two thirds of its
        shorter side (the detector sees a 192 px resample, in which an 85 px face of a 1080p frame is
        8 px and found or missed by where it falls; in a tile it is 15 px)."""
        h, w = image.shape[:2]
        for x0, y0, side_x, side_y in [(0, 0, w, h), *_tiles(w, h)]:
            tile = np.ascontiguousarray(image[y0:y0 + side_y, x0:x0 + side_x])
            boxes = []
            for d in self._detector.process(tile).detections or []:
                b = d.location_data.relative_bounding_box
                boxes.append(np.array([x0 + b.xmin * side_x, y0 + b.ymin * side_y, x0 + (b.xmin + b.width) * side_x,
                                       y0 + (b.ymin + b.height) * side_y], np.float64))
            if boxes:
                return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        return None

    def __call__(self, image: np.ndarray, previous_box: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """(478, 3) frame-pixel landmarks of the face in RGB uint8 ``image``; ``previous_box`` (x0, y0, x1, y1) of
        the last frame's landmarks is where to look when the detector misses (motion blur, a turned head)."""
        box = self.face_box(image)
        if box is None:
            box = previous_box
        if box is None:
            return None
        x0, y0, side = self._square(box)
        pts = self._landmarks_in_crop(image, x0, y0, side)
        if pts is None:
            return None
        pts = pts * (side / self.crop)  # crop pixels -> frame pixels (z shares the x scale)
        pts[:, 0] += x0
        pts[:, 1] += y0
        return pts.astype(self._dtype)

    def _square(self, box: np.ndarray) -> tuple[int, int, int]:
        """Top-left corner and side (integer pixels) of the square crop around ``box``."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = max(8, int(round(self.margin * max(box[2] - box[0], box[3] - box[1]))))
        return int(round(cx - side / 2)), int(round(cy - side / 2)), side

    def _landmarks_in_crop(self, image: np.ndarray, x0: int, y0: int, side: int) -> Optional[np.ndarray]:
        """(478, 3) float64 landmarks in pixels of the ``crop``-sized resample of the square at (x0, y0)."""
        import cv2

        h, w = image.shape[:2]
        pad = np.zeros((side, side, 3), np.uint8)  # the part outside the frame stays black
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        pad[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
        interp = cv2.INTER_CUBIC if side < self.crop else cv2.INTER_AREA
        crop = cv2.resize(pad, (self.crop, self.crop), interpolation=interp)
        faces = self._mesh.process(crop).multi_face_landmarks or []
        if not faces:
            return None
        # MediaPipe's coordinates are normalised to the image's edges (times the size, as FaceLandmarker
        # returns them), so crop -> frame is a scale and a shift, with no half-pixel term.
        return np.array([(p.x, p.y, p.z) for p in faces[0].landmark], np.float64) * self.crop
