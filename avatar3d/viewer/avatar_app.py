"""The ``avatar3d view AVATAR_DIR`` window: a Gaussian avatar drawn by our CPU rasterizer in the Open3D GUI.

Left: the avatar picture (a ``gui.ImageWidget``: drag to turn the camera about the head, shift-drag or the
right button to pan, the wheel to zoom) and, when the avatar's tracking directory is still there, the video
frame. Right: the mesh viewer's panel sections that apply to an avatar: the Source line, Play (the tracked
sequence's timeline) and the expression and joint sliders (:class:`.app.ViewerApp` builds them; identity
sliders are left out: an avatar keeps the identity it was trained on), and Relight: for a relightable avatar the
mesh viewer's environment controls (the capture's own light, studio, sunset, overcast; rotation; intensity),
which set the environment on the avatar's appearance (:func:`.gaussians.avatar_environment`); an avatar whose
colours bake in its capture's light says so there instead. Display modes are the mesh's and are not shown.

Interactivity: no Filament 3D pass at all. Every change (slider, mouse, timeline) re-renders the avatar
with :class:`.gaussians.AvatarRenderer` into the image widget, at most ``interactive_pixels`` pixels while things
move (the widget scales the picture up; a picture's splatting time grows with its pixels) and at the view's full
size once they rest for ``SETTLE_S``.
A slider step is drawn inside its callback (ImGui runs it while drawing the panel, before the picture is
drawn in the same window frame); mouse steps are drawn by the next tick, at most one per tick.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..errors import BadInputError
from .app import DEFAULT_WINDOW, ViewerApp
from .gaussians import AvatarLight, AvatarRenderer, AvatarSource, avatar_environment, avatar_environment_names, avatar_params, start_camera
from .params import set_value, slider_specs
from .shot import ViewOptions

__all__ = ["AvatarViewerApp", "run_avatar_app"]


class AvatarViewerApp(ViewerApp):
    """One avatar window. Create after ``gui.Application.instance.initialize()``.

    It shares :class:`ViewerApp`'s panel (:meth:`ViewerApp._build_drive`), parameter file loading, resets and
    playback, and replaces its Filament view with the avatar picture (so it does not run ``ViewerApp.__init__``).
    """

    SETTLE_S = 0.3  # things still this long -> the full-size picture replaces the interactive ones
    INITIAL_VIEW = (640, 640)  # frontal camera size of an avatar without its sequence (letterboxed into the view)

    def __init__(self, av: AvatarSource, opts: ViewOptions, gui_screenshot: Optional[str] = None, quit_after: Optional[int] = None,
                 play: bool = False, window_size: tuple[int, int] = DEFAULT_WINDOW, interactive_pixels: int = 100_000,
                 light: AvatarLight = AvatarLight()):
        import open3d as o3d

        self.o3d, gui = o3d, o3d.visualization.gui
        self.gui = gui
        self.av, self.source, self.model = av, av.source, av.source.model
        self.params = avatar_params(av, opts)
        self.specs = [s for s in slider_specs(self.model) if s.kind != "shape"]
        self.shape_std = self.model.shape_std.detach().cpu().numpy()
        self.frame = opts.frame or 0
        self.renderer = AvatarRenderer(av.avatar)
        self.light = light
        if not self.light.own:
            self.renderer.set_environment(avatar_environment(av.avatar, self.light))  # a bad --env fails before the window opens
        self.orbit = start_camera(av, self.frame, self.INITIAL_VIEW)
        self.orbit.yaw = float(opts.yaw)
        self.interactive_pixels = int(interactive_pixels)
        self.playing = False
        self._play_t0, self._play_f0 = 0.0, 0
        self._dirty = False
        self._last_change = 0.0
        self._full_drawn = False
        self._mouse: Optional[tuple[float, float]] = None  # last drag position
        self._view_size = (0, 0)
        self._ticks, self._shot_path, self._quit_after = 0, gui_screenshot, quit_after
        self._shot_requested = self._shot_done = False
        self.frames_shown = 0  # distinct sequence frames displayed (playback check)
        self.draw_ms: list[tuple[bool, float]] = []  # (full size?, milliseconds) of each picture drawn

        self.window = gui.Application.instance.create_window(f"avatar3d view - {self.source.label}", *window_size)
        w = self.window
        em = w.theme.font_size
        self.view_widget = gui.ImageWidget(o3d.geometry.Image(np.full((8, 8, 3), 255, np.uint8)))
        self.view_widget.ui_image.scaling = gui.UIImage.Scaling.ASPECT
        self.view_widget.set_on_mouse(self._on_mouse)
        self.image_widget = None
        if self.source.sequence is not None:
            img = self.source.frame_image(self.frame)
            self.image_widget = gui.ImageWidget(o3d.geometry.Image(img if img is not None else np.zeros((8, 8, 3), np.uint8)))
        self.panel = gui.ScrollableVert(0.25 * em, gui.Margins(0.5 * em, 0.5 * em, 0.5 * em, 0.5 * em))
        self.sliders: dict[str, object] = {}
        self.status = gui.Label("")
        self._build_drive(em, f"{av.avatar.num_gaussians} Gaussians on the {self.model.name} head, {self.model.num_expression} expressions")
        self._build_relight()
        view = self._section("View")
        view.add_child(gui.Label("drag: turn, shift/right drag: move, wheel: zoom"))
        self._button(view, "Reset camera", self.reset_camera)
        self._button(view, "Screenshot", self._on_screenshot)
        # The panel first: ImGui runs slider callbacks while drawing it, so the picture drawn after it shows the step.
        w.add_child(self.panel)
        w.add_child(self.view_widget)
        if self.image_widget is not None:
            w.add_child(self.image_widget)
        w.set_on_layout(self._on_layout)
        w.set_on_tick_event(self._on_tick)
        self._changed()
        if play and self.source.sequence is not None:
            self._on_play()

    def _build_relight(self) -> None:
        """The Relight section: environment, rotation and intensity (the mesh viewer's environment controls)."""
        gui = self.gui
        light = self._section("Relight")
        if not self.av.avatar.appearance.relightable:
            light.add_child(gui.Label("this avatar's colours bake in its capture's light;\ntrain it with --relightable to relight it"))
            return
        env = gui.Combobox()
        names = avatar_environment_names()
        for name in names:
            env.add_item(name)
        env.selected_text = self.light.environment if self.light.environment in names else names[0]
        env.set_on_selection_changed(lambda text, i: self.set_light(environment=text))
        light.add_child(env)
        grid = self._grid(light)
        self._slider(grid, "rotation", -180, 180, self.light.rotation, lambda v: self.set_light(rotation=v))
        self._slider(grid, "intensity", 0, 3, self.light.intensity, lambda v: self.set_light(intensity=v))

    def set_light(self, environment: Optional[str] = None, rotation: Optional[float] = None, intensity: Optional[float] = None) -> None:
        """Change the avatar's light (the Relight controls call this); a light that cannot be made is shown in the status line."""
        new = AvatarLight(environment if environment is not None else self.light.environment,
                          float(rotation) if rotation is not None else self.light.rotation,
                          float(intensity) if intensity is not None else self.light.intensity)
        try:
            self.renderer.set_environment(avatar_environment(self.av.avatar, new))
        except BadInputError as e:
            self.status.text = str(e)
            return
        self.light = new
        self._changed()

    # ------------------------------------------------------------------ drawing
    def _on_layout(self, ctx) -> None:
        self.view_widget.frame = self._place_panel_and_video()
        f = self.view_widget.frame
        if (f.width, f.height) != self._view_size:  # a new size needs a new picture (layout also runs without one)
            self._view_size = (f.width, f.height)
            self._changed()

    def picture(self, full: bool = True) -> np.ndarray:
        """(H, W, 3) uint8 avatar picture of the current state at the view's size (``full``) or, scaled down to at most
        ``interactive_pixels`` pixels, the interactive one."""
        f = self.view_widget.frame
        s = 1.0 if full else min(1.0, (self.interactive_pixels / max(1, f.width * f.height)) ** 0.5)
        w, h = max(8, int(f.width * s)), max(8, int(f.height * s))
        K, w2c = self.orbit.matrices(w, h)
        t0 = time.perf_counter()
        img, _ = self.renderer.render(self.params, K, w2c, w, h)
        self.draw_ms.append((full, 1000 * (time.perf_counter() - t0)))
        return img

    def _draw(self, full: bool) -> None:
        self.view_widget.update_image(self.o3d.geometry.Image(np.ascontiguousarray(self.picture(full))))
        self._full_drawn = full
        self.window.post_redraw()

    def _changed(self) -> None:
        """Something the picture shows changed: the next tick draws it (interactive size while things move)."""
        self._dirty = True
        self._last_change = time.monotonic()

    def _moving(self) -> bool:
        return self.playing or time.monotonic() - self._last_change < self.SETTLE_S

    # ------------------------------------------------------------------ callbacks
    def _on_slider(self, spec, value: float) -> None:
        set_value(spec, self.params, float(value), self.shape_std)
        self._last_change = time.monotonic()
        self._dirty = False
        self._draw(full=False)  # inside ImGui's panel pass: this window frame already shows it

    def _on_scrub(self, v: float) -> None:
        super()._on_scrub(v)
        self._last_change = time.monotonic()  # scrubbing is a drag: interactive pictures until it rests

    def _on_mouse(self, e) -> int:
        gui = self.gui
        T = gui.MouseEvent.Type
        if e.type == T.BUTTON_DOWN:
            self._mouse = (e.x, e.y)
        elif e.type == T.DRAG and self._mouse is not None:
            dx, dy = e.x - self._mouse[0], e.y - self._mouse[1]
            self._mouse = (e.x, e.y)
            if e.is_button_down(gui.MouseButton.RIGHT) or e.is_modifier_down(gui.KeyModifier.SHIFT):
                self.orbit.move(dx, dy, max(1, int(self.view_widget.frame.width)))
            else:
                self.orbit.drag(dx, dy)
            self._changed()
        elif e.type == T.BUTTON_UP:
            self._mouse = None
        elif e.type == T.WHEEL:
            self.orbit.wheel(-e.wheel_dy)
            self._changed()
        else:
            return gui.Widget.EventCallbackResult.IGNORED
        self.window.post_redraw()
        return gui.Widget.EventCallbackResult.CONSUMED

    def reset_camera(self) -> None:
        self.orbit.reset()
        self._changed()

    def _on_screenshot(self, path: Optional[str] = None) -> None:
        from PIL import Image

        path = path or f"avatar3d_view_{time.strftime('%Y%m%d_%H%M%S')}.png"
        Image.fromarray(self.picture(full=True)).save(path)
        self._shot_done = True
        self.status.text = f"saved {path}"

    def _on_tick(self) -> bool:
        self._ticks += 1
        redraw = False
        if self.playing and self.source.num_frames:
            f = self._play_f0 + int((time.monotonic() - self._play_t0) * self.source.fps)
            if f % self.source.num_frames != self.frame:
                self._show_frame(f)  # (sets _dirty)
                self._last_change = time.monotonic()
        if self._dirty:
            self._dirty = False
            self._draw(full=not self._moving())
            redraw = True
        elif not self._full_drawn and not self._moving():
            self._draw(full=True)
            redraw = True
        if self._shot_path and not self._shot_requested and self._ticks >= 5:
            self._shot_requested = True
            self._on_screenshot(self._shot_path)
        if self._quit_after is not None and self._ticks >= self._quit_after and (self._shot_done or not self._shot_path):
            # Close via the main-thread queue (closing inside the tick handler crashes Open3D 0.20 at teardown).
            self.gui.Application.instance.post_to_main_thread(self.window, self.window.close)
            self._quit_after = None
            return False
        return redraw


def run_avatar_app(av: AvatarSource, opts: Optional[ViewOptions] = None, gui_screenshot: Optional[str] = None, quit_after: Optional[int] = None,
                   play: bool = False, window_size: tuple[int, int] = DEFAULT_WINDOW, light: AvatarLight = AvatarLight()) -> int:
    """Open the avatar window (``window_size`` (width, height) pixels) and run the event loop until it closes; returns 0."""
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    app = o3d.visualization.gui.Application.instance
    app.initialize()
    AvatarViewerApp(av, opts or ViewOptions(), gui_screenshot, quit_after, play, window_size=window_size, light=light)
    app.run()
    return 0
