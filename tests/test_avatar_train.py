"""Training a Gaussian head avatar (avatar3d.avatar.train) on a rendered ground truth: the path-traced capture of the
built-in head (24 frames at 192^2, Mitsuba, cached) with its TRUE parameters as the tracking.

The capture is one head turn (yaw +35 -> -35 degrees): the split's held-out half (the last 12 frames) would be the
side of the face no training frame saw. The tracking directory therefore lists the frames interleaved (even frames
first, then odd: frame names keep the capture's numbers), so the held-out frames are new poses and expressions
*between* the trained ones. Measured held-out PSNR / SSIM over the whole 192^2 frame on white (this machine, 1 torch
thread, ~0.12 s a step, 26k Gaussians, no densification, a 300-step schedule):

===============================  =========  ======  ==============================
start                            steps      PSNR    SSIM
===============================  =========  ======  ==============================
grey                             0          17.8    0.773
colours from the frames          0          23.5    0.842
colours from the frames          60         26.6    0.894
colours from the frames          120        27.8    0.899
colours from the frames          300        28.9    0.898   (35 s)
grey (3DGS colour rate 2.5e-3)   300        27.3    0.894
===============================  =========  ======  ==============================

The capture's own Monte Carlo noise (~27 dB linear on face pixels) bounds what any model reaches on the face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.backproject import backproject_colours
from avatar3d.avatar.dataset import load_frames
from avatar3d.avatar.evaluate import evaluate_avatar
from avatar3d.avatar.model import HeadInit
from avatar3d.avatar.strategy import DensifyOptions
from avatar3d.avatar.train import AVATAR_FILE, CHECKPOINT_FILE, LOG_FILE, AvatarOptions, AvatarTrainer, load_avatar, prepare, train_avatar
from avatar3d.data.frames import TrackedFrames
from avatar3d.errors import BadInputError
from avatar3d.synthetic.relight_truth import truth_directory


@pytest.fixture(scope="module")
def truth_dir(avatar_truth_dir):
    """Here the interleaved capture (conftest's ``avatar_truth_dir``)."""
    return avatar_truth_dir


def _tiny(iterations: int, **kw) -> AvatarOptions:
    """A seconds-long configuration (64 px, ~3k Gaussians) for the bookkeeping tests."""
    dens = DensifyOptions(refine_start=2, refine_every=3, grow_grad2d=1e-5)
    return AvatarOptions(resolution=64, iterations=iterations, init=HeadInit(uv_resolution=24), densify=dens, **kw)


def test_avatar_reproduces_held_out_frames_of_the_rendered_truth(truth_dir, out_dir):
    """200 steps: held-out PSNR above a floor ~2 dB under the measured value, far above both starting points."""
    opts = AvatarOptions(iterations=200, densify=None, init=HeadInit(uv_resolution=128))
    frames = TrackedFrames(truth_dir)
    test = load_frames(frames, frames.split().test, "test")
    with torch_threads(1):  # measured: 2 threads on 2 shared, busy cores ran ~8x slower per step (thread contention)
        res = train_avatar(truth_dir, out_dir / "avatar_truth", opts)
        score = evaluate_avatar(res.avatar, test)
        start = _initial(truth_dir, opts)
        grey = evaluate_avatar(start, test)
        colours, seen = backproject_colours(start, prepare(truth_dir, opts)[2])
        start.appearance.set_base_colour(start.params, colours, seen > 0)
        projected = evaluate_avatar(start, test)
    print(f"held-out PSNR {grey['psnr']:.2f} (grey) / {projected['psnr']:.2f} (colours from the frames) -> {score['psnr']:.2f} dB, "
          f"SSIM {projected['ssim']:.4f} -> {score['ssim']:.4f}, head pixels {score['psnr_mask']:.2f} dB; {res.steps} steps in "
          f"{res.seconds:.1f} s; {int((seen > 0).sum())} of {start.num_gaussians} Gaussians seen")
    _save_comparison(res.avatar, test, out_dir / "avatar_truth_heldout.png")
    assert res.steps == 200 and res.init_colours.startswith("frames") and res.restored == 0
    assert float((seen > 0).float().mean()) > 0.5
    assert projected["psnr"] >= grey["psnr"] + 4.0  # measured 23.5 against 17.8
    assert score["psnr"] >= 26.0  # measured 28.1 (22 s)
    assert score["psnr"] >= projected["psnr"] + 3.0
    assert score["ssim"] >= 0.885  # measured 0.897 (0.842 at the start)
    assert score["psnr_mask"] >= 23.0  # measured 25.4 over the head's pixels
    for f in (AVATAR_FILE, CHECKPOINT_FILE, LOG_FILE):
        assert (res.out / f).is_file()
    log = (res.out / LOG_FILE).read_text().splitlines()
    assert log[0] == "step,seconds,loss,psnr,gaussians" and len(log) == 201
    again = load_avatar(res.out)
    with torch.no_grad():
        r = torch.tensor([0])
        a = res.avatar(test.expression[r], test.pose[r], test.transl[r], test.camera(r)).image
        b = again(test.expression[r], test.pose[r], test.transl[r], test.camera(r)).image
    assert torch.equal(a, b)


def _initial(truth_dir: Path, opts: AvatarOptions):
    from avatar3d.avatar.model import GaussianHead, driving_expressions

    frames, model, train = prepare(truth_dir, opts)
    return GaussianHead.initialise(model, torch.as_tensor(frames.sequence.shape), None, options=opts.init,
                                   expr_index=driving_expressions(train.expression, opts.blendshapes))


def _save_comparison(avatar, test, path: Path) -> None:
    import cv2

    rows = []
    with torch.no_grad():
        for i in (0, 4, 8):
            r = torch.tensor([i])
            img = avatar(test.expression[r], test.pose[r], test.transl[r], test.camera(r)).image[0].clamp(0, 1)
            tgt = test.targets(r)[0]
            rows.append(torch.cat([tgt, img, (4 * (img - tgt).abs()).clamp(0, 1)], 1).numpy())
    cv2.imwrite(str(path), (np.concatenate(rows, 0) * 255).round().astype(np.uint8)[..., ::-1])


def test_ctrl_c_checkpoints_and_resume_continues_exactly(truth_dir, tmp_path, monkeypatch):
    """Ctrl-C at step 6 of 12 (a real SIGINT) checkpoints whole steps; the resumed run ends bit for bit as an uninterrupted one."""
    import os
    import signal

    with torch_threads(1):
        straight = train_avatar(truth_dir, tmp_path / "straight", _tiny(12))
        real = AvatarTrainer.step

        def step(self):
            row = real(self)
            if self.step_count == 6:
                os.kill(os.getpid(), signal.SIGINT)
            return row

        monkeypatch.setattr(AvatarTrainer, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train_avatar(truth_dir, tmp_path / "resumed", _tiny(12))
        monkeypatch.setattr(AvatarTrainer, "step", real)
        assert torch.load(tmp_path / "resumed" / CHECKPOINT_FILE, weights_only=False)["step"] == 6
        assert not (tmp_path / "resumed" / AVATAR_FILE).exists()
        resumed = train_avatar(truth_dir, tmp_path / "resumed", _tiny(12), resume=True)
    assert resumed.steps == 12 and straight.avatar.num_gaussians != 2878  # densification ran (the tiny init has 2878)
    a, b = straight.avatar.avatar_state(), resumed.avatar.avatar_state()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]


def test_a_non_finite_loss_restores_the_last_good_state(truth_dir, monkeypatch):
    opts = _tiny(8, snapshot_every=3)
    frames, model, train = prepare(truth_dir, opts)
    trainer = AvatarTrainer(_initial(truth_dir, opts), train, opts)
    real = AvatarTrainer.loss
    calls = {"n": 0}

    def poisoned(self, rows):
        calls["n"] += 1
        loss, target, r = real(self, rows)
        return (loss * float("nan") if calls["n"] == 5 else loss), target, r

    monkeypatch.setattr(AvatarTrainer, "loss", poisoned)
    with torch_threads(1):
        while trainer.step_count < 8:
            trainer.step()
    assert trainer.restored == 1 and trainer.step_count == 8 and len(trainer.history) == 8
    assert all(bool(torch.isfinite(p).all()) for p in trainer.avatar.params.values())
    assert all(np.isfinite(h["loss"]) for h in trainer.history)


def test_bad_input_gets_one_sentence(capture, truth_dir, tmp_path):
    short = truth_directory(capture, tmp_path / "short", range(12))
    with pytest.raises(BadInputError, match="at least 10 training frames"):
        train_avatar(short, tmp_path / "a", _tiny(2))
    nomask = truth_directory(capture, tmp_path / "nomask", range(24))
    (nomask / "masks" / "000003.png").unlink()
    with pytest.raises(BadInputError, match="no mask for frame 000003"):
        train_avatar(nomask, tmp_path / "b", _tiny(2))
    with pytest.raises(BadInputError, match="not a tracking output directory"):
        train_avatar(tmp_path / "nowhere", tmp_path / "c", _tiny(2))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match="not a readable avatar checkpoint"):
        train_avatar(truth_dir, tmp_path / "d", _tiny(2), resume=True)
    torch.save({"format": "something-else"}, tmp_path / "d" / AVATAR_FILE)
    with pytest.raises(BadInputError, match="not an avatar3d Gaussian avatar"):
        load_avatar(tmp_path / "d")
    with pytest.raises(BadInputError, match="is not an avatar directory .it has no avatar.pt.; train one with"):
        load_avatar(tmp_path / "e")
