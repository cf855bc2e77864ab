"""The relightable avatar scored against the path tracer (avatar3d.avatar.relight_score).

The avatar trains on the small Mitsuba capture (24 frames at 192^2 under ``studio``, true parameters, frames
interleaved so that the held-out half are poses between trained ones: conftest's ``avatar_truth_dir``), small for CI
(128 px, an 80^2 UV grid of Gaussians, 150 steps). Its capture light starts from the capture's own light written where
the appearance stage writes its estimate (``TRACK_DIR/appearance/environment.hdr``; with the appearance stage's real
estimate, or none, see benchmarks/bench_avatar_relight.py). It is then relit on held-out poses (capture frames 1, 7,
13, 19) under the held-out environments B, C, D (``studio`` turned 120 degrees, ``sunset``, ``overcast``) and compared
with Mitsuba's renders of the same poses (64 spp; linear RGB, face pixels, 2 x 2 averaged), its albedo with the true
albedo after one per-channel gain, and its held-out PSNR under the capture's own light with an SH avatar trained the
same way. Measured values are in the asserts' comments; the floors sit under them. The issue's 30 dB under held-out
light is NOT reached (see the benchmark's table).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.dataset import load_frames
from avatar3d.avatar.evaluate import evaluate_avatar
from avatar3d.avatar.model import HeadInit
from avatar3d.avatar.relight_score import albedo_score, relit_pictures, relit_scores
from avatar3d.avatar.train import AvatarOptions, train_avatar
from avatar3d.data.frames import TrackedFrames
from avatar3d.render.lighting import EnvironmentMap, equirect_directions

#: held-out capture frames (odd: not trained on in ``avatar_truth_dir``) that the relighting truth renders
FRAMES = (1, 7, 13, 19)


def _options(relightable: bool) -> AvatarOptions:
    return AvatarOptions(resolution=128, iterations=150, densify=None, init=HeadInit(uv_resolution=80), relightable=relightable)


@pytest.fixture(scope="module")
def trained(capture, avatar_truth_dir, tmp_path_factory):
    """The relightable and the SH avatar, trained the same way, and the held-out frames."""
    root = tmp_path_factory.mktemp("relight_truth")
    track = root / "track"
    shutil.copytree(avatar_truth_dir, track)
    (track / "appearance").mkdir()
    capture.environment().write(track / "appearance" / "environment.hdr")
    frames = TrackedFrames(track, 128)
    test = load_frames(frames, frames.split().test, "test")
    with torch_threads(1):
        pbr = train_avatar(track, root / "pbr", _options(True))
        sh = train_avatar(track, root / "sh", _options(False))
        scores = {"pbr": evaluate_avatar(pbr.avatar, test), "sh": evaluate_avatar(sh.avatar, test)}
    return pbr, sh, scores


@pytest.fixture(scope="module")
def truth(capture):
    from avatar3d.synthetic.relight_truth import held_out_truth

    return held_out_truth(capture, frames=FRAMES)


def test_relit_held_out_poses_match_the_path_tracer(trained, capture, truth, out_dir):
    pbr = trained[0]
    with torch_threads(1):
        scores = relit_scores(pbr.avatar, capture, truth)
        relit_pictures(pbr.avatar, capture, truth, out_dir / "avatar_relit_truth.png")
    print("relit PSNR (face / head pixels): " + ", ".join(f"{k} {v['face']:.2f} / {v['head']:.2f} dB" for k, v in scores.items()))
    assert pbr.avatar.appearance.relit is None  # back to the capture's light
    for name, s in scores.items():
        assert s["face"] >= 20.0, name  # measured 24.2 / 22.0 / 29.2 (studio@120 / sunset / overcast; head 24.0 / 22.0 / 28.0)


def test_the_albedo_is_recovered_up_to_one_grey_gain(trained, capture, out_dir):
    with torch_threads(1):
        psnr, gain = albedo_score(trained[0].avatar, capture, FRAMES, save=out_dir / "avatar_relit_albedo.png")
    print(f"albedo PSNR {psnr:.2f} dB after the per-channel gain {np.round(gain, 3).tolist()}")
    assert psnr >= 22.0  # measured 24.2 (gain 1.00 / 0.97 / 0.97)
    assert gain.max() / gain.min() < 1.2  # the light's colour is not painted into the albedo: the gain is nearly grey


def test_relightability_costs_little_under_the_capture_light(trained):
    pbr, sh, scores = trained
    print(f"held-out PSNR under the capture light: relightable {scores['pbr']['psnr']:.2f} dB ({pbr.seconds:.0f} s), "
          f"SH {scores['sh']['psnr']:.2f} dB ({sh.seconds:.0f} s)")
    assert scores["pbr"]["psnr"] >= scores["sh"]["psnr"] - 0.5  # measured 28.6 against 27.0 dB (48 s against 33 s to train)


def _lamp(azimuth_deg: float) -> EnvironmentMap:
    d = equirect_directions(32, 64)
    a = np.deg2rad(azimuth_deg)
    c = np.array([np.sin(a), 0.3, np.cos(a)])
    lamp = 8.0 * np.exp((d @ (c / np.linalg.norm(c)) - 1) / 0.1)
    return EnvironmentMap((0.03 + lamp[..., None] * np.ones(3)).astype(np.float32))


def test_the_side_lit_in_the_capture_does_not_stay_brighter(trained, capture, out_dir):
    """The capture's key light is on the head's -X side; lit from +X instead, the +X half of the face is the brighter."""
    av = trained[0].avatar
    P = capture.parameters()
    from avatar3d.avatar.relight_score import capture_camera, frame_parameters

    cam = capture_camera(P, 192, 192)
    e, p, t = frame_parameters(P, 1)
    halves = {}
    try:
        for az in (-80.0, 80.0):
            av.appearance.set_environment(_lamp(az))
            with torch.no_grad(), torch_threads(1):
                r = av(e, p, t, cam, background=torch.zeros(3))
                posed = av.posed_head(e, p, t)
            img = r.image[0].mean(-1)
            # Pixels of the face's -X and +X halves: project Gaussians of each half of the head.
            x = posed.gaussians.means[0]
            centre = x.mean(0)
            uv = (cam.K @ (cam.world_to_cam[:3, :3] @ x.T + cam.world_to_cam[:3, 3:])).T
            px = (uv[:, :2] / uv[:, 2:]).round().long().clamp(0, 191)
            side = {"-X": x[:, 0] < centre[0] - 0.02, "+X": x[:, 0] > centre[0] + 0.02}
            front = x[:, 2] > centre[2]
            halves[az] = {k: float(img[px[m & front, 1], px[m & front, 0]].mean()) for k, m in side.items()}
    finally:
        av.appearance.set_environment(None)
    print(f"mean brightness of the face's halves: lamp at -80 deg {halves[-80.0]}, at +80 deg {halves[80.0]}")
    assert halves[-80.0]["-X"] > halves[-80.0]["+X"] + 0.05  # measured 0.61 against 0.11, and 0.16 against 0.62
    assert halves[80.0]["+X"] > halves[80.0]["-X"] + 0.05
