"""The avatar's frames (avatar3d.avatar.dataset): targets over white, and where the starting colours come from."""

from __future__ import annotations

import numpy as np
import torch

from avatar3d.appearance.maps import AppearanceMaps
from avatar3d.avatar.dataset import FrameSet, initial_texture
from avatar3d.render.color import srgb_encode


def test_targets_are_the_masked_frames_over_white():
    img = torch.full((1, 4, 4, 3), 100, dtype=torch.uint8)
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, :2] = 255
    mask[0, 2, 0] = 51  # a soft edge: 20 % foreground
    inside = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    inside[0, :, 3] = 0  # the crop's last column lies past the video's edge
    fs = FrameSet(torch.tensor([7]), img, mask, inside, torch.zeros(1, 2), torch.zeros(1, 1, 3), torch.zeros(1, 3),
                  torch.eye(3)[None], torch.eye(4)[None], 4, 4)
    t = fs.targets(torch.tensor([0]))
    assert torch.allclose(t[0, :2], torch.full((2, 4, 3), 100 / 255))
    assert torch.allclose(t[0, 3], torch.ones(4, 3))
    assert torch.allclose(t[0, 2, 0], torch.full((3,), 0.2 * 100 / 255 + 0.8))
    assert len(fs) == 1 and fs.camera(torch.tensor([0])).K.shape == (1, 3, 3)
    seen = fs.seen(torch.tensor([0]), torch.zeros(1, 4, 4, 3))  # what the video never showed is white, like the target
    assert torch.equal(seen[0, :, 3], torch.ones(4, 3)) and torch.equal(seen[0, :, :3], torch.zeros(4, 3, 3))


def test_inside_masks_follow_the_capture_boxes():
    """A crop reaching past the video's bottom edge: its last rows are padding, at any reader resolution."""
    from avatar3d.data.frames import inside_mask

    m = inside_mask(np.array([0, 50, 100]), (100, 100), 64)  # rows 50..99 of the source, then 50 rows of padding
    assert m[:32].min() == 1 and m[32:].max() == 0 and m.shape == (64, 64)


def test_initial_texture_prefers_the_appearance_maps_then_the_tracker_albedo(tmp_path):
    import cv2

    assert initial_texture(tmp_path) == (None, "grey")
    alb = np.zeros((8, 8, 3), np.uint8)
    alb[..., 0] = 200  # red, stored RGB -> BGR on disk
    cv2.imwrite(str(tmp_path / "albedo.png"), alb[..., ::-1])
    tex, src = initial_texture(tmp_path)
    assert src == "albedo.png" and np.allclose(tex[0, 0], [200 / 255, 0, 0])
    albedo = np.full((16, 16, 3), 0.25, np.float32)
    AppearanceMaps.priors(albedo, np.ones((16, 16), np.float32), np.zeros((9, 3), np.float32)).save(tmp_path / "appearance")
    tex, src = initial_texture(tmp_path)
    assert src == "appearance/albedo.png" and tex.shape == (16, 16, 3)
    assert np.allclose(tex, srgb_encode(0.25), atol=1 / 255)  # display colours: the linear albedo sRGB-encoded
