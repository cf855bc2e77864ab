"""``avatar3d view AVATAR_DIR``: a Gaussian avatar in headless screenshots and in the window (avatar3d/viewer/gaussians.py,
orbit.py, avatar_app.py), on the seconds-long ``tiny_avatar`` trained on the synthetic capture."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avatar3d._tensor import torch_threads
from avatar3d.cli import main
from avatar3d.render.camera import Camera
from avatar3d.viewer.gaussians import AvatarRenderer, avatar_dir, open_avatar, start_camera
from avatar3d.viewer.orbit import OrbitCamera
from avatar3d.viewer.params import apply_settings
from avatar3d.viewer.scene import project
from avatar3d.viewer.shot import ViewOptions, initial_params
from tests.helpers.view_cli import view_screenshot

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _covered(img: np.ndarray) -> np.ndarray:
    return (255 - img).max(2) > 25  # the background is white


def test_screenshot_shows_the_head_and_follows_expression_and_yaw(tiny_avatar, avatar_truth_dir, tmp_path, out_dir, capsys):
    assert avatar_dir(tiny_avatar) == avatar_dir(tiny_avatar / "avatar.pt") == tiny_avatar and avatar_dir(avatar_truth_dir) is None
    neutral = view_screenshot(tmp_path, tiny_avatar, "frame0")
    assert "wrote" in capsys.readouterr().out
    # The avatar's picture covers the true head of frame 0 (the capture's mask, same tracking camera and crop).
    mask = np.asarray(Image.open(sorted((avatar_truth_dir / "masks").iterdir())[0]).convert("L")) > 127
    assert neutral.shape[:2] == mask.shape
    cov = _covered(neutral)
    iou = (cov & mask).sum() / (cov | mask).sum()
    assert iou > 0.75, f"the avatar's picture does not sit on the head (IoU {iou:.2f} with the true mask)"
    jaw = view_screenshot(tmp_path, tiny_avatar, "jaw", "--set", "jawOpen=1")
    turned = view_screenshot(tmp_path, tiny_avatar, "yaw", "--yaw", "35")
    beside = view_screenshot(tmp_path, tiny_avatar, "beside", "--beside")
    Image.fromarray(np.concatenate([neutral, jaw, turned], 1).astype(np.uint8)).save(out_dir / "viewer_avatar.png")
    # jawOpen moves the lower face, not the top of the head.
    ys = np.nonzero(mask)[0]
    top, h = ys.min(), ys.max() - ys.min()
    diff = np.abs(jaw - neutral).mean(2)
    upper, lower = diff[top : top + int(0.3 * h)], diff[top + int(0.55 * h) : top + int(0.85 * h)]
    assert lower.mean() > 4 * max(upper.mean(), 0.1), f"jawOpen should change the lower face ({lower.mean():.2f}), not the top ({upper.mean():.2f})"
    # A camera turned by 35 degrees sees another silhouette, still of a head in the middle of the picture.
    cov_t = _covered(turned)
    assert (cov_t ^ cov).mean() > 0.03 and 0.5 < cov_t.sum() / cov.sum() < 2.0
    # --beside: the video frame, then the same picture.
    assert beside.shape[1] == 2 * neutral.shape[1] and np.abs(beside[:, neutral.shape[1]:] - neutral).max() == 0
    video = np.asarray(Image.open(sorted((avatar_truth_dir / "images").iterdir())[0]).convert("RGB")).astype(float)
    assert np.abs(beside[:, : neutral.shape[1]] - video).mean() < 1.0
    # --overlay 1: the avatar over the video by its coverage (the video where there are no Gaussians).
    over = view_screenshot(tmp_path, tiny_avatar, "overlay", "--overlay", "1")
    solid, empty = _covered(neutral) & mask, ~_covered(neutral) & ~mask
    assert np.abs(over - neutral)[solid].mean() < 12 and np.abs(over - video)[empty].mean() < 2


def test_mesh_screenshot_yaw_circles_the_camera(tmp_path):
    from avatar3d.errors import Avatar3DError
    from avatar3d.viewer.headless import check_offscreen_support

    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))
    front = view_screenshot(tmp_path, Path("builtin"), "front", "--size", "96")
    side = view_screenshot(tmp_path, Path("builtin"), "side", "--size", "96", "--yaw", "60")
    sil_f, sil_s = (np.abs(x - x[2, 2]).sum(2) > 12 for x in (front, side))
    assert sil_f[48, 48] and sil_s[48, 48], "the head stays in the middle"
    assert (sil_f ^ sil_s).mean() > 0.03, "a side view has another silhouette"


def test_renderer_is_the_avatars_own_render_and_reuses_its_pose(tiny_avatar):
    av = open_avatar(tiny_avatar)
    assert av.source.num_frames == 24  # the timeline: the avatar's tracking directory
    p = initial_params(av.source, ViewOptions(frame=3))
    orbit = start_camera(av, 3, (64, 64))
    K, w2c = orbit.matrices(160, 120)
    r = AvatarRenderer(av.avatar)
    img, alpha = r.render(p, K, w2c, 160, 120)
    e, j, t = (torch.as_tensor(x)[None] for x in (p.expression, p.pose, p.transl))
    with torch.no_grad():
        ref = av.avatar(e, j, t, Camera(torch.tensor(K, dtype=torch.float32), torch.tensor(w2c, dtype=torch.float32), 160, 120))
    assert np.abs(img.astype(int) - (ref.image[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()).max() <= 1
    assert np.allclose(alpha, ref.alpha[0, ..., 0].numpy(), atol=1e-5)
    key = r._key
    orbit.yaw = 20.0
    r.render(p, *orbit.matrices(160, 120), 160, 120)
    assert r._key is key, "a camera turn must not pose the Gaussians again"
    r.render(apply_settings(av.source.model, p, {"jawOpen": 0.8}), K, w2c, 160, 120)
    assert r._key != key


def test_orbit_camera_turns_about_the_head_centre():
    K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    w2c = np.eye(4)
    w2c[2, 3] = 0.5  # the centre 0.5 m in front of the camera, on its axis
    o = OrbitCamera(K, w2c, (128, 96), np.zeros(3))
    near = np.array([[0.0, 0.0, -0.1]])  # the near side of a 10 cm head
    assert np.allclose(project(near, *o.matrices()), [[63.5, 47.5]])
    o.yaw = 30.0
    (x, y), = project(near, *o.matrices())
    assert x < 63.5 - 8 and abs(y - 47.5) < 1e-6, "+yaw: the camera circles right, the near side moves left"
    assert np.allclose(project(np.zeros((1, 3)), *o.matrices()), [[63.5, 47.5]]), "the centre stays put"
    o.drag(40, 0)  # dragging right brings the near side back right
    assert project(near, *o.matrices())[0, 0] > x
    o.reset()
    o.pitch = 20.0
    assert project(near, *o.matrices())[0, 1] > 47.5 + 5, "+pitch: the camera rises, the near side moves down"
    o.reset()
    o.wheel(3)
    assert o.zoom < 1 and np.isclose(o.world_to_cam()[2, 3], 0.5 * o.zoom)
    # A view of another size shows the same picture letterboxed: the centre at the new middle, one scale.
    K2, _ = o.matrices(256, 256)
    assert np.isclose(K2[0, 0], 200.0) and np.allclose(K2[:2, 2], [127.5, 127.5])


def test_bad_avatars_are_one_sentence(tiny_avatar, tmp_path, capsys):
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "avatar.pt").write_bytes(b"\x80\x04 not a checkpoint")
    assert main(["view", str(bad), "--screenshot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "avatar.pt" in err and "not a readable avatar" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    state = torch.load(tiny_avatar / "avatar.pt", map_location="cpu", weights_only=False)
    state["model"] = f"flame={tmp_path / 'missing_flame.pkl'}"
    torch.save(state, foreign / "avatar.pt")
    assert main(["view", str(foreign), "--screenshot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "head model" in err and "cannot be loaded" in err
    # Its tracking directory gone: the avatar alone, neutral, through a frontal camera at --size; no timeline.
    state = torch.load(tiny_avatar / "avatar.pt", map_location="cpu", weights_only=False)
    state["track_dir"] = str(tmp_path / "moved_away")
    (tmp_path / "alone").mkdir()
    torch.save(state, tmp_path / "alone" / "avatar.pt")
    alone = view_screenshot(tmp_path, tmp_path / "alone", "alone", "--size", "96x80")
    assert alone.shape == (80, 96, 3) and _covered(alone)[30:50, 38:58].all() and not _covered(alone)[:, :5].any()
    assert main(["view", str(tmp_path / "alone"), "--screenshot", str(tmp_path / "x.png"), "--frame", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "moved_away is no longer there" in err
    assert main(["view", str(tiny_avatar), "--screenshot", str(tmp_path / "x.png"), "--wireframe"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--wireframe" in err and "Gaussian avatar" in err
    assert not (tmp_path / "x.png").exists()


GUI_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    torch.set_num_threads(1)
    import open3d as o3d
    from avatar3d.viewer.app import check_gui_support
    from avatar3d.viewer.avatar_app import AvatarViewerApp
    from avatar3d.viewer.gaussians import open_avatar
    from avatar3d.viewer.shot import ViewOptions
    check_gui_support()
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = AvatarViewerApp(open_avatar(sys.argv[1]), ViewOptions(), gui_screenshot=sys.argv[2], quit_after=40, play=True)
    sliders = len(v.sliders)  # (widgets are gone once the window closes: read them before)
    app.run()
    print(f"frames_shown={v.frames_shown} sliders={sliders} pictures={len(v.draw_ms)}")
    """
)


def test_window_plays_the_avatar_beside_its_video(tiny_avatar, tmp_path, out_dir):
    """The window under a private Xvfb: it plays the tracked sequence (one picture per frame), has the expression
    and joint sliders (no identity ones) and its screenshot shows the head on white."""
    from avatar3d.errors import Avatar3DError
    from avatar3d.viewer.xvfb import VirtualDisplay

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (Debian package xvfb; part of the README set-up)")
    script = tmp_path / "gui.py"
    script.write_text(GUI_SCRIPT)
    shot = tmp_path / "gui.png"
    try:
        with VirtualDisplay(tmp_path / "fb") as d:
            proc = subprocess.run([sys.executable, str(script), str(tiny_avatar), str(shot)], env=d.env, cwd=REPO, capture_output=True,
                                  text=True, timeout=120)
    except Avatar3DError as e:
        pytest.skip(str(e))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    info = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert int(info["frames_shown"]) >= 3, f"playback showed only {info['frames_shown']} frames"
    assert int(info["pictures"]) >= int(info["frames_shown"]), "each frame shown needs its picture"
    model = open_avatar(tiny_avatar).source.model
    assert int(info["sliders"]) == model.num_expression + 3 * model.num_joints
    view = np.asarray(Image.open(shot).convert("RGB")).astype(float)
    Image.fromarray(view.astype(np.uint8)).save(out_dir / "viewer_avatar_window.png")
    h, w = view.shape[:2]
    cov = _covered(view)
    assert np.all(view[:5, :5] == 255), "the picture's background should be white"
    assert 0.05 < cov.mean() < 0.8 and cov[h // 2 - 10 : h // 2 + 10, w // 2 - 10 : w // 2 + 10].mean() > 0.9, "no head in the middle of the view"
