"""``avatar3d avatar render --env/--env-rotation/--light`` end to end (avatar3d/avatar/render.py, commands/avatar_render.py):
a relightable avatar's frames relit, a rotating light, and the one sentence for an avatar that cannot be relit.

The relightable avatar is the seconds-long ``tiny_avatar`` with the relightable appearance in place of its colours
(tests/helpers/relight_double.py: reflectance not fitted), so these tests check the plumbing, not the relighting quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from avatar3d._tensor import torch_threads
from avatar3d.cli import main


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


def _render(out, avatar, *args: str) -> list[np.ndarray]:
    assert main(["avatar", "render", str(avatar), "--out", str(out), "--quiet", "--resolution", "96", *args]) == 0
    return [np.asarray(Image.open(p).convert("RGB")).astype(float) for p in sorted(out.glob("*.png"))]


def _sides(img: np.ndarray) -> tuple[float, float]:
    """Mean brightness of the head's left and right halves of the picture (split at the coverage's middle column)."""
    cov = (255 - img).max(2) > 20
    cols = np.nonzero(cov.any(0))[0]
    mid = (cols.min() + cols.max()) // 2
    lum = img.mean(2)
    left, right = cov.copy(), cov.copy()
    left[:, mid:] = False
    right[:, :mid] = False
    return float(lum[left].mean()), float(lum[right].mean())


def test_envs_give_different_images(relit_avatar, tmp_path, capsys):
    own = _render(tmp_path / "own", relit_avatar, "--frames", "0:2")
    studio = _render(tmp_path / "studio", relit_avatar, "--frames", "0:2", "--env", "studio")
    sunset = _render(tmp_path / "sunset", relit_avatar, "--frames", "0:2", "--env", "sunset")
    out = capsys.readouterr().out
    assert "lit by studio" in out and "lit by sunset" in out
    assert len(own) == len(studio) == len(sunset) == 2 and own[0].shape == (96, 96, 3)
    cov = (255 - studio[0]).max(2) > 20
    assert cov.mean() > 0.1
    for a, b in ((own, studio), (studio, sunset)):
        assert np.abs(a[0] - b[0])[cov].mean() > 3
    # sunset is orange: red over blue on the face, more than in the studio
    rb = lambda im: im[cov][:, 0].mean() / max(im[cov][:, 2].mean(), 1.0)  # noqa: E731
    assert rb(sunset[0]) > rb(studio[0]) + 0.05
    # --env capture is the avatar's own light
    cap = _render(tmp_path / "cap", relit_avatar, "--frames", "0:2", "--env", "capture")
    assert np.abs(cap[0] - own[0]).max() <= 1
    manifest = json.loads((tmp_path / "sunset" / "manifest.json").read_text())
    assert "sunset" in json.dumps(manifest)


def test_rotating_the_light_moves_the_bright_side(relit_avatar, tmp_path):
    # A light from the head's left (+90: the picture's right) lights the right half of the picture, and the other way round.
    right = _render(tmp_path / "r", relit_avatar, "--frames", "0:1", "--light", "90,0,2")[0]
    left = _render(tmp_path / "l", relit_avatar, "--frames", "0:1", "--light", "-90,0,2")[0]
    lr, rr = _sides(right), _sides(left)
    assert lr[1] > lr[0] + 10 and rr[0] > rr[1] + 10, (lr, rr)
    # The same through --env-rotation: a frontal light turned +90 / -90 degrees.
    turned = _render(tmp_path / "t", relit_avatar, "--frames", "0:1", "--light", "0,0,2", "--env-rotation", "90")[0]
    assert np.abs(turned - right).max() <= 1
    # Over frames: a yaw sweep of one frame lit by a studio turning half a circle; the bright side swaps.
    sweep = _render(tmp_path / "s", relit_avatar, "--yaw", "0:0:3", "--env", "studio", "--env-rotation", "-90:90")
    assert len(sweep) == 3
    first, last = _sides(sweep[0]), _sides(sweep[-1])
    assert (first[0] - first[1]) * (last[0] - last[1]) < 0, (first, last)


def test_video_with_a_rotating_light(relit_avatar, tmp_path):
    assert main(["avatar", "render", str(relit_avatar), "--out", str(tmp_path / "v"), "--quiet", "--resolution", "64", "--frames", "0:4",
                 "--video", "--env", "overcast", "--env-rotation", "0:360", "--light=-60,30,1,1,0.9,0.8"]) == 0
    assert (tmp_path / "v" / "render.mp4").stat().st_size > 1000


@pytest.mark.parametrize("args,want", [
    (["--env", "studio"], "--relightable"),
    (["--light", "90,0,1"], "--relightable"),
    (["--env", "sunrise"], "studio, sunset, overcast"),
    (["--env-rotation", "left"], "--env-rotation"),
    (["--light", "90,0"], "AZ,EL,INTENSITY"),
])
def test_bad_input_is_one_sentence(tiny_avatar, relit_avatar, tmp_path, capsys, args, want):
    avatar = tiny_avatar if want == "--relightable" else relit_avatar
    out = tmp_path / "out"
    code = main(["avatar", "render", str(avatar), "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert want in err
    assert not out.exists()  # refused before the output folder is made
