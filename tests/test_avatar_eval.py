"""The avatar's evaluation protocol (avatar3d.avatar.evaluate) and `avatar3d avatar eval`.

On the seconds-trained ``tiny_avatar`` (64 px) and copies of its tracking directory (the rendered capture of the
built-in head with its true parameters): the held-out frames are the split's, the baseline is scored on the same
frames, a "video" made of the avatar's own renders scores near-perfectly (also where the crop ran past the video's
edge), the face region is not the full frame, metrics.json holds what it should, and bad input is one sentence.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.dataset import load_frames
from avatar3d.avatar.evaluate import HELDOUT_DIR, METRICS, METRICS_FILE, PROTOCOL, evaluate_run, frame_scores, lpips_metric
from avatar3d.avatar.train import AVATAR_FILE, load_avatar
from avatar3d.cli import main
from avatar3d.data.frames import CAPTURE_FILE, TrackedFrames
from avatar3d.data.sequence import TrackedSequence
from avatar3d.render.camera import scale_intrinsics
from avatar3d.render.head import white_sh

SIZE = 64  # the tiny avatar's resolution
PAD = 24  # columns of crop padding (past the video's edge) in the perfect video


def _copy_avatar(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    shutil.copy2(src / AVATAR_FILE, dst / AVATAR_FILE)
    return dst


def _edit_sequence(track: Path, **changes) -> None:
    seq = TrackedSequence.load(track)
    dataclasses.replace(seq, **changes).save(track)


@pytest.fixture
def avatar_dir(tiny_avatar, tmp_path) -> Path:
    """A writable copy of the tiny avatar (the fixture is read-only)."""
    return _copy_avatar(tiny_avatar, tmp_path / "avatar")


@pytest.fixture(scope="module")
def albedo_track(avatar_truth_dir, tmp_path_factory) -> Path:
    """The truth directory with a photometric tracker's appearance: a skin-coloured albedo.png and a white SH light."""
    track = tmp_path_factory.mktemp("albedo_track") / "track"
    shutil.copytree(avatar_truth_dir, track)
    cv2.imwrite(str(track / "albedo.png"), np.full((128, 128, 3), (120, 150, 200), np.uint8))  # BGR
    _edit_sequence(track, lighting=white_sh().numpy())
    return track


@pytest.fixture(scope="module")
def perfect_track(tiny_avatar, avatar_truth_dir, tmp_path_factory) -> Path:
    """A 64 px tracking directory whose held-out frames ARE the tiny avatar's renders (full masks), with the crops'
    first PAD columns past the video's edge (capture.npz): black in the images there, as a real crop's padding."""
    track = tmp_path_factory.mktemp("perfect_track") / "track"
    shutil.copytree(avatar_truth_dir, track)
    seq = TrackedSequence.load(track)
    scale = SIZE / seq.width
    _edit_sequence(track, K=scale_intrinsics(seq.K, scale).astype(np.float32), width=SIZE, height=SIZE)
    n = seq.num_frames
    np.savez(track / CAPTURE_FILE, meta=json.dumps({"resolution": SIZE, "source_size": [400, 400]}),
             boxes=np.tile(np.array([[-PAD, 0, SIZE]]), (n, 1)))
    frames = TrackedFrames(track)
    avatar = load_avatar(tiny_avatar)
    test = frames.split().test
    with torch.no_grad(), torch_threads(1):
        for i in test:
            cam = frames.camera(i)
            p = frames.params(i)
            t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
            img = avatar(t(p.expression), t(p.pose), t(p.transl), cam).image[0]
            u8 = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            u8[:, :PAD] = 0  # the video has nothing there
            cv2.imwrite(str(frames.file("images", i)), np.ascontiguousarray(u8[..., ::-1]))
            cv2.imwrite(str(frames.file("masks", i)), np.full((SIZE, SIZE), 255, np.uint8))
    return track


def test_perfect_avatar_scores_near_perfectly_with_the_padding_whited_out(tiny_avatar, perfect_track, avatar_dir):
    """A video that is the avatar's own renders (PNG-rounded) scores > 45 dB and SSIM > 0.999, although its padding is
    black where the avatar drew the head: those pixels are white in both."""
    frames = TrackedFrames(perfect_track)
    test = load_frames(frames, frames.split().test, "held-out")
    assert int((test.inside[:, :, :PAD] == 0).sum()) == len(test) * SIZE * PAD
    with torch.no_grad(), torch_threads(1):
        r = load_avatar(tiny_avatar)(test.expression, test.pose, test.transl, test.camera(torch.arange(len(test)))).image
    assert float((1 - r[:, :, :PAD]).abs().amax()) > 0.2  # the avatar draws inside the padding: a test that could fail
    with torch_threads(1):
        res = evaluate_run(avatar_dir, track_dir=perfect_track)
    a = res.rows()["avatar"]
    print("perfect:", a)
    assert res.frames == [int(i) for i in frames.split().test]
    assert a["psnr"] > 45 and a["ssim"] > 0.999 and a["face_psnr"] > 45 and a["face_ssim"] > 0.999
    assert res.baseline is None and "has neither appearance maps" in res.baseline_source


def test_eval_scores_the_avatar_and_the_baseline_on_the_held_out_frames(avatar_dir, albedo_track, avatar_truth_dir, out_dir):
    with torch_threads(1):
        res = evaluate_run(avatar_dir, track_dir=albedo_track, save_images=True)
    split = TrackedFrames(avatar_truth_dir).split()
    n = len(split.test)
    assert res.frames == [int(i) for i in split.test] and not set(res.frames) & set(int(i) for i in split.train)
    assert res.resolution == SIZE and res.baseline is not None and res.baseline_source.startswith("the photometric tracker's albedo")
    rows = res.rows()
    for scores in (res.avatar, res.baseline):
        for k in ("psnr", "ssim", "face_psnr", "face_ssim"):
            assert getattr(scores, k).shape == (n,) and np.isfinite(getattr(scores, k)).all()
    a, b, d = rows["avatar"], rows["baseline"], rows["difference"]
    print("avatar", a, "\nbaseline", b)
    # the face region is part of the frame, scored on its own: not the full-frame numbers
    assert abs(a["face_psnr"] - a["psnr"]) > 0.5 and abs(b["face_psnr"] - b["psnr"]) > 0.5
    assert 15 < a["psnr"] < 35 and 15 < b["psnr"] < 35  # measured 21.6 (40 steps at 64 px) and 21.7 (one flat skin colour)
    assert abs(d["psnr"] - (a["psnr"] - b["psnr"])) < 1e-9
    # metrics.json: rows, per-frame values, frames, protocol, versions
    m = json.loads((avatar_dir / METRICS_FILE).read_text())
    assert m["frames"] == res.frames and m["frame_names"] == res.names and m["resolution"] == SIZE
    assert m["rows"]["avatar"]["psnr"] == pytest.approx(a["psnr"]) and m["rows"]["baseline"]["ssim"] == pytest.approx(b["ssim"])
    assert m["per_frame"]["avatar"]["psnr"] == pytest.approx(list(res.avatar.psnr))
    assert len(m["per_frame"]["baseline"]["face_ssim"]) == n
    assert m["protocol"] == PROTOCOL and m["track_dir"] == str(albedo_track.resolve())
    assert m["baseline"]["available"] and set(m["versions"]) >= {"avatar3d", "torch", "numpy"}
    assert m["lpips"]["available"] == (res.avatar.lpips is not None)
    # the comparison images: video | avatar | baseline | error, one per held-out frame
    pngs = sorted((avatar_dir / HELDOUT_DIR).glob("*.png"))
    assert [p.stem for p in pngs] == sorted(res.names) and res.images
    img = cv2.imread(str(pngs[0]))
    assert img.shape == (SIZE, 4 * SIZE, 3)
    shutil.copy(pngs[0], out_dir / "avatar_eval_heldout.png")
    # a rerun without images leaves none of the old ones behind
    with torch_threads(1):
        evaluate_run(avatar_dir, track_dir=albedo_track, frames=res.frames[:2])
    assert not list((avatar_dir / HELDOUT_DIR).glob("*.png"))
    assert json.loads((avatar_dir / METRICS_FILE).read_text())["frames"] == res.frames[:2]


def test_appearance_maps_are_the_baseline_when_present(avatar_dir, albedo_track, tmp_path):
    from avatar3d.appearance.maps import AppearanceMaps

    track = tmp_path / "track"
    shutil.copytree(albedo_track, track)
    n = TrackedSequence.load(track).num_frames
    albedo = np.full((64, 64, 3), (0.6, 0.4, 0.3), np.float32)
    AppearanceMaps.priors(albedo, np.ones((64, 64), np.float32), white_sh().numpy() * 0.8, exposure=np.ones(n, np.float32)).save(track / "appearance")
    with torch_threads(1):
        res = evaluate_run(avatar_dir, track_dir=track, frames=TrackedFrames(track).split().test[:3])
    assert res.baseline is not None and res.baseline_source.startswith("appearance maps")
    assert res.baseline.psnr.shape == (3,) and np.isfinite(res.baseline.psnr).all() and np.isfinite(res.baseline.face_psnr).all()


def test_face_scores_see_only_the_face():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(40, 40, 3, generator=g)
    face = torch.zeros(40, 40, dtype=torch.bool)
    face[10:30, 10:30] = True
    image = target.clone()
    image[~face] = 1 - image[~face]  # wrong everywhere but the face
    s = frame_scores(image, target, face)
    assert s["face_psnr"] > 150 and s["psnr"] < 10 and s["ssim"] < 0.5
    assert s["face_ssim"] < 1  # windows at the face's edge see the wrong pixels around it
    inner = torch.zeros_like(face)
    inner[16:24, 16:24] = True
    assert frame_scores(image, target, inner)["face_ssim"] == pytest.approx(1.0, abs=1e-6)
    none = frame_scores(image, target, torch.zeros_like(face))
    assert np.isnan(none["face_psnr"]) and np.isnan(none["face_ssim"]) and np.isnan(none["lpips"])


def test_lpips_is_never_downloaded(tmp_path, monkeypatch):
    """Without the package or the AlexNet weights in torch's cache, LPIPS is unavailable with the reason."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    metric, note = lpips_metric()
    assert metric is None and note.startswith("unavailable:")
    assert not (tmp_path / "empty_torch_home").exists()  # nothing was fetched


def test_lpips_runs_where_its_package_and_weights_are_here(avatar_dir, albedo_track, tmp_path, monkeypatch):
    """With an ``lpips`` package and AlexNet weights in torch's cache (a stand-in package here: the real one is not a
    test dependency), both rows get LPIPS of images scaled to [-1, 1], per frame and in metrics.json."""
    import sys
    import types

    calls = []

    class FakeLPIPS(torch.nn.Module):
        def __init__(self, net: str, verbose: bool = True):
            super().__init__()
            assert net == "alex"

        def forward(self, x, y):
            calls.append((tuple(x.shape), float(x.min()), float(x.max())))
            return (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=FakeLPIPS, __version__="fake"))
    weights = tmp_path / "torch_home" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with torch_threads(1):
        res = evaluate_run(avatar_dir, track_dir=albedo_track, frames=[int(i) for i in TrackedFrames(albedo_track).split().test[:2]])
    assert res.avatar.lpips is not None and res.baseline.lpips is not None and res.avatar.lpips.shape == (2,)
    assert calls and all(shape == (1, 3, SIZE, SIZE) and lo >= -1 and hi <= 1 and lo < 0 < hi for shape, lo, hi in calls)
    m = json.loads((avatar_dir / METRICS_FILE).read_text())
    assert m["lpips"]["available"] and "fake" in m["lpips"]["note"]
    assert m["rows"]["difference"]["lpips"] == pytest.approx(res.rows()["avatar"]["lpips"] - res.rows()["baseline"]["lpips"])


def test_eval_command_prints_the_table(avatar_dir, albedo_track, capsys):
    with torch_threads(1):
        assert main(["avatar", "eval", str(avatar_dir), "--track", str(albedo_track)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if "face PSNR" in line)
    assert all(h in header for h in ("PSNR", "SSIM", "face SSIM", "LPIPS", "frames"))
    rows = {line.split()[0]: line.split() for line in lines if line.split() and line.split()[0] in ("avatar", "baseline", "difference")}
    assert set(rows) == {"avatar", "baseline", "difference"}
    assert rows["difference"][1].startswith(("+", "-")) and rows["avatar"][-1] == str(len(TrackedFrames(albedo_track).split().test))
    assert str(avatar_dir / METRICS_FILE) in out
    assert len(METRICS) == 5


# ---------------------------------------------------------------------------------------------- bad input
def _fails(capsys, argv: list[str], *words: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


def test_not_an_avatar_directory(tmp_path, capsys):
    _fails(capsys, ["avatar", "eval", str(tmp_path)], "is not an avatar directory")
    _fails(capsys, ["avatar", "eval", str(tmp_path / "missing")], "is not an avatar directory")
    assert not (tmp_path / "missing").exists()


def test_corrupt_avatar_file(tmp_path, capsys):
    (tmp_path / AVATAR_FILE).write_bytes(b"not a checkpoint at all")
    _fails(capsys, ["avatar", "eval", str(tmp_path)], "is not a readable avatar file")
    torch.save({"format": "something else"}, tmp_path / AVATAR_FILE)
    _fails(capsys, ["avatar", "eval", str(tmp_path)], "is not an avatar3d Gaussian avatar file")


def test_tracking_directory_gone(avatar_dir, capsys):
    state = torch.load(avatar_dir / AVATAR_FILE, weights_only=False)
    state["track_dir"] = str(avatar_dir.parent / "moved_away")
    torch.save(state, avatar_dir / AVATAR_FILE)
    _fails(capsys, ["avatar", "eval", str(avatar_dir)], "moved_away", "is gone", "--track")
    _fails(capsys, ["avatar", "eval", str(avatar_dir), "--track", str(avatar_dir)], "is not a tracking directory")
    assert not (avatar_dir / METRICS_FILE).exists()


def test_tracking_of_another_head_model(avatar_dir, avatar_truth_dir, tmp_path, capsys):
    track = tmp_path / "track"
    shutil.copytree(avatar_truth_dir, track)
    seq = TrackedSequence.load(track)
    _edit_sequence(track, model="ict", expression=np.zeros((seq.num_frames, 53), np.float32),
                   pose=np.zeros((seq.num_frames, 3, 3), np.float32))
    _fails(capsys, ["avatar", "eval", str(avatar_dir), "--track", str(track)], "head model 'ict'", "'builtin'")


def test_no_held_out_frame(avatar_dir, avatar_truth_dir, tmp_path, capsys):
    track = tmp_path / "track"
    shutil.copytree(avatar_truth_dir, track)
    seq = TrackedSequence.load(track)
    one = {k: getattr(seq, k)[:1] for k in ("expression", "pose", "transl", "K", "world_to_cam")}
    _edit_sequence(track, frame_names=seq.frame_names[:1], **one)
    _fails(capsys, ["avatar", "eval", str(avatar_dir), "--track", str(track)], "at least 1 held-out frame")


def test_tracker_baseline_covers_the_tracked_mesh(albedo_track):
    """The baseline draws the posed mesh where the mesh rasterizer puts it (every triangle, vertices in model order)."""
    from avatar3d.avatar.baseline import TrackerBaseline, mesh_baseline
    from avatar3d.models import load_head_model
    from avatar3d.render.mesh import rasterize

    model = load_head_model("builtin")
    frames = TrackedFrames(albedo_track, SIZE)
    seq = frames.sequence
    base, source = mesh_baseline(albedo_track, model, frames, torch.as_tensor(seq.shape))
    assert isinstance(base, TrackerBaseline), source
    i = int(frames.split().test[0])
    p = frames.params(i)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    with torch.no_grad(), torch_threads(1):
        verts = model(t(p.shape), t(p.expression), t(p.pose), t(p.transl)).vertices[0]
        img = base(verts, frames.camera(i), i)
        rast, _ = rasterize(frames.camera(i).to_clip(verts[None]), model.faces.to(torch.int32), (SIZE, SIZE))
    drawn, covered = (img < 0.98).any(-1), rast[0, ..., 3] > 0
    iou = float((drawn & covered).sum()) / float((drawn | covered).sum())
    assert covered.float().mean() > 0.1 and iou > 0.99, iou  # measured 1.0 (0.95 with the vertices in the wrong order)
