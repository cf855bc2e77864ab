"""``avatar3d view AVATAR_DIR --env/--env-rotation/--env-intensity`` and the avatar window's Relight controls
(avatar3d/viewer/gaussians.py, avatar_app.py, commands/view.py), on the tiny avatar with the relightable appearance in
place of its colours (tests/helpers/relight_double.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatar3d._tensor import torch_threads
from avatar3d.cli import main
from tests.helpers.view_cli import view_screenshot

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def test_screenshots_under_two_envs_differ(relit_avatar, tmp_path, out_dir):
    own = view_screenshot(tmp_path, relit_avatar, "own")
    capture = view_screenshot(tmp_path, relit_avatar, "capture", "--env", "capture")
    studio = view_screenshot(tmp_path, relit_avatar, "studio", "--env", "studio")
    sunset = view_screenshot(tmp_path, relit_avatar, "sunset", "--env", "sunset")
    turned = view_screenshot(tmp_path, relit_avatar, "turned", "--env", "sunset", "--env-rotation", "-120")
    bright = view_screenshot(tmp_path, relit_avatar, "bright", "--env", "sunset", "--env-intensity", "2")
    Image.fromarray(np.concatenate([own, studio, sunset, turned, bright], 1).astype(np.uint8)).save(out_dir / "viewer_avatar_relight.png")
    cov = (255 - studio).max(2) > 20
    assert cov.mean() > 0.05
    assert np.abs(own - capture).max() == 0  # 'capture': the avatar's own light
    for a, b in ((own, studio), (studio, sunset), (sunset, turned)):
        assert np.abs(a - b)[cov].mean() > 3
    assert bright[cov].mean() > sunset[cov].mean() + 5


def test_renderer_follows_set_environment(relit_avatar):
    """The picture is the avatar's own render under the environment set: what ``avatar render --env`` draws."""
    import torch

    from avatar3d.render.camera import Camera
    from avatar3d.render.lighting import environment_from_spec
    from avatar3d.viewer.gaussians import AvatarLight, AvatarRenderer, avatar_environment, open_avatar, start_camera
    from avatar3d.viewer.shot import ViewOptions, initial_params

    av = open_avatar(relit_avatar)
    p = initial_params(av.source, ViewOptions(frame=2))
    K, w2c = start_camera(av, 2, (64, 64)).matrices(96, 96)
    r = AvatarRenderer(av.avatar)
    env = avatar_environment(av.avatar, AvatarLight("overcast", 30.0))
    assert np.allclose(env.pixels, environment_from_spec("overcast", 30.0).pixels)
    r.set_environment(env)
    img, _ = r.render(p, K, w2c, 96, 96)
    e, j, t = (torch.as_tensor(x)[None] for x in (p.expression, p.pose, p.transl))
    with torch.no_grad():
        ref = av.avatar(e, j, t, Camera(torch.tensor(K, dtype=torch.float32), torch.tensor(w2c, dtype=torch.float32), 96, 96)).image[0]
    assert np.abs(img.astype(int) - (ref.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()).max() <= 1
    r.set_environment(None)
    assert np.abs(r.render(p, K, w2c, 96, 96)[0].astype(int) - img).max() > 10


@pytest.mark.parametrize("args,want", [
    (["--env", "sunset"], "--relightable"),
    (["--env-rotation", "90"], "--relightable"),
    (["--env", "sunrise"], "studio, sunset, overcast"),
    (["--env", "sky.png"], "not an HDR image"),
])
def test_bad_input_is_one_sentence(tiny_avatar, relit_avatar, tmp_path, capsys, args, want):
    avatar = tiny_avatar if want == "--relightable" else relit_avatar
    if "sky.png" in args:
        Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(tmp_path / "sky.png")
        args = ["--env", str(tmp_path / "sky.png")]
    code = main(["view", str(avatar), "--screenshot", str(tmp_path / "x.png"), *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0, err
    assert want in err and not (tmp_path / "x.png").exists()


GUI_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import open3d as o3d
    from avatar3d.viewer.app import check_gui_support
    from avatar3d.viewer.avatar_app import AvatarViewerApp
    from avatar3d.viewer.gaussians import AvatarLight, open_avatar
    from avatar3d.viewer.shot import ViewOptions
    check_gui_support()
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = AvatarViewerApp(open_avatar(sys.argv[1]), ViewOptions(), quit_after=8, light=AvatarLight("studio"), window_size=(640, 400))
    v.view_widget.frame = o3d.visualization.gui.Rect(0, 0, 96, 96)
    a = v.picture().astype(int)
    v.set_light(environment="sunset")
    b = v.picture().astype(int)
    v.set_light(rotation=120.0)
    c = v.picture().astype(int)
    v.set_light(environment="sunrise")  # refused in the status line, the light kept
    d = v.picture().astype(int)
    status = v.status.text
    app.run()
    print(f"sunset={np.abs(a - b).mean():.2f} turned={np.abs(b - c).mean():.2f} kept={np.abs(c - d).max()} status_ok={'sunrise' in status}")
    """
)


def test_window_relight_controls(relit_avatar, tmp_path):
    from avatar3d.errors import Avatar3DError
    from avatar3d.viewer.xvfb import VirtualDisplay

    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (Debian package xvfb; part of the README set-up)")
    script = tmp_path / "gui.py"
    script.write_text(GUI_SCRIPT)
    try:
        with VirtualDisplay(tmp_path / "fb") as d:
            proc = subprocess.run([sys.executable, str(script), str(relit_avatar)], env={**d.env, "PYTHONPATH": str(REPO)}, cwd=REPO,
                                  capture_output=True, text=True, timeout=120)
    except Avatar3DError as e:
        pytest.skip(str(e))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    info = dict(kv.split("=") for kv in proc.stdout.strip().splitlines()[-1].split())
    assert float(info["sunset"]) > 1 and float(info["turned"]) > 1 and float(info["kept"]) == 0 and info["status_ok"] == "True", info
