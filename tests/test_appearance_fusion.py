"""Albedo + SH light by multi-frame UV fusion (avatar3d.appearance.fusion), scored against a Mitsuba capture.

The small path-traced capture (24 frames at 192^2, cached) is tracked like any video, fused, and its
albedo compared with the TRUE albedo map over observed face texels (coverage > 0.5, region "face"),
after one global per-channel scale (the albedo/light scale ambiguity). Fusion with the TRUE parameters
separates the fusion's own error from the tracker's. Measured (256^2 maps, this machine):

| input | PSNR scaled / raw | no shading division (iterations=0) |
|---|---|---|
| true parameters | 30.5 / 19.9 dB | 18.3 dB |
| tracked (landmark fit) | 26.9 / 23.2 dB | 17.9 dB |
| tracked with photometric refinement (``--photometric``, not asserted) | 27.1 dB | |

The floors sit ~1.5 dB below; a broken fusion (the light ignored: the albedo is the mean colour) fails them.
The issue's target (28 dB over observed texels) is met with the true parameters, not yet after tracking
(photometric tracking adds 0.2 dB; a per-frame 2-D shift of the observations, searched +-2 px, adds nothing:
the misregistration is not a shift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.appearance.fusion import FusionOptions, albedo_psnr, fuse_appearance
from avatar3d.appearance.uvmap import UVFiller, UVTexels, smooth_fill
from avatar3d.data.frames import TrackedFrames
from avatar3d.data.sequence import TrackedSequence
from avatar3d.errors import BadInputError
from avatar3d.models import load_head_model

RES = 256


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin")


@pytest.fixture(scope="module")
def tracked_dir(capture, tmp_path_factory):
    from avatar3d.tracking.pipeline import TrackOptions, track

    out = tmp_path_factory.mktemp("tracked")
    track(capture.video, out, TrackOptions(overlay=False, progress=False))
    return out


@pytest.fixture(scope="module")
def truth_albedo(capture, model):
    """(RES, RES, 3) true linear albedo and the (RES, RES) face texels of the map."""
    import cv2

    maps = capture.maps()
    albedo = cv2.resize(maps.albedo, (RES, RES), interpolation=cv2.INTER_AREA)
    tx = UVTexels(model, RES)
    face = tx.to_image(model.region("face")[tx.faces].all(1).float()[:, None])[..., 0].numpy() > 0
    return albedo, face


def _score(res, truth_albedo) -> tuple[float, float, int]:
    albedo, face = truth_albedo
    where = res.observed.numpy() & (res.coverage.numpy() > 0.5) & face
    est = res.albedo.numpy()
    return albedo_psnr(est, albedo, where), albedo_psnr(est, albedo, where, per_channel_scale=False), int(where.sum())


def _save(res, path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), np.round(res.albedo_srgb.numpy()[..., ::-1] * 255).astype(np.uint8))


def _fuse_and_break(directory: Path, model, truth_albedo, image: Path):
    """The fusion of ``directory`` (albedo saved to ``image``), its scores, and the score of the same fusion with the
    light ignored (no shading division: what a broken fusion would give)."""
    res = fuse_appearance(TrackedFrames(directory), model, FusionOptions(resolution=RES))
    broken = fuse_appearance(TrackedFrames(directory), model, FusionOptions(resolution=RES, iterations=0))
    _save(res, image)
    return res, *_score(res, truth_albedo), _score(broken, truth_albedo)[0]


def test_fusion_with_true_parameters(truth_dir, model, truth_albedo, out_dir):
    res, scaled, raw, count, scaled_broken = _fuse_and_break(truth_dir, model, truth_albedo, out_dir / "appearance_fusion_truth.png")
    print(f"true parameters: PSNR {scaled:.2f} dB scaled, {raw:.2f} dB raw over {count} texels; light ignored {scaled_broken:.2f} dB")
    assert count > 0.5 * truth_albedo[1].sum()  # most of the face is seen at coverage > 0.5
    assert scaled >= 29.0  # measured 30.5
    assert scaled_broken <= 20.0 and scaled - scaled_broken >= 8.0  # measured 18.3
    # Shapes and conventions of the result.
    assert res.albedo.shape == (RES, RES, 3) and res.lighting.shape == (9, 3) and res.exposure.shape == (24,)
    assert torch.allclose(res.lighting[0], torch.full((3,), res.lighting[0, 0].item()))  # grey light
    assert float(res.albedo_srgb.min()) >= 0 and float(res.albedo_srgb.max()) <= 1
    assert bool((res.coverage[~res.observed] == 0).all()) and bool((res.coverage[res.observed] > 0).all())
    assert not bool((res.mirrored & res.observed).any())
    assert res.residual < 0.05


def test_fusion_with_known_light(truth_dir, model, truth_albedo, capture):
    """With the true light fixed, the albedo has its absolute scale: the raw PSNR rises towards the scaled one.

    Not all the way: Mitsuba's principled diffuse is a few % darker than Lambert's albedo / pi (its
    specular layer takes the Fresnel share; the fitted per-channel scale is 0.95-0.97)."""
    L = torch.as_tensor(capture.environment().sh(), dtype=torch.float32)
    res = fuse_appearance(TrackedFrames(truth_dir), model, FusionOptions(resolution=RES), lighting=L)
    scaled, raw, _ = _score(res, truth_albedo)
    print(f"true parameters and light: PSNR {scaled:.2f} dB scaled, {raw:.2f} dB raw")
    assert scaled >= 29.0 and raw >= 26.5  # measured 30.1 / 27.4
    assert torch.allclose(res.lighting, L)


def test_fusion_with_exposure_gains(truth_dir, model, truth_albedo):
    """Per-frame gains (for phones) on a capture of constant exposure: they stay near 1 and cost little."""
    res = fuse_appearance(TrackedFrames(truth_dir), model, FusionOptions(resolution=RES, exposure=True))
    scaled = _score(res, truth_albedo)[0]
    print(f"true parameters, exposure gains: PSNR {scaled:.2f} dB, gains {res.exposure.min():.3f}-{res.exposure.max():.3f}")
    assert scaled >= 28.5  # measured 29.5 (unshrunk gains, exposure_prior=0.1: 23.0)
    assert float((res.exposure - 1).abs().max()) < 0.05


def test_fusion_after_tracking(tracked_dir, model, truth_albedo, out_dir):
    res, scaled, raw, count, scaled_broken = _fuse_and_break(tracked_dir, model, truth_albedo, out_dir / "appearance_fusion_tracked.png")
    print(f"tracked: PSNR {scaled:.2f} dB scaled, {raw:.2f} dB raw over {count} texels; light ignored {scaled_broken:.2f} dB")
    assert scaled >= 25.5  # measured 26.9 (the 28 dB is not reached after tracking yet)
    assert scaled_broken <= 20.0


def test_no_valid_frame_is_one_clear_error(truth_dir, model, tmp_path):
    seq = TrackedSequence.load(truth_dir)
    seq.valid = np.zeros(seq.num_frames, bool)
    with pytest.raises(BadInputError, match="no valid tracked frame"):
        fuse_appearance(TrackedFrames(truth_dir, sequence=seq), model, FusionOptions(resolution=64))


def test_mirror_fill_copies_the_other_side(model):
    """Texels seen on one side only are filled from their left-right counterpart; the rest smoothly."""
    tx = UVTexels(model, 128)
    fill = UVFiller(tx, model)
    assert fill.symmetric_fraction > 0.5  # the built-in head is left-right symmetric
    # A value that is a function of |x| on the template: symmetric, so a mirrored copy must reproduce it.
    P = tx.gather(model.v_template[None].float())[0]
    values = torch.stack([P[:, 0].abs() * 10, P[:, 1] * 0 + 0.5, P[:, 2] * 0 + 0.2], 1)
    weight = (P[:, 0] > 0.005).float()  # only the +x side seen
    filled, mirrored = fill(values * weight[:, None], weight)
    assert mirrored.float().mean() > 0.3
    got = filled.reshape(-1, 3)[tx.index][mirrored, 0]
    assert float((got - values[mirrored, 0]).abs().median()) < 0.01


def test_smooth_fill_fills_everything():
    img = np.zeros((32, 32, 3))
    known = np.zeros((32, 32), bool)
    known[:4, :4] = True
    img[known] = 0.7
    out = smooth_fill(img, known)
    assert np.allclose(out, 0.7)
