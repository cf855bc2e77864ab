"""The data layer: TrackedFrames (lazy, downscaled consistently), the train/test split, the head-source resolver."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar3d.data import frames as frames_mod
from avatar3d.data.frames import TrackedFrames
from avatar3d.data.sequence import TrackedSequence
from avatar3d.data.source import resolve_head_source
from avatar3d.data.split import holdout_count, train_test_split
from avatar3d.errors import BadInputError
from avatar3d.render.camera import scale_intrinsics, scale_pixels

SIZE = 128
BLOCK = 8


def project(K: np.ndarray, w2c: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(2,) pixel position (centres at integers) of world point X (3,)."""
    c = w2c[:3, :3] @ X + w2c[:3, 3]
    return (K @ (c / c[2]))[:2]


def block_origin(i: int) -> tuple[int, int]:
    """Top-left pixel of frame i's white block (multiples of 4, so a 4x downscale keeps it on whole pixels)."""
    return 16 + 8 * i, 40 + 4 * i


def make_tracking_dir(d: Path, n: int = 6) -> TrackedSequence:
    """A tracking directory of ``n`` frames: frame i shows a white 8x8 block whose centre is where the point
    (0, 0, 0) projects (the camera moves with the block), and its mask marks the same block."""
    import cv2

    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    K = np.zeros((n, 3, 3), np.float32)
    for i in range(n):
        x0, y0 = block_origin(i)
        # Principal point at the block centre: pixels x0..x0+7 have their centre at x0 + 3.5.
        K[i] = [[200.0, 0, x0 + (BLOCK - 1) / 2], [0, 200.0, y0 + (BLOCK - 1) / 2], [0, 0, 1]]
        img = np.zeros((SIZE, SIZE, 3), np.uint8)
        img[..., 2] = 10 * i  # a per-frame tint (blue in RGB) to tell frames apart
        img[y0 : y0 + BLOCK, x0 : x0 + BLOCK] = 255
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[y0 : y0 + BLOCK, x0 : x0 + BLOCK] = 255
        cv2.imwrite(str(d / "images" / f"{i:06d}.png"), img[..., ::-1])
        cv2.imwrite(str(d / "masks" / f"{i:06d}.png"), mask)
    w2c = np.repeat(np.eye(4, dtype=np.float32)[None], n, 0)
    w2c[:, 2, 3] = 1.0  # the point (0, 0, 0) one metre in front of the camera
    seq = TrackedSequence(model="toy", model_version="1", fps=25.0, shape=np.zeros(3, np.float32),
                          expression=np.arange(n * 2, dtype=np.float32).reshape(n, 2), pose=np.zeros((n, 2, 3), np.float32),
                          transl=np.zeros((n, 3), np.float32), K=K, world_to_cam=w2c, width=SIZE, height=SIZE,
                          valid=np.arange(n) != 2, frame_names=[f"{i:06d}" for i in range(n)])
    seq.save(d)
    return seq


@pytest.fixture
def tracked(tmp_path) -> Path:
    make_tracking_dir(tmp_path / "t")
    return tmp_path / "t"


def test_frames_give_image_mask_camera_and_params(tracked):
    frames = TrackedFrames(tracked)
    assert len(frames) == 6 and [f.index for f in frames] == list(range(6))
    f = frames[3]
    assert f.name == "000003" and f.image.shape == (SIZE, SIZE, 3) and f.image.dtype == np.uint8 and f.image.flags.c_contiguous
    assert f.image[0, 0].tolist() == [0, 0, 30]  # RGB order
    assert f.mask.shape == (SIZE, SIZE) and f.mask.max() == 255
    assert f.camera.width == f.camera.height == SIZE and f.camera.K.shape == (3, 3) and f.camera.world_to_cam.shape == (4, 4)
    assert f.params.expression.tolist() == [6.0, 7.0] and f.params.pose.shape == (2, 3) and f.params.shape.shape == (3,)
    assert f.valid and not frames[2].valid
    assert frames[-1].index == 5
    with pytest.raises(IndexError):
        frames[6]


def test_frames_decode_only_the_frame_accessed(tracked, monkeypatch):
    decoded: list[str] = []
    real = frames_mod._read

    def counting(path, gray):
        decoded.append(Path(path).relative_to(tracked).as_posix())
        return real(path, gray)

    monkeypatch.setattr(frames_mod, "_read", counting)
    frames = TrackedFrames(tracked)
    assert decoded == []  # opening reads params.npz only
    frames.camera(4), frames.params(4)
    assert decoded == []
    frames[4]
    assert decoded == ["images/000004.png", "masks/000004.png"]
    frames.mask(1)
    assert decoded[2:] == ["masks/000001.png"]


def test_missing_images_are_none_not_an_error(tracked):
    (tracked / "images" / "000001.png").unlink()
    frames = TrackedFrames(tracked)
    assert frames.image(1) is None and frames.mask(1) is not None and frames[1].image is None


@pytest.mark.parametrize("resolution", [SIZE, 64, 32])
def test_downscaling_keeps_images_masks_and_cameras_consistent(tracked, resolution):
    """The block's centre in the resized image and mask is where the scaled camera projects the point."""
    frames = TrackedFrames(tracked, resolution=resolution)
    s = resolution / SIZE
    assert frames.scale == s and frames.width == frames.height == resolution
    for i in (0, 5):
        f = frames[i]
        assert f.image.shape == (resolution, resolution, 3) and f.mask.shape == (resolution, resolution)
        assert (f.camera.width, f.camera.height) == (resolution, resolution)
        uv = project(f.camera.K.numpy().astype(np.float64), f.camera.world_to_cam.numpy().astype(np.float64), np.zeros(3))
        for a in (f.mask.astype(np.float64), f.image[..., 0].astype(np.float64)):
            ys, xs = np.mgrid[: a.shape[0], : a.shape[1]]
            centroid = np.array([(a * xs).sum(), (a * ys).sum()]) / a.sum()
            np.testing.assert_allclose(centroid, uv, atol=1e-6)
        x0, y0 = block_origin(i)
        np.testing.assert_allclose(uv, scale_pixels(np.array([x0 + 3.5, y0 + 3.5]), s), atol=1e-6)


def test_scale_intrinsics_does_not_touch_its_input():
    K = np.array([[100.0, 0, 63.5], [0, 100.0, 63.5], [0, 0, 1]], np.float32)
    half = scale_intrinsics(K, 0.5)
    assert K[0, 2] == 63.5 and half[0, 0] == 50.0 and half[0, 2] == 31.5 and half[2].tolist() == [0, 0, 1]


def test_bad_directory_and_resolution_are_one_sentence(tmp_path, tracked):
    with pytest.raises(BadInputError, match="not a tracking output directory"):
        TrackedFrames(tmp_path / "nothing")
    with pytest.raises(ValueError, match="positive"):
        TrackedFrames(tracked, resolution=0)
    (tracked / "masks" / "000000.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="000000.png is not a readable image"):
        TrackedFrames(tracked).mask(0)


# ---------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize("n, held_out", [(0, 0), (1, 0), (2, 1), (10, 5), (59, 29), (60, 30), (100, 30), (200, 30), (201, 31),
                                         (354, 54), (1000, 150)])
def test_holdout_is_the_last_15_percent_at_least_30_at_most_half(n, held_out):
    assert holdout_count(n) == held_out
    sp = train_test_split(n)
    assert len(sp.test) == held_out and len(sp.train) == n - held_out
    assert np.concatenate([sp.train, sp.test]).tolist() == list(range(n))  # test = the last frames, in order
    if n >= 2:
        assert len(sp.train) >= len(sp.test)


def test_frames_split_is_the_sequence_split(tracked):
    sp = TrackedFrames(tracked).split()
    assert sp.train.tolist() == [0, 1, 2] and sp.test.tolist() == [3, 4, 5]


def test_holdout_rejects_negative_counts():
    with pytest.raises(ValueError):
        holdout_count(-1)


# ---------------------------------------------------------------------------------------------- head source


def test_head_source_resolver(tmp_path, tracked):
    src = resolve_head_source(str(tracked))
    assert src.is_sequence and src.directory == tracked and src.model_spec == "toy" and src.sequence.num_frames == 6
    assert resolve_head_source("ict=/x/y").model_spec == "ict=/x/y" and not resolve_head_source("builtin").is_sequence
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="not a tracking or avatar output directory"):
        resolve_head_source(tmp_path / "empty")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(BadInputError, match="is a file"):
        resolve_head_source(tmp_path / "f.txt", known_models=("builtin",))
    with pytest.raises(BadInputError, match="unknown export source 'smpl'"):
        resolve_head_source("smpl", known_models=("builtin",), what="export source")
