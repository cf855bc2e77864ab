"""What the training frames never showed (avatar3d.avatar.unseen): Gaussians drawn only into the crop's padding go,
the render of what the video showed stays; crop pixels half blended with the padding count as padding."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.dataset import FrameSet, load_frames
from avatar3d.avatar.model import GaussianHead, HeadInit, free_triangles
from avatar3d.avatar.train import AvatarOptions, prepare
from avatar3d.avatar.unseen import MIN_SEEN_PIXELS, hide_unseen, seen_weight


@pytest.fixture(scope="module")
def padded(avatar_truth_dir):
    """The truth's training frames at 64 px with their bottom 24 rows declared padding (the neck below a video's
    edge), and a fresh avatar on them."""
    with torch_threads(1):
        frames, model, train = prepare(avatar_truth_dir, AvatarOptions(resolution=64))
        inside = train.inside.clone()
        inside[:, 40:] = 0
        train = FrameSet(**{**train._asdict(), "inside": inside, "masks": train.masks * (inside > 0)})
        torch.manual_seed(0)
        avatar = GaussianHead.initialise(model, torch.as_tensor(frames.sequence.shape), None, options=HeadInit(uv_resolution=24))
    return train, avatar


@torch.no_grad()
def _renders(avatar: GaussianHead, fs) -> torch.Tensor:
    rows = torch.arange(len(fs))
    return torch.cat([avatar(fs.expression[r:r + 1], fs.pose[r:r + 1], fs.transl[r:r + 1], fs.camera(rows[r:r + 1])).image
                      for r in range(len(fs))])


def test_gaussians_only_in_the_padding_are_removed_and_the_seen_render_stays(padded):
    fs, fresh = padded
    with torch_threads(1):
        avatar = GaussianHead.from_state(fresh.head_model, fresh.avatar_state())
        seen, total = seen_weight(avatar, fs)
        free = free_triangles(avatar.head_model)[avatar.parent]
        # the neck below row 40 draws pixels of the crops, none of the video
        padding_only = (seen < MIN_SEEN_PIXELS) & (total > 1.0)
        assert int((padding_only & free).sum()) > 20
        assert float(seen.max()) > 10 and bool((seen <= total + 1e-3).all())
        before = _renders(avatar, fs)
        removed = hide_unseen(avatar, fs)
        after = _renders(avatar, fs)
    assert removed == int((free & (seen < MIN_SEEN_PIXELS) & (total > 2 * seen)).sum()) and avatar.num_gaussians == fresh.num_gaussians - removed
    assert avatar.params["offset"].shape[0] == len(avatar.parent) == avatar.num_gaussians
    rows = torch.arange(len(fs))
    diff = (fs.seen(rows, after) - fs.seen(rows, before)).abs()
    # each removed Gaussian drew < 0.1 px of video in all frames; a few of them meet at the last video row
    changed = float((diff.amax(-1) > 0.02).float().mean())
    assert float(diff.mean()) < 1e-4 and float(diff.max()) < 0.2 and changed < 1e-3, (float(diff.mean()), float(diff.max()), changed)
    pad = (fs.inside == 0)[..., None].expand_as(before)
    assert float((after - before).abs()[pad].mean()) > 5e-3  # what went did show, in the padding only


def test_an_avatar_seen_everywhere_keeps_every_gaussian(padded):
    fs, fresh = padded
    with torch_threads(1):
        avatar = GaussianHead.from_state(fresh.head_model, fresh.avatar_state())
        full = FrameSet(**{**fs._asdict(), "inside": torch.full_like(fs.inside, 255)})  # (_replace: FrameSet's len is its frames)
        seen = seen_weight(avatar, full).video
        assert hide_unseen(avatar, full, min_weight=0.0) == 0 and avatar.num_gaussians == fresh.num_gaussians
    assert float(seen.sum()) > 100


def test_crop_pixels_blended_with_the_padding_count_as_padding():
    """The row where the crop's resampling meets the padding (inside 128) is half black: neither a target nor scored."""
    H = W = 4
    img = np.full((H, W, 3), 100, np.uint8)
    img[2] = 50  # blended with the black padding below
    img[3] = 0
    ins = np.full((H, W), 255, np.uint8)
    ins[2], ins[3] = 128, 0
    msk = np.full((H, W), 255, np.uint8)
    seq = SimpleNamespace(expression=np.zeros((1, 2)), pose=np.zeros((1, 1, 3)), transl=np.zeros((1, 3)),
                          world_to_cam=np.eye(4)[None])
    tracked = SimpleNamespace(image=lambda i: img, mask=lambda i: msk, inside=lambda i: ins, name=lambda i: f"{i:05d}",
                              sequence=seq, K=np.eye(3)[None], width=W, height=H, directory="track")
    fs = load_frames(tracked, [0])
    assert fs.inside[0, :2].min() == 255 and fs.inside[0, 2:].max() == 0
    t = fs.targets(torch.tensor([0]))[0]
    assert torch.allclose(t[:2], torch.full((2, W, 3), 100 / 255)) and torch.equal(t[2:], torch.ones(2, W, 3))
    assert torch.equal(fs.seen(torch.tensor([0]), torch.zeros(1, H, W, 3))[0, 2:], torch.ones(2, W, 3))
