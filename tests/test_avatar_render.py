"""``avatar3d avatar render``: driving an avatar (own track, cross-reenactment, set expressions, yaw sweeps) and
writing PNGs or an mp4, on the seconds-trained ``tiny_avatar`` (bookkeeping, not quality)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatar3d._tensor import torch_threads
from avatar3d.avatar.drive import DriveRequest, build_drive, open_avatar, parse_frames, parse_yaw
from avatar3d.avatar.render import VIDEO_FILE, render_avatar, render_frames
from avatar3d.cli import main
from avatar3d.data.sequence import TrackedSequence
from avatar3d.errors import BadInputError


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def src(tiny_avatar):
    return open_avatar(tiny_avatar)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _render(src, request: DriveRequest) -> np.ndarray:
    """(B, H, W, 3) uint8 frames of ``request``, straight from the library (no files)."""
    return np.stack(list(render_frames(src.avatar, build_drive(src, request))))


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- own frames, files
def test_renders_tracked_frames_with_their_names(src, tmp_path):
    track = TrackedSequence.load(src.track_dir)
    r = render_avatar(src, tmp_path / "out", DriveRequest(frames=slice(2, 5)))
    names = [Path(n).stem for n in track.frame_names[2:5]]
    assert [f.name for f in r.files] == [f"{n}.png" for n in names]
    imgs = np.stack([_png(f) for f in r.files])
    assert imgs.shape == (3, src.resolution, src.resolution, 3)
    # the files hold the avatar's forward pass of those frames' tracked parameters and cameras
    d = build_drive(src, DriveRequest(frames=slice(2, 5)))
    with torch.no_grad():
        ref = src.avatar(d.expression, d.pose, d.transl, d.camera(slice(None))).image.clamp(0, 1).numpy() * 255
    assert np.abs(imgs.astype(float) - ref).max() <= 1.0
    assert (imgs < 200).any(axis=-1).mean() > 0.05  # a head, not a blank white page
    assert (imgs[:, 0, 0] == 255).all()  # the corner is background: white


def test_resolution_and_background(src, tmp_path):
    r = render_avatar(src, tmp_path / "out", DriveRequest(frames=slice(0, 1), resolution=48), background=(0.0, 0.0, 1.0))
    img = _png(r.files[0])
    assert img.shape == (48, 48, 3)
    assert tuple(img[0, 0]) == (0, 0, 255)


def test_rerender_replaces_the_earlier_files_and_a_failed_run_keeps_them(src, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = render_avatar(src, out, DriveRequest(frames=slice(0, 4)))
    second = render_avatar(src, out, DriveRequest(frames=slice(0, 2)))
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f.name for f in second.files)  # no stale frames 2, 3
    before = {p.name: p.read_bytes() for p in out.glob("*.png")}

    def broken(*a, **k):
        yield np.zeros((src.resolution, src.resolution, 3), np.uint8)
        raise RuntimeError("killed mid-render")

    monkeypatch.setattr("avatar3d.avatar.render.render_frames", broken)
    with pytest.raises(RuntimeError):
        render_avatar(src, out, DriveRequest(frames=slice(0, 3)))
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == before
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert len(first.files) == 4


def test_video(src, tmp_path):
    import av

    r = render_avatar(src, tmp_path / "out", DriveRequest(frames=slice(0, 6)), video=True)
    assert r.files == [tmp_path / "out" / VIDEO_FILE]
    with av.open(str(r.files[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (src.resolution, src.resolution, 3)
    png = _render(src, DriveRequest(frames=slice(0, 1)))[0]
    assert np.abs(frames[0].astype(float) - png).mean() < 6  # H.264 of the same picture
    assert not list((tmp_path / "out").glob("*.png"))


# ---------------------------------------------------------------------------------------------- driving
def test_set_expression_changes_the_mouth_only_near_it(src):
    base = _render(src, DriveRequest(neutral=True)).astype(float)
    jaw = _render(src, DriveRequest(neutral=True, settings={"jawOpen": 1.0})).astype(float)
    diff = np.abs(jaw - base).max(-1)[0]
    assert diff.max() > 40  # the jaw opened
    ys, _ = np.nonzero(diff > 20)
    H = diff.shape[0]
    assert ys.mean() > 0.5 * H  # ... in the lower half of the face (rows grow downwards)
    with pytest.raises(BadInputError, match="did you mean jawOpen"):
        build_drive(src, DriveRequest(neutral=True, settings={"jawopen": 1.0}))


def test_set_joint_in_degrees(src):
    d = build_drive(src, DriveRequest(frames=slice(0, 2), settings={"jaw_pitch": 10.0, "head_yaw": -20.0}))
    assert torch.allclose(d.pose[:, 2, 0], torch.full((2,), np.deg2rad(10.0), dtype=torch.float32))
    assert torch.allclose(d.pose[:, 0, 1], torch.full((2,), np.deg2rad(-20.0), dtype=torch.float32))


def test_yaw_sweep_turns_the_first_frame(src):
    d0 = build_drive(src, DriveRequest(frames=slice(3, 4)))
    d = build_drive(src, DriveRequest(frames=slice(3, 8), yaw=[-30.0, 0.0, 30.0]))
    assert len(d) == 3 and d.names[1] == "yaw001_+0.0deg"
    assert torch.allclose(d.pose[1], d0.pose[0], atol=1e-6)
    assert torch.equal(d.expression, d0.expression.expand(3, -1)) and torch.equal(d.transl, d0.transl.expand(3, -1))
    from avatar3d.geometry import axis_angle_to_matrix

    R = axis_angle_to_matrix(d.pose[:, 0].double())
    rel = R[2] @ R[1].T  # the +30 frame relative to the base: a turn about world +Y
    assert torch.allclose(rel, axis_angle_to_matrix(torch.tensor([0.0, np.deg2rad(30.0), 0.0], dtype=torch.float64)), atol=1e-5)
    imgs = _render(src, DriveRequest(frames=slice(3, 4), yaw=[-30.0, 0.0, 30.0])).astype(float)
    assert np.abs(imgs[1] - _render(src, DriveRequest(frames=slice(3, 4)))[0]).max() <= 1.0
    assert np.abs(imgs[0] - imgs[1]).mean() > 2 and np.abs(imgs[2] - imgs[1]).mean() > 2


def test_self_reenactment_matches_the_own_track(src, avatar_truth_dir):
    """Driving the avatar with its own tracking directory reproduces its own frames (translation relative to the mean,
    camera of the frame nearest the mean: the capture has one camera)."""
    own = build_drive(src, DriveRequest(frames=slice(0, 4)))
    cross = build_drive(src, DriveRequest(drive=avatar_truth_dir, frames=slice(0, 4)))
    assert cross.names == own.names
    assert torch.allclose(cross.pose, own.pose, atol=1e-5) and torch.allclose(cross.transl, own.transl, atol=1e-6)
    assert torch.allclose(cross.K, own.K) and torch.equal(cross.expression, own.expression)
    by_file = build_drive(src, DriveRequest(drive=avatar_truth_dir / "params.npz", frames=slice(0, 4)))
    assert torch.equal(by_file.pose, cross.pose) and torch.equal(by_file.transl, cross.transl)


def test_reenactment_is_seen_from_the_drivers_camera(src, tmp_path):
    """The same performance described in a world turned by Q (its camera turned with it) drives the avatar the same way:
    head rotation and motion are carried over as the driver's camera saw them."""
    from avatar3d.geometry import axis_angle_to_matrix_np, matrix_to_axis_angle_np

    seq = TrackedSequence.load(src.track_dir)
    Q = axis_angle_to_matrix_np(np.array([0.3, -0.5, 0.2]))
    j0 = src.avatar.head_model(shape=torch.as_tensor(seq.shape)[None]).joints[0, 0].double().numpy()  # root joint
    # v' = Q v: R' = Q R, t' = Q (j0 + t) - j0 (the model turns about its root joint), world_to_cam' = world_to_cam Q^T
    seq.pose[:, 0] = matrix_to_axis_angle_np(Q[None] @ axis_angle_to_matrix_np(seq.pose[:, 0]))
    seq.transl = ((Q @ (j0 + seq.transl.astype(np.float64)).T).T - j0).astype(np.float32)
    w2c = seq.world_to_cam.astype(np.float64)
    w2c[:, :3, :3] = w2c[:, :3, :3] @ Q.T
    seq.world_to_cam = w2c.astype(np.float32)
    turned = seq.save(tmp_path / "turned").parent
    own = build_drive(src, DriveRequest(frames=slice(0, 6)))
    cross = build_drive(src, DriveRequest(drive=turned, frames=slice(0, 6)))
    assert torch.allclose(cross.pose, own.pose, atol=1e-4) and torch.allclose(cross.transl, own.transl, atol=1e-5)


def test_cross_reenactment_keeps_the_avatar_position(src, tmp_path):
    """A driver elsewhere in space (another camera distance, shifted) moves the avatar only by its motion about its mean."""
    track = TrackedSequence.load(src.track_dir)
    n = 5
    rng = np.random.default_rng(0)
    transl = np.array([0.3, -0.2, 1.0]) + rng.normal(0, 0.01, (n, 3))
    np.savez(tmp_path / "drv.npz", expression=rng.uniform(0, 0.5, (n, track.expression.shape[1])).astype(np.float32),
             pose=rng.normal(0, 0.1, (n, track.pose.shape[1], 3)).astype(np.float32), transl=transl.astype(np.float32))
    d = build_drive(src, DriveRequest(drive=tmp_path / "drv.npz"))
    want = track.transl.mean(0) + (transl - transl.mean(0))
    assert np.allclose(d.transl.numpy(), want, atol=1e-5)
    assert d.names == [f"{i:06d}" for i in range(n)]
    assert (d.K == d.K[0]).all() and (d.world_to_cam == d.world_to_cam[0]).all()  # the avatar's one camera
    imgs = _render(src, DriveRequest(drive=tmp_path / "drv.npz", frames=slice(0, 2)))
    assert (imgs < 200).any(axis=-1).mean() > 0.05  # the head is in the picture


def test_parsers():
    assert parse_frames("3:7") == slice(3, 7, None) and parse_frames("5") == slice(5, 6) and parse_frames(":4") == slice(None, 4, None)
    assert parse_yaw("-45:45") == pytest.approx(list(np.arange(-45, 46, 5.0)))
    assert parse_yaw("-10:10:3") == [-10.0, 0.0, 10.0]
    for bad in ("a:b", "1:2:3:4", "1:5:0"):
        with pytest.raises(BadInputError, match="--frames"):
            parse_frames(bad)
    for bad in ("45", "x:10", "-200:0", "0:10:0"):
        with pytest.raises(BadInputError, match="--yaw"):
            parse_yaw(bad)


# ---------------------------------------------------------------------------------------------- the command
def test_cli_renders(tiny_avatar, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["avatar", "render", str(tiny_avatar), "--out", str(out), "--frames", "0:2", "--set", "jawOpen=0.5", "--quiet"])
    assert code == 0
    assert "wrote 2 PNGs" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == 2
    assert main(["avatar", "render", str(tiny_avatar), "--out", str(out), "--neutral", "--yaw", "-20:20:3", "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["yaw000_-20.0deg.png", "yaw001_+0.0deg.png", "yaw002_+20.0deg.png"]


def _foreign_track(src, tmp_path) -> Path:
    """The avatar's tracking as if tracked with another head model (ICT's 53 expressions, 3 joints)."""
    seq = TrackedSequence.load(src.track_dir)
    n = seq.num_frames
    seq.model, seq.expression = "ict", np.zeros((n, 53), np.float32)
    seq.expression_names = [f"e{i}" for i in range(53)]
    seq.pose, seq.joint_names = np.zeros((n, 3, 3), np.float32), ["root", "eye_left", "eye_right"]
    return seq.save(tmp_path / "ict_track").parent


@pytest.mark.parametrize("case", ["no_dir", "no_avatar", "corrupt", "frames", "frames_range", "yaw", "set", "set_name",
                                  "foreign_dir", "foreign_npz", "neutral_and_frames"])
def test_cli_bad_input_is_one_sentence(case, src, tiny_avatar, tmp_path, capsys):
    av = str(tiny_avatar)
    out = str(tmp_path / "out")
    if case == "corrupt":
        bad = tmp_path / "corrupt"
        bad.mkdir()
        (bad / "avatar.pt").write_bytes((tiny_avatar / "avatar.pt").read_bytes()[:500])
        av = str(bad)
    if case == "no_avatar":
        (tmp_path / "empty").mkdir()
        av = str(tmp_path / "empty")
    npz = tmp_path / "drv.npz"
    np.savez(npz, expression=np.zeros((4, 53), np.float32))
    extra = {"no_dir": [], "no_avatar": [], "corrupt": [], "frames": ["--frames", "x:3"], "frames_range": ["--frames", "0:999"],
             "yaw": ["--yaw", "left"], "set": ["--set", "jawOpen"], "set_name": ["--set", "jawopen=1"],
             "foreign_dir": ["--drive", str(_foreign_track(src, tmp_path)) if case == "foreign_dir" else ""],
             "foreign_npz": ["--drive", str(npz)], "neutral_and_frames": ["--neutral", "--frames", "0:2"]}[case]
    if case == "no_dir":
        av = str(tmp_path / "nowhere")
    code, err = _cli(capsys, "avatar", "render", av, "--out", out, "--quiet", *extra)
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("avatar3d avatar render: error: ")
    want = {"no_dir": "not an avatar directory", "no_avatar": "no avatar.pt", "corrupt": "not a readable avatar",
            "frames": "--frames", "frames_range": "outside", "yaw": "--yaw", "set": "NAME=NUMBER", "set_name": "jawOpen",
            "foreign_dir": "'ict'", "foreign_npz": "another head model", "neutral_and_frames": "not both"}[case]
    assert want in err
    assert not Path(out).exists()  # nothing written, not even an empty folder


def test_missing_training_track_is_one_sentence(tiny_avatar, tmp_path, capsys):
    """An avatar whose tracking directory was moved away cannot find its camera."""
    av = tmp_path / "moved"
    av.mkdir()
    state = torch.load(tiny_avatar / "avatar.pt", map_location="cpu", weights_only=False)
    state["track_dir"] = str(tmp_path / "gone")
    torch.save(state, av / "avatar.pt")
    code, err = _cli(capsys, "avatar", "render", str(av), "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2 and "is gone" in err
    shutil.rmtree(av)
