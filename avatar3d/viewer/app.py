"""The ``avatar3d view`` window, built on ``open3d.visualization.gui``.

Left: the 3D view (orbit camera) and, for tracked sequences, the source frame. Right: a panel with
Drive (grouped expression sliders, joint rotations, identity, parameter file), Play (timeline),
Relight (directional + environment light) and Display (mode, overlays, camera, screenshot).

Interactivity (``interactive=True``, the default). Two facts of Open3D 0.20 on a CPU (Mesa
llvmpipe) shape it, both measured with :mod:`.latency`: every window frame costs ~60-110 ms of
llvmpipe CPU at 1280x820 whatever it shows (the GUI pass draws the whole window), and a change of
the ``SceneWidget`` reaches the screen only with the frame *after* the one that renders it (the GUI
pass composites the 3D view's texture before Filament re-renders it). So while a slider moves
(``software=True``, the default) the viewer poses the head in the slider callback, draws it with
our own CPU rasterizer (:mod:`.softview`: the same picture as Filament's interactive frame) and
shows it in an image widget in place of the hidden ``SceneWidget``: one window frame per step and
no Filament 3D pass. The panel is the window's first child, so ImGui runs the slider callback
before it draws the 3D area in the same frame. Once the sliders rest for ``SETTLE_S`` the tick
handler updates the Filament scene at full quality behind the picture and swaps the widgets back a
frame later. In shaded mode with the wireframe or landmark overlays (which the rasterizer does not
draw), and with ``software=False``, slider steps use Filament's interactive frames
(:mod:`.fastshade`); other display modes and the environment shown as background are drawn at full
quality, as is every change with ``interactive=False`` (the original path, the benchmark's
reference).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import Avatar3DError
from ..render.camera import raster_intrinsics
from .envmaps import environment_names
from .headless import check_offscreen_support
from .mesh import HeadMesh
from .params import GROUPS, HeadParams, get_value, load_param_file, set_value, slider_specs
from .scene import DISPLAY_MODES, HeadScene
from .shot import ViewOptions, initial_params, rest_camera
from .source import ViewerSource

__all__ = ["check_gui_support", "run_app", "ViewerApp", "DEFAULT_WINDOW"]

#: Window size (width, height) in pixels when none is asked for.
DEFAULT_WINDOW = (1280, 820)


def check_gui_support() -> None:
    """Raise one sentence when no window can be opened here."""
    check_offscreen_support()
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise Avatar3DError("no display found ($DISPLAY is unset): run it in a desktop session, under a virtual X server "
                            "('xvfb-run -a avatar3d view ...', Debian package xvfb), or render without a window with --screenshot PNG")


class ViewerApp:
    """One viewer window. Create after ``gui.Application.instance.initialize()``."""

    PANEL_W = 340
    SETTLE_S = 0.5  # sliders still this long -> the full-quality frame replaces the interactive ones
    RETRY_S = 0.04  # while interactive, re-request the 3D view at most this often
    FLUSH_S, FLUSH_EVERY_S = 0.4, 0.1  # after a 3D view change: a frame every 0.1 s for 0.4 s

    def __init__(self, source: ViewerSource, opts: ViewOptions, gui_screenshot: Optional[str] = None, quit_after: Optional[int] = None,
                 play: bool = False, interactive: bool = True, software: bool = True, window_size: tuple[int, int] = DEFAULT_WINDOW):
        import open3d as o3d

        self.o3d, gui, R = o3d, o3d.visualization.gui, o3d.visualization.rendering
        self.gui = gui
        self.source, self.model = source, source.model
        self.mesh = HeadMesh(self.model, source.maps)
        self.params: HeadParams = initial_params(source, opts)
        self.specs = slider_specs(self.model)
        self.shape_std = self.model.shape_std.detach().cpu().numpy()
        self.frame = opts.frame or 0
        self.interactive = interactive
        # Interactive frames drawn by our CPU rasterizer into an image widget (see .softview): one
        # window frame per slider step instead of two. False keeps Filament's interactive frames.
        self.software = bool(interactive and software)
        self._soft_state = "off"  # "off" | "shown" (image widget up) | "settling" (full frame rendering behind it)
        self._swap_tick = 0
        self._soft_retry = False
        self._flush_until = self._last_flush = 0.0  # extra frames after a 3D view change (see _on_tick)
        self.playing = False
        self._play_t0, self._play_f0 = 0.0, 0
        self._dirty = self._light_dirty = False
        self._last_drag = 0.0  # time of the last slider change drawn with an interactive frame
        self._last_retry = 0.0
        self._ticks, self._shot_path, self._quit_after = 0, gui_screenshot, quit_after
        self._shot_requested = self._shot_done = False

        self.window = gui.Application.instance.create_window(f"avatar3d view - {source.label}", *window_size)
        w = self.window
        em = w.theme.font_size
        self.scene_widget = gui.SceneWidget()
        self.scene_widget.scene = R.Open3DScene(w.renderer)
        self.head = HeadScene(self.scene_widget.scene, self.mesh)
        # Render the 3D view only when it changes: frames that only move a slider knob (or the
        # mouse over the panel) then cost the UI alone, and the frames that bring a change to the
        # screen (see _on_tick) do not render it again.
        self.scene_widget.enable_scene_caching(True)
        self.head.on_change = self._scene_changed
        # No MSAA by default (Mesa llvmpipe renders ~3x faster; see benchmarks/bench_viewer.py).
        self.scene_widget.scene.view.set_antialiasing(False)
        self.head.set_params(self.params)
        self.head.set_display(opts.mode, opts.wireframe, opts.landmarks)  # validates the mode
        self.head.set_lighting(opts.lighting)  # validates the environment name
        self.soft_widget = gui.ImageWidget(o3d.geometry.Image(np.zeros((8, 8, 3), np.uint8)))
        self.soft_widget.visible = False
        if self.software:
            import torch

            from ..render.backends import get_mesh_backend

            get_mesh_backend("auto", torch.zeros(1, 3, 4))  # load the rasterizer now, not on the first drag

        self.image_widget = None
        if source.sequence is not None:
            img = source.frame_image(self.frame)
            self.image_widget = gui.ImageWidget(o3d.geometry.Image(img if img is not None else np.zeros((8, 8, 3), np.uint8)))

        self.panel = gui.ScrollableVert(0.25 * em, gui.Margins(0.5 * em, 0.5 * em, 0.5 * em, 0.5 * em))
        self.sliders: dict[str, object] = {}
        self.status = gui.Label("")
        self._build_panel(em)
        # The panel is drawn first: ImGui runs slider callbacks while it draws the panel, so the 3D
        # view and the software picture drawn after it in the same frame already show the change
        # (drawn before it, they would show it only in the next frame).
        w.add_child(self.panel)
        w.add_child(self.scene_widget)
        w.add_child(self.soft_widget)
        if self.image_widget is not None:
            w.add_child(self.image_widget)
        w.set_on_layout(self._on_layout)
        w.set_on_tick_event(self._on_tick)
        self.reset_camera()
        self.frames_shown = 0  # distinct sequence frames displayed (playback check)
        if play and source.sequence is not None:
            self._on_play()

    # ------------------------------------------------------------------ panel
    def _section(self, title: str, open_: bool = True):
        c = self.gui.CollapsableVert(title, 0.25 * self.window.theme.font_size, self.gui.Margins(0.5 * self.window.theme.font_size, 0, 0, 0))
        c.set_is_open(open_)
        self.panel.add_child(c)
        return c

    def _slider(self, parent, label: str, lo: float, hi: float, value: float, on_change, integer: bool = False):
        """Add a label + slider pair to ``parent`` (a 2-column ``VGrid``, so sliders line up)."""
        gui = self.gui
        s = gui.Slider(gui.Slider.INT if integer else gui.Slider.DOUBLE)
        s.set_limits(lo, hi)
        s.int_value = int(value) if integer else 0
        if not integer:
            s.double_value = float(value)
        s.set_on_value_changed(on_change)
        parent.add_child(gui.Label(label))
        parent.add_child(s)
        return s

    def _grid(self, parent):
        g = self.gui.VGrid(2, 0.25 * self.window.theme.font_size)
        parent.add_child(g)
        return g

    def _button(self, parent, text: str, cb):
        b = self.gui.Button(text)
        b.set_on_clicked(cb)
        parent.add_child(b)
        return b

    def _build_panel(self, em: float) -> None:
        self._build_drive(em, f"{self.model.name}: {self.model.num_vertices} vertices, {self.model.num_expression} expressions")
        self._build_look(em)

    def _build_drive(self, em: float, about: str) -> None:
        """The Source (``about``: one line on what is shown), Play and slider sections (the avatar window shares them)."""
        gui = self.gui
        top = self._section(f"Source: {self.source.label}")
        top.add_child(gui.Label(about))
        row = gui.Horiz(0.25 * em)
        self.param_edit = gui.TextEdit()
        self.param_edit.placeholder_text = "parameter file (.json / .npz)"
        row.add_child(self.param_edit)
        self._button(row, "Load", self._on_load_params)
        top.add_child(row)
        self._button(top, "Reset all", lambda: self._reset(None))
        top.add_child(self.status)

        if self.source.sequence is not None:
            play = self._section(f"Play ({self.source.num_frames} frames @ {self.source.fps:g} fps)")
            row = gui.Horiz(0.25 * em)
            self.play_button = self._button(row, "Play", self._on_play)
            play.add_child(row)
            self.timeline = self._slider(self._grid(play), "frame", 0, self.source.num_frames - 1, self.frame, self._on_scrub, integer=True)

        groups: dict[str, list] = {}
        for s in self.specs:
            groups.setdefault(s.group, []).append(s)
        # Jaw first: jawOpen is the slider users reach for most, so it sits above the fold.
        order = ("jaw",) + tuple(g for g in GROUPS if g != "jaw")
        titles = [(g, f"Expressions: {g}") for g in order] + [("pose", "Joints (degrees)"), ("identity", "Identity (prior std)")]
        for key, title in titles:
            if key not in groups:
                continue
            sec = self._section(title, open_=key in ("jaw", "mouth", "pose"))
            self._button(sec, f"Reset {key}", lambda k=key: self._reset(k))
            grid = self._grid(sec)
            for s in groups[key]:
                self.sliders[s.name] = self._slider(grid, s.name, s.lo, s.hi, get_value(s, self.params, self.shape_std),
                                                    lambda v, spec=s: self._on_slider(spec, v))

    def _build_look(self, em: float) -> None:
        """The Relight and Display sections (meshes only)."""
        gui = self.gui
        L = self.head.lighting
        light = self._section("Relight")
        light.add_child(gui.Label("Directional light"))
        lg = self._grid(light)
        self._slider(lg, "azimuth", -180, 180, L.azimuth, lambda v: self._on_light("azimuth", v))
        self._slider(lg, "elevation", -89, 89, L.elevation, lambda v: self._on_light("elevation", v))
        self._slider(lg, "intensity", 0, 3, L.intensity, lambda v: self._on_light("intensity", v))
        self.light_color = gui.ColorEdit()
        self.light_color.color_value = gui.Color(*L.color)
        self.light_color.set_on_value_changed(lambda c: self._on_light("color", (c.red, c.green, c.blue)))
        light.add_child(self.light_color)
        light.add_child(gui.Label("Environment light"))
        env = gui.Combobox()
        for name in environment_names(self.mesh.maps.environment if self.mesh.maps is not None else None):
            env.add_item(name)
        env.selected_text = L.environment
        env.set_on_selection_changed(lambda text, i: self._on_light("environment", text))
        light.add_child(env)
        eg = self._grid(light)
        self._slider(eg, "rotation", -180, 180, L.env_rotation, lambda v: self._on_light("env_rotation", v))
        self._slider(eg, "intensity", 0, 3, L.env_intensity, lambda v: self._on_light("env_intensity", v))
        sky = gui.Checkbox("show as background")
        sky.checked = L.show_environment
        sky.set_on_checked(lambda c: self._on_light("show_environment", c))
        light.add_child(sky)

        disp = self._section("Display")
        mode = gui.Combobox()
        for m in DISPLAY_MODES:
            mode.add_item(m)
        mode.selected_text = self.head.mode
        mode.set_on_selection_changed(lambda text, i: self.head.set_display(text))
        disp.add_child(mode)
        for label, attr in (("wireframe", "wireframe"), ("landmarks", "landmarks")):
            cb = gui.Checkbox(label)
            cb.checked = getattr(self.head, attr)
            cb.set_on_checked(lambda c, a=attr: self.head.set_display(**{a: c}))
            disp.add_child(cb)
        msaa = gui.Checkbox("smooth edges (MSAA, ~3x slower on a CPU)")
        msaa.checked = False
        msaa.set_on_checked(self._on_msaa)
        disp.add_child(msaa)
        self._button(disp, "Reset camera" + (" (tracking)" if self.source.sequence is not None else ""), self.reset_camera)
        self._button(disp, "Screenshot", self._on_screenshot)

    # ------------------------------------------------------------------ callbacks
    def _place_panel_and_video(self):
        """Lay out the panel (right) and the video (left half of the rest, when shown); returns the view's rectangle."""
        r = self.window.content_rect
        pw = min(self.PANEL_W * self.window.scaling, r.width * 0.45)
        view_w = r.width - pw
        self.panel.frame = self.gui.Rect(r.x + view_w, r.y, pw, r.height)
        if self.image_widget is None:
            return self.gui.Rect(r.x, r.y, view_w, r.height)
        half = view_w // 2
        self.image_widget.frame = self.gui.Rect(r.x, r.y, half, r.height)
        return self.gui.Rect(r.x + half, r.y, view_w - half, r.height)

    def _on_layout(self, ctx) -> None:
        self.scene_widget.frame = self._place_panel_and_video()
        self.soft_widget.frame = self.scene_widget.frame

    def _scene_changed(self) -> None:
        """The Filament scene changed: render the 3D view again and bring it to the screen (the
        tick handler draws a few more frames, see _on_tick). HeadScene calls it after each of its
        changes (``on_change``): the tick handler need not request it again."""
        self.scene_widget.force_redraw()
        self._flush_until, self._last_flush = time.monotonic() + self.FLUSH_S, 0.0

    def _on_msaa(self, on: bool) -> None:
        self.scene_widget.scene.view.set_antialiasing(on)
        self._scene_changed()

    def _on_slider(self, spec, value: float) -> None:
        set_value(spec, self.params, float(value), self.shape_std)
        if self._software_step(pose=True):
            return
        if self.interactive:
            # ImGui runs this callback while it builds the frame, before Filament draws it: posing
            # here puts the new head in the very frame that moves the slider knob (waiting for the
            # tick would cost a whole extra frame). ImGui reports one value per slider per frame,
            # so a fast drag still poses once per frame.
            self._drag_frame(lambda: self.head.set_params(self.params))
        else:
            self._dirty = True

    def _on_light(self, attr: str, value) -> None:
        setattr(self.head.lighting, attr, value)
        drag = attr in ("azimuth", "elevation", "intensity", "color", "env_rotation", "env_intensity")
        self._light_dirty = True  # the Filament lights (and a re-baked environment) follow when the sliders rest
        if drag and self._software_step(pose=False):
            return
        if self.interactive and drag:
            self._drag_frame(self.head._refresh)

    def _software_step(self, pose: bool) -> bool:
        """Draw a slider step with our CPU rasterizer into the image widget (the Filament scene is
        left alone until the sliders rest); False when that path is off or cannot draw this state."""
        f = self.scene_widget.frame
        if not self.software or not self.head.software_ok or self.head.vertices is None or f.width < 8 or f.height < 8:
            return False
        if pose:
            verts, lmk, _ = self.mesh.pose(self.params)
            self.head.set_vertices(verts, lmk, update_scene=False)
        img = self.head.software_frame(f.width, f.height)
        self.soft_widget.update_image(self.o3d.geometry.Image(img))
        if self._soft_state != "shown":
            self.soft_widget.visible = True
            self.scene_widget.visible = False
            self._soft_state = "shown"
        self._last_drag = time.monotonic()
        self._soft_retry = True
        self.window.post_redraw()
        return True

    def _settle_software(self) -> bool:
        """Tick-side end of a software drag: bring the Filament scene up to date at full quality
        behind the image widget, and a frame later swap the widgets (the scene view's texture is
        composited one frame after it renders, so swapping at once would flash the old head).
        Returns whether a window frame is needed."""
        if self._soft_state == "shown" and (time.monotonic() - self._last_drag > self.SETTLE_S or not self.head.software_ok):
            self.head.set_interactive(False, refresh=False)
            # the Filament geometry follows the drag's vertices (and _scene_changed redraws the view)
            self.head._refresh()
            if self._light_dirty:
                self._light_dirty = False
                self.head.apply_lighting()
            self._soft_state, self._swap_tick = "settling", self._ticks + 2
            return True
        if self._soft_state == "shown" and self._soft_retry and time.monotonic() - self._last_drag > self.RETRY_S:
            # One more frame shortly after a step: Filament skips a frame while the previous one
            # is still in flight, and the picture would then wait for the next event. (Not a
            # steady stream: every window frame costs ~60-110 ms of llvmpipe CPU.)
            self._soft_retry = False
            return True
        if self._soft_state == "settling" and self._ticks >= self._swap_tick:
            self.scene_widget.visible = True
            self.soft_widget.visible = False
            self._soft_state = "off"
            return True
        return self._soft_state == "settling"

    def _drag_frame(self, update) -> None:
        """Draw the change with an interactive frame (see :mod:`.fastshade`); the tick handler
        draws one full-quality frame once the sliders rest for ``SETTLE_S``. ``update`` re-adds the
        geometry (posing or lights), so switching to interactive frames does not refresh it first."""
        self.head.set_interactive(True, refresh=False)
        update()
        self._last_drag = time.monotonic()

        self.window.post_redraw()

    def _sync_sliders(self) -> None:
        for s in self.specs:
            self.sliders[s.name].double_value = get_value(s, self.params, self.shape_std)

    def _reset(self, group: Optional[str]) -> None:
        neutral = self.source.frame_params(self.frame) if self.source.sequence is not None else HeadParams.neutral(self.model)
        for s in self.specs:
            if group is None or s.group == group:
                set_value(s, self.params, get_value(s, neutral, self.shape_std), self.shape_std)
        self._sync_sliders()
        self._dirty = True

    def _on_load_params(self) -> None:
        try:
            self.params = load_param_file(self.param_edit.text_value.strip(), self.model, self.params)
            self.status.text = f"loaded {Path(self.param_edit.text_value).name}"
        except (Avatar3DError, ValueError, OSError) as e:
            self.status.text = str(e)[:120]
            return
        self._sync_sliders()
        self._dirty = True

    def _show_frame(self, i: int) -> None:
        self.frame = int(i) % max(self.source.num_frames, 1)
        self.frames_shown += 1
        self.params = self.source.frame_params(self.frame)
        self._sync_sliders()
        self.timeline.int_value = self.frame
        img = self.source.frame_image(self.frame)
        if img is not None and self.image_widget is not None:
            self.image_widget.update_image(self.o3d.geometry.Image(img))
        self._dirty = True

    def _on_play(self) -> None:
        self.playing = not self.playing
        self.play_button.text = "Pause" if self.playing else "Play"
        self._play_t0, self._play_f0 = time.monotonic(), self.frame

    def _on_scrub(self, v: float) -> None:
        self.playing = False
        self.play_button.text = "Play"
        self._show_frame(int(v))

    def reset_camera(self) -> None:
        sw = self.scene_widget
        bbox = sw.scene.bounding_box
        if self.source.sequence is not None:
            K, w2c, w, h = self.source.frame_camera(self.frame)
        else:
            w, h = 640, 640
            K, w2c = rest_camera(self.mesh, self.params, w, h)
        sw.setup_camera(raster_intrinsics(np.asarray(K, np.float64)), w2c, w, h, bbox)  # Open3D: pixel centres at +0.5
        sw.center_of_rotation = bbox.get_center()
        self._scene_changed()

    def _on_screenshot(self, path: Optional[str] = None) -> None:
        path = path or f"avatar3d_view_{time.strftime('%Y%m%d_%H%M%S')}.png"
        if self._soft_state == "shown":
            self.head._refresh()  # the Filament scene lags a software drag: catch it up first

        def done(img):
            from PIL import Image

            Image.fromarray(np.asarray(img)).save(path)
            self._shot_done = True
            self.gui.Application.instance.post_to_main_thread(self.window, lambda: setattr(self.status, "text", f"saved {path}"))

        self.scene_widget.scene.scene.render_to_image(done)
        self.window.post_redraw()

    def _on_tick(self) -> bool:
        self._ticks += 1

        redraw = False
        now = time.monotonic()
        if now < self._flush_until and now - self._last_flush >= self.FLUSH_EVERY_S:
            # The GUI pass composites the 3D view's texture before Filament re-renders it, so a
            # changed 3D view reaches the screen only with a later frame, and Filament skips a
            # frame while the previous one is still in flight: without these few extra frames
            # the change waits for the next mouse event (measured: viewer/latency.py timed out
            # on most steps). The 3D view is cached, so they cost the GUI pass only.
            self._last_flush = now
            redraw = True
        if self.playing and self.source.num_frames:
            f = self._play_f0 + int((time.monotonic() - self._play_t0) * self.source.fps)
            if f % self.source.num_frames != self.frame:
                self._show_frame(f)
        if self._dirty:
            self._dirty = False
            if not self._software_step(pose=True):  # (playback, resets, parameter files)
                self.head.set_params(self.params)
            redraw = True
        if self._soft_state != "off":
            redraw = self._settle_software() or redraw
        settled = not self.head.interactive or time.monotonic() - self._last_drag > self.SETTLE_S
        now = time.monotonic()
        if self.head.interactive and not settled and now - self._last_retry > self.RETRY_S:
            # Filament skips a frame while earlier ones are still in flight (llvmpipe renders
            # asynchronously), and the 3D view is cached: a skipped interactive frame would stay
            # unseen until the full-quality one. Keep asking for it (throttled: a request that
            # finds Filament busy still costs a UI pass) until the sliders settle.
            self._last_retry = now
            self.scene_widget.force_redraw()
            redraw = True
        if self._light_dirty and settled and self._soft_state == "off":
            self._light_dirty = False
            self.head.apply_lighting()
            redraw = True
        if self.head.interactive and settled:
            self.head.set_interactive(False)  # the slider rests: one full-quality frame
            redraw = True
        if self._shot_path and not self._shot_requested and self._ticks >= 5:
            self._shot_requested = True
            self._on_screenshot(self._shot_path)
            redraw = True
        if self._quit_after is not None and self._ticks >= self._quit_after and (self._shot_done or not self._shot_path):
            # Close via the main-thread queue: closing (or Application.quit) from inside the tick
            # handler makes Open3D 0.20 crash at teardown.
            self.gui.Application.instance.post_to_main_thread(self.window, self.window.close)
            self._quit_after = None
            return False
        if redraw:
            # (a changed Filament scene already started its flush frames: HeadScene.on_change)
            self.window.post_redraw()
        return redraw


def run_app(source: ViewerSource, opts: Optional[ViewOptions] = None, gui_screenshot: Optional[str] = None, quit_after: Optional[int] = None,
            play: bool = False, window_size: tuple[int, int] = DEFAULT_WINDOW) -> int:
    """Open the window (``window_size`` (width, height) in pixels) and run the event loop until it closes; returns 0."""
    import open3d as o3d
    import torch

    torch.set_num_threads(1)  # posing is ~2 ms single-threaded; more threads only contend with the renderer
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    ViewerApp(source, opts or ViewOptions(), gui_screenshot, quit_after, play, window_size=window_size)
    app.run()
    return 0
