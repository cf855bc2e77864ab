"""The Open3D GUI starts under Xvfb, shows the head, and its window is captured and checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatar3d.errors import Avatar3DError
from avatar3d.viewer.xvfb import VirtualDisplay, read_xwd

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def xvfb(tmp_path):
    """A private Xvfb whose screen is mirrored to an XWD file; yields (env, screen file)."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed (Debian package xvfb; part of the README set-up)")
    d = VirtualDisplay(tmp_path / "fb")
    try:
        d.__enter__()
    except Avatar3DError as e:
        pytest.skip(str(e))
    try:
        yield d.env, d.screen
    finally:
        d.__exit__()


GUI_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import open3d as o3d
    from helpers.viewer_toy import toy_head
    from avatar3d.viewer.app import ViewerApp, check_gui_support
    from avatar3d.viewer.shot import ViewOptions
    from avatar3d.viewer.source import ViewerSource, open_source
    check_gui_support()
    toy = toy_head()
    if sys.argv[3] == "sequence":
        from helpers.viewer_toy import synthetic_sequence
        d = Path(sys.argv[1]).parent / "track"
        synthetic_sequence(toy, d, n=6)
        source, play = open_source(str(d), model=toy), True
    else:
        source, play = ViewerSource(toy, "toy"), False
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = ViewerApp(source, ViewOptions(landmarks=True), gui_screenshot=sys.argv[1], quit_after=int(sys.argv[2]), play=play)
    app.run()
    print(f"frames_shown={{v.frames_shown}}")
    """
)


def _run_gui(xvfb, tmp_path, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Run the app on the toy head; returns (3D-view screenshot, whole X screen, stdout)."""
    env, screen = xvfb
    shot = tmp_path / "gui.png"
    script = tmp_path / "gui.py"
    script.write_text(GUI_SCRIPT.format(tests=str(REPO / "tests")))
    # An idle window ticks ~100 times a second, a playing one ~10 (each tick re-poses and redraws):
    # either way a few seconds remain to grab the whole screen after the view screenshot (tick 5).
    ticks = "60" if kind == "sequence" else "200"
    proc = subprocess.Popen([sys.executable, str(script), str(shot), ticks, kind], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    while not shot.exists() and proc.poll() is None and time.time() - t0 < 90:
        time.sleep(0.1)
    time.sleep(0.3)  # the PNG is written in one go by the callback; let the window settle
    window = read_xwd(screen) if proc.poll() is None else None
    out, _ = proc.communicate(timeout=90)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    assert shot.exists(), "the GUI did not save its screenshot"
    assert window is not None, "the window closed before the screen could be captured"
    return np.asarray(Image.open(shot).convert("RGB")).astype(int), window, text


def _window_box(window: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(window.sum(2) > 30)  # the window (the root window of Xvfb is black)
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    assert (x1 - x0) > 600 and (y1 - y0) > 400, "no window on the screen"
    return x0, x1, y0, y1


def test_gui_starts_shows_the_head_and_quits(xvfb, tmp_path, out_dir):
    view, window, _ = _run_gui(xvfb, tmp_path, "model")
    h, w = view.shape[:2]
    centre = view[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20].reshape(-1, 3).mean(0)
    corner = view[:20, :20].reshape(-1, 3).mean(0)
    assert view.std() > 10, "3D view screenshot is blank"
    assert np.abs(centre - corner).sum() > 60, f"no head at the centre of the view: centre {centre}, background {corner}"
    Image.fromarray(window).save(out_dir / "viewer_gui_window.png")
    assert window.std() > 10, "the X screen is blank"
    # The 3D view fills the left of the window: its centre shows the head, unlike the background.
    x0, x1, y0, y1 = _window_box(window)
    vx, vy = x0 + int((x1 - x0 - 340) / 2), (y0 + y1) // 2  # panel of ~340 px on the right
    head = window[vy - 15 : vy + 15, vx - 15 : vx + 15].reshape(-1, 3).astype(int).mean(0)
    bg = window[y0 + 30 : y0 + 50, x0 + 10 : x0 + 30].reshape(-1, 3).astype(int).mean(0)
    assert np.abs(head - bg).sum() > 60, f"window centre {head} looks like the background {bg}"


def test_gui_plays_a_tracked_sequence_beside_its_frames(xvfb, tmp_path, out_dir):
    view, window, text = _run_gui(xvfb, tmp_path, "sequence")
    Image.fromarray(window).save(out_dir / "viewer_gui_sequence.png")
    shown = int(text.rsplit("frames_shown=", 1)[1].split()[0])
    assert shown >= 3, f"playback showed only {shown} frames"
    # Left quarter of the window: the source frame (the synthetic frames are a grey 167 head on 40).
    x0, x1, y0, y1 = _window_box(window)
    fx, fy = x0 + int((x1 - x0 - 340) / 4), (y0 + y1) // 2
    frame_px = window[fy - 10 : fy + 10, fx - 10 : fx + 10].reshape(-1, 3).astype(int).mean(0)
    assert np.all(np.abs(frame_px - 167) < 25), f"source frame not shown beside the 3D view (got {frame_px})"
    h, w = view.shape[:2]
    assert np.abs(view[h // 2, w // 2] - view[5, 5]).sum() > 60, "no head in the 3D view"



DRAG_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    import open3d as o3d
    from helpers.viewer_toy import toy_head
    from avatar3d.viewer.app import ViewerApp
    from avatar3d.viewer.shot import ViewOptions
    from avatar3d.viewer.source import ViewerSource
    d = Path(sys.argv[1])
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    v = ViewerApp(ViewerSource(toy_head(), "toy"), ViewOptions())
    spec = next(s for s in v.specs if s.name == "jawOpen")
    st = {{"k": 0, "phase": "neutral"}}
    orig = v._on_tick

    def tick():
        st["k"] += 1
        ph = st["phase"]
        if ph == "neutral" and st["k"] > 30:
            f, o = v.scene_widget.frame, v.window.os_frame
            (d / "box").write_text(f"{{o.x + f.x}} {{o.y + f.y}} {{f.width}} {{f.height}}")
            st["phase"] = "wait_neutral"
        elif ph == "wait_neutral" and (d / "grabbed_neutral").exists():
            v._on_slider(spec, 1.0)  # what ImGui calls when the jawOpen slider moves
            v.SETTLE_S = 1e9  # hold the drag until the screen is grabbed
            st["phase"], st["t"] = "dragging", time.monotonic()
        elif ph == "dragging" and time.monotonic() - st["t"] > 1.0:
            (d / "dragged").write_text(f"{{v._soft_state}} {{int(v.soft_widget.visible)}} {{int(v.scene_widget.visible)}}")
            st["phase"] = "wait_drag"
        elif ph == "wait_drag" and (d / "grabbed_drag").exists():
            v.SETTLE_S = 0.5
            st["phase"] = "settling"
        elif ph == "settling" and v._soft_state == "off":
            st["phase"], st["t"] = "settled", time.monotonic()
        elif ph == "settled" and time.monotonic() - st["t"] > 1.5:
            (d / "done").write_text(f"{{v._soft_state}} {{int(v.soft_widget.visible)}} {{int(v.scene_widget.visible)}}")
            st["phase"] = "wait_done"
        elif ph == "wait_done" and (d / "grabbed_done").exists():
            st["phase"] = "quit"
            app.post_to_main_thread(v.window, v.window.close)
        return orig()

    v.window.set_on_tick_event(tick)
    app.run()
    """
)


def test_gui_slider_drag_draws_software_frames_then_full_quality(xvfb, tmp_path, out_dir):
    """A slider step in the window: the image widget shows our rasterizer's picture of the new
    expression (the SceneWidget is hidden); once the slider rests, the full-quality 3D view is back
    and shows the same expression."""
    env, screen = xvfb
    script = tmp_path / "drag.py"
    script.write_text(DRAG_SCRIPT.format(tests=str(REPO / "tests")))
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait_for(name: str, timeout: float = 90.0) -> str:
        t0 = time.time()
        while not (tmp_path / name).exists():
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")[-2000:]
            assert time.time() - t0 < timeout, f"the viewer never reached {name!r}"
            time.sleep(0.05)
        time.sleep(0.05)
        return (tmp_path / name).read_text()

    try:
        x, y, w, h = map(int, wait_for("box").split())
        time.sleep(1.5)  # the first full-quality frame
        grab = lambda: read_xwd(screen)[y : y + h, x : x + w].astype(float)  # noqa: E731
        neutral = grab()
        (tmp_path / "grabbed_neutral").touch()
        state = wait_for("dragged").split()
        dragged = grab()
        (tmp_path / "grabbed_drag").touch()
        done_state = wait_for("done").split()
        settled = grab()
        (tmp_path / "grabbed_done").touch()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert state == ["shown", "1", "0"], f"while dragging: (state, image widget visible, scene widget visible) = {state}"
    assert done_state == ["off", "0", "1"], f"after the slider rests: {done_state}"
    Image.fromarray(np.concatenate([neutral, dragged, settled], 1).astype(np.uint8)).save(out_dir / "viewer_gui_drag.png")
    moved = np.abs(dragged - neutral).max(2) > 40
    assert moved.sum() > 300, f"the drag did not change the view ({int(moved.sum())} pixels)"
    ys = np.nonzero(moved)[0]
    assert ys.mean() > h * 0.5, "the jaw (lower half of the head) should be what changes"
    # The software frame and the full-quality frame after it show the same expression.
    settle_moved = np.abs(settled - neutral).max(2) > 40
    iou = (moved & settle_moved).sum() / (moved | settle_moved).sum()
    assert iou > 0.6, f"software frame and full-quality frame disagree on what moved (IoU {iou:.2f})"
    head = np.abs(settled - settled[5, 5]).sum(2) > 30
    assert np.abs(dragged - settled)[head].mean() < 15, "software and full-quality frames look different"
