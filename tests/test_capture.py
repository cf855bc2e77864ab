"""Capture stage: streaming decode (rotation), crops, landmarks, masks, failure flags, bad input."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from avatar3d.capture.crop import apply_crop, interpolate_invalid, to_crop_coords
from avatar3d.capture.landmarks import interocular
from avatar3d.capture.stage import CaptureResult, run_capture
from avatar3d.capture.video import open_source
from avatar3d.errors import BadInputError, MissingFileError
from avatar3d.render.camera import crop_intrinsics
from helpers.video import write_video


def first_frames(video: Path, n: int) -> list[np.ndarray]:
    return [f.image for f in open_source(video, max_frames=n)]


# ---------------------------------------------------------------- decoding
def test_display_rotation_is_honoured(tmp_path):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:16, :32] = 255  # bright top-left quadrant
    p = write_video(tmp_path / "rot.mp4", [img] * 3, rotation=90)
    src = open_source(p)
    assert (src.info.width, src.info.height, src.info.rotation) == (32, 64, 90)
    f = next(iter(src)).image
    assert f.shape == (64, 32, 3)
    # 90 degrees counter-clockwise (ffmpeg's display-rotation sense): top-left goes to bottom-left.
    assert f[40:, :16].mean() > 200 and f[:24].mean() < 30 and f[40:, 20:].mean() < 30
    unrot = next(iter(open_source(write_video(tmp_path / "plain.mp4", [img] * 3)))).image
    assert unrot.shape == (32, 64, 3) and unrot[:12, :28].mean() > 200


def test_portrait_phone_video_is_upright(videos_dir):
    src = open_source(videos_dir / "d13.mp4", max_frames=3)
    assert (src.info.width, src.info.height) == (720, 1280)
    cap = run_capture(src, None, progress=False)
    lm = cap.landmarks[0]
    # Upright face: eyes above the mouth, eye line roughly horizontal.
    eye_y = lm[[33, 133, 263, 362], 1].mean()
    assert eye_y < lm[13, 1] - 40
    assert abs(lm[33, 1] - lm[263, 1]) < 0.2 * abs(lm[33, 0] - lm[263, 0])


def test_fps_and_max_frames(videos_dir):
    src = open_source(videos_dir / "d0.mp4", fps=5)  # 25 fps source, 78 frames
    times = [f.time for f in src]
    assert len(src) == len(times) == 16
    assert np.allclose(np.diff(times), 0.2, atol=0.021)
    assert len(list(open_source(videos_dir / "d0.mp4", max_frames=7))) == 7


def test_decoding_is_streaming(videos_dir):
    tracemalloc.start()
    n = 0
    for f in open_source(videos_dir / "d6.mp4", max_frames=240):
        n += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 240
    assert peak < 12 * 480 * 480 * 3, f"decoding held {peak / 1e6:.1f} MB: frames are being accumulated"


# ---------------------------------------------------------------- bad input
def test_bad_inputs_give_one_clear_error(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        open_source(tmp_path / "nope.mp4")
    (tmp_path / "notes.mp4").write_text("this is not a video")
    with pytest.raises(BadInputError, match="not a readable video"):
        open_source(tmp_path / "notes.mp4")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(BadInputError, match="no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        open_source(tmp_path / "zero.mp4")
    # A valid container whose video stream has no frames (header only).
    c = av.open(str(tmp_path / "noframes.mkv"), "w")
    s = c.add_stream("ffv1", rate=10)
    s.width = s.height = 32
    c.start_encoding() if hasattr(c, "start_encoding") else None
    c.close()
    if (tmp_path / "noframes.mkv").is_file() and (tmp_path / "noframes.mkv").stat().st_size > 0:
        with pytest.raises(BadInputError, match="no video frames|not a readable video|could not be decoded"):
            open_source(tmp_path / "noframes.mkv")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nonsense")
    with pytest.raises(BadInputError, match="not a readable image"):
        open_source(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="fps"):
        open_source(tmp_path / "notes.mp4", fps=0)


def test_no_face_anywhere_is_one_error(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((96, 96, 3), 128, np.uint8) + rng.integers(0, 20, (96, 96, 3), dtype=np.uint8) for _ in range(3)]
    p = write_video(tmp_path / "noface.mp4", frames)
    with pytest.raises(BadInputError, match="no face found in any of the 3 frame"):
        run_capture(p, tmp_path / "out", progress=False)


# ---------------------------------------------------------------- crops and interpolation
def test_interpolate_invalid():
    v = np.array([[0.0], [9.0], [2.0], [9.0], [4.0], [9.0]])
    ok = np.array([True, False, True, False, True, False])
    out = interpolate_invalid(v, ok)
    assert np.allclose(out[:, 0], [0, 1, 2, 3, 4, 4])
    with pytest.raises(ValueError):
        interpolate_invalid(v, np.zeros(6, bool))


def test_crop_coordinates_and_intrinsics_agree():
    rng = np.random.default_rng(1)
    boxes = np.array([[-20, 10, 300], [5, -7, 300]])
    K = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])
    X = rng.uniform([-0.1, -0.1, 0.9], [0.1, 0.1, 1.1], (2, 5, 3))  # camera-space points
    uv = (X @ K.T)[..., :2] / X[..., 2:]
    Kc = crop_intrinsics(K, boxes, 512)
    uvc = np.einsum("nij,npj->npi", Kc, X)
    uvc = uvc[..., :2] / uvc[..., 2:]
    assert np.allclose(to_crop_coords(uv, boxes, 512), uvc, atol=1e-9)
    img = np.zeros((100, 100, 3), np.uint8)
    img[50, 50] = 255
    c = apply_crop(img, np.array([40, 40, 20]), 20)  # no resize: exact pixel lands at (10, 10)
    assert c[10, 10, 0] == 255 and c.sum() == 255 * 3
    assert apply_crop(img, np.array([-50, -50, 40]), 40).sum() == 0  # fully outside: black


def test_crop_is_stable_and_follows_the_head(videos_dir):
    cap = run_capture(videos_dir / "d12.mp4", None, max_frames=90, progress=False)  # head motion
    assert cap.valid.all()
    assert len(set(cap.boxes[:, 2].tolist())) == 1  # one size per clip
    centre = cap.boxes[:, :2] + cap.boxes[:, 2:] / 2
    raw = cap.landmarks[..., :2].mean(1) * cap.boxes[0, 2] / cap.resolution + cap.boxes[:, :2]  # face centre, source px
    acc_crop = np.abs(np.diff(centre, 2, axis=0)).mean()
    acc_raw = np.abs(np.diff(raw, 2, axis=0)).mean()
    assert acc_crop < 0.5 * acc_raw, (acc_crop, acc_raw)
    # The face stays well inside the crop.
    lm = cap.landmarks[..., :2]
    assert lm.min() > 0.05 * cap.resolution and lm.max() < 0.95 * cap.resolution


# ---------------------------------------------------------------- the stage end to end
def test_capture_writes_crops_masks_and_flags_failures(videos_dir, tmp_path, out_dir):
    frames = first_frames(videos_dir / "d0.mp4", 8)
    frames[3] = np.zeros_like(frames[3])  # a frame with no face
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), f[..., ::-1])
    cap = run_capture(folder, tmp_path / "out", progress=False)
    assert cap.valid.tolist() == [True, True, True, False, True, True, True, True]
    # The failed frame is interpolated between its neighbours, not dropped.
    # (interpolated in source pixels; the smoothed crop moves by under a pixel between frames)
    assert np.abs(cap.landmarks[3] - (cap.landmarks[2] + cap.landmarks[4]) / 2).max() < 1.5
    imgs = sorted((tmp_path / "out" / "images").glob("*.png"))
    masks = sorted((tmp_path / "out" / "masks").glob("*.png"))
    assert [p.stem for p in imgs] == [f"f{i:03d}" for i in range(8)] == [p.stem for p in masks]
    m = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert m.shape == (512, 512)
    # Mask: the face (landmarks) is foreground, the crop's corners are background.
    lm = cap.landmarks[0].astype(int)
    assert m[lm[:468, 1].clip(0, 511), lm[:468, 0].clip(0, 511)].mean() > 200
    assert m[:20, :20].mean() < 60
    from avatar3d.data.frames import inside_mask

    inside = inside_mask(cap.boxes[0], cap.source_size, 512)
    assert (m[inside == 0] == 0).all()  # black padding outside the source frame is never "person"
    iod = interocular(cap.landmarks[cap.valid])
    assert 40 < iod.mean() < 250
    vis = cv2.imread(str(imgs[0]))
    for p in cap.landmarks[0]:
        cv2.circle(vis, (int(p[0]), int(p[1])), 1, (0, 255, 0), -1)
    cv2.imwrite(str(out_dir / "capture_d0_landmarks.png"), np.concatenate([vis, cv2.cvtColor(m, cv2.COLOR_GRAY2BGR)], 1))
    again = CaptureResult.load(tmp_path / "out" / "capture.npz")
    assert np.array_equal(again.valid, cap.valid) and again.names == cap.names


def test_single_image_and_very_short_clip(videos_dir, tmp_path):
    frames = first_frames(videos_dir / "d3.mp4", 2)
    cv2.imwrite(str(tmp_path / "one.jpg"), frames[0][..., ::-1])
    one = run_capture(tmp_path / "one.jpg", tmp_path / "o1", progress=False)
    assert one.num_frames == 1 and one.valid.all() and (tmp_path / "o1" / "images" / "one.png").is_file()
    two = run_capture(write_video(tmp_path / "two.mp4", frames), tmp_path / "o2", progress=False)
    assert two.num_frames == 2 and two.valid.all()


def test_several_faces_tracks_the_largest(videos_dir, tmp_path):
    big = first_frames(videos_dir / "d0.mp4", 4)
    canvas = []
    for f in big:
        c = np.full((512, 900, 3), 90, np.uint8)
        c[:, :512] = f
        c[300:428, 700:828] = cv2.resize(f, (128, 128), interpolation=cv2.INTER_AREA)  # a second, smaller face
        canvas.append(c)
    cap = run_capture(write_video(tmp_path / "two_faces.mp4", canvas), None, progress=False)
    assert cap.valid.all()
    centre_x = cap.boxes[:, 0] + cap.boxes[:, 2] / 2
    assert (centre_x < 512).all(), centre_x  # always the large face on the left
