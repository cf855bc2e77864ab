"""``avatar3d view [SOURCE]``: drive, play and relight a head in an Open3D window, or render headless.

Examples::

    avatar3d view builtin                                   # the GUI
    avatar3d view ict --screenshot out.png --set jawOpen=0.8 --light-azimuth 60
    avatar3d view out/track_d0 --screenshot f12.png --frame 12 --beside --overlay 0.6
    avatar3d view out/avatar_d0 --screenshot side.png --frame 12 --yaw 40 --set jawOpen=0.5   # a Gaussian avatar
    avatar3d view out/avatar_d0 --screenshot lit.png --env sunset --env-rotation 90           # a relightable one, relit
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadInputError


def _color(text: str) -> tuple[float, float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected R,G,B with values in 0..1 (e.g. 1,0.9,0.8), got {text!r}")
    return (parts[0], parts[1], parts[2])


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        size = (int(w), int(h or w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT or one number, got {text!r}") from None
    if min(size) < 8 or max(size) > 4096:
        raise argparse.ArgumentTypeError(f"image size must be 8..4096 pixels per side, got {text!r}")
    return size


def options_from_args(args: argparse.Namespace):
    from ..viewer.params import parse_settings
    from ..viewer.scene import Lighting
    from ..viewer.shot import ViewOptions

    light = Lighting(azimuth=args.light_azimuth, elevation=args.light_elevation, intensity=args.light_intensity, color=args.light_color,
                     environment=args.env or "studio", env_rotation=args.env_rotation, env_intensity=args.env_intensity, show_environment=args.show_env)
    return ViewOptions(settings=parse_settings(args.set or []), param_file=args.params, frame=args.frame, lighting=light,
                       mode=args.display, wireframe=args.wireframe, landmarks=args.landmarks, width=args.size[0], height=args.size[1],
                       beside=args.beside, overlay=args.overlay, yaw=args.yaw)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..viewer.source import open_source

    torch.set_num_threads(1)  # posing is a few small matmuls; extra threads only contend with the renderer
    opts = options_from_args(args)
    from ..viewer.gaussians import avatar_dir

    if not args.screenshot and args.quit_after is not None and args.quit_after < 1:  # the window's frame count
        raise BadInputError(f"--quit-after expects a positive number of frames, got {args.quit_after}")
    avatar = avatar_dir(args.source)
    if avatar is not None:
        return _run_avatar(avatar, args, opts)
    if args.screenshot:
        from ..viewer.headless import check_offscreen_support
        from ..viewer.shot import check_screenshot_path, render_view, save_image

        check_screenshot_path(args.screenshot)  # before any slow work (and before making folders)
        check_offscreen_support()  # before loading a big model: fail in one sentence, fast
        source = open_source(args.source, appearance=args.appearance)
        img, _ = render_view(source, opts)
        path = save_image(img, args.screenshot)
        print(f"wrote {path} ({img.shape[1]}x{img.shape[0]})")
        return 0
    from ..viewer.app import check_gui_support, run_app

    check_gui_support()
    return run_app(open_source(args.source, appearance=args.appearance), opts, gui_screenshot=args.gui_screenshot, quit_after=args.quit_after, play=args.play,
                   window_size=args.window)


def _run_avatar(avatar: Path, args: argparse.Namespace, opts) -> int:
    """SOURCE is an avatar directory: its Gaussians, drawn by our rasterizer (no Filament, so no Vulkan for screenshots)."""
    from ..viewer.gaussians import AvatarLight, check_avatar_options, open_avatar, render_avatar_view

    check_avatar_options(opts)
    if args.appearance is not None:
        raise BadInputError("--appearance gives a mesh its PBR maps; a Gaussian avatar's colours are its own")
    light = AvatarLight(args.env, args.env_rotation, args.env_intensity)
    if args.screenshot:
        from ..viewer.shot import check_screenshot_path, save_image

        check_screenshot_path(args.screenshot)
        img = render_avatar_view(open_avatar(avatar), opts, light=light)
        path = save_image(img, args.screenshot)
        print(f"wrote {path} ({img.shape[1]}x{img.shape[0]})")
        return 0
    from ..viewer.app import check_gui_support
    from ..viewer.avatar_app import run_avatar_app

    check_gui_support()
    return run_avatar_app(open_avatar(avatar), opts, gui_screenshot=args.gui_screenshot, quit_after=args.quit_after, play=args.play,
                          window_size=args.window, light=light)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help="drive, play and relight a head or tracked sequence (Open3D GUI or --screenshot)",
                       description="Open3D viewer. SOURCE is a head model (builtin, ict, ict=PATH, flame=PATH), a tracking output directory "
                       "or an avatar directory ('avatar3d avatar train': its Gaussians, drawn by our rasterizer).")
    p.add_argument("source", nargs="?", default="builtin", metavar="SOURCE",
                   help="head model, tracked sequence directory or avatar directory (default: builtin)")
    g = p.add_argument_group("headless")
    g.add_argument("--screenshot", metavar="PNG", help="render without a window to this file and exit")
    g.add_argument("--size", type=_size, default=(512, 512), metavar="WxH", help="screenshot size for head models (sequences use the crop size)")
    g.add_argument("--beside", action="store_true", help="sequences: put the source frame left of the render")
    g.add_argument("--overlay", type=float, default=0.0, metavar="OPACITY", help="sequences: draw the render over the source frame (0..1, e.g. 0.6)")
    g.add_argument("--yaw", type=float, default=0.0, metavar="DEG",
                   help="circle the camera about the head by DEG degrees (+: to its right, showing a face's left cheek); "
                   "screenshots, and where the avatar window starts")
    d = p.add_argument_group("drive")
    d.add_argument("--set", action="append", metavar="NAME=VALUE", help="set a slider, e.g. jawOpen=0.8, jaw_pitch=10 (degrees), shape0=1.5; repeatable")
    d.add_argument("--params", metavar="FILE", help="parameter file: JSON {slider: value} or .npz with shape/expression/pose/transl")
    d.add_argument("--frame", type=int, help="tracked sequences: frame index to show (default 0)")
    d.add_argument("--play", action="store_true", help="GUI, tracked sequences: start playing at the video's frame rate")
    li = p.add_argument_group("relight")
    li.add_argument("--light-azimuth", type=float, default=30.0, help="directional light azimuth in degrees (0 = from the front, + = from the head's left/viewer's right)")
    li.add_argument("--light-elevation", type=float, default=25.0, help="directional light elevation in degrees")
    li.add_argument("--light-intensity", type=float, default=1.0, help="directional light intensity (1 = default, 0 = off)")
    li.add_argument("--light-color", type=_color, default=(1.0, 0.97, 0.92), metavar="R,G,B", help="directional light colour, 0..1 each")
    li.add_argument("--env", default=None, metavar="NAME",
                    help="environment light: studio (the default for meshes), sunset, overcast, or 'capture' (the capture's light "
                    "estimated by 'avatar3d appearance'); a relightable avatar (default: its own capture light) also takes a "
                    ".hdr/.exr file")
    li.add_argument("--env-rotation", type=float, default=0.0,
                    help="environment rotation about the vertical axis, degrees (+: a light in front moves to the head's left)")
    li.add_argument("--env-intensity", type=float, default=1.0, help="environment light intensity (1 = default, 0 = off)")
    li.add_argument("--show-env", action="store_true", help="show the environment as the background")
    di = p.add_argument_group("display")
    di.add_argument("--display", choices=("shaded", "albedo", "roughness", "specular", "normals"), default="shaded",  # viewer.scene.DISPLAY_MODES
                    help="shading mode; roughness/specular show the material maps' values (pixel = value x 255), normals the "
                    "world-space normals (with the normal map's detail when there are PBR maps)")
    di.add_argument("--appearance", metavar="DIR", default=None,
                    help="PBR maps written by 'avatar3d appearance' (default: SOURCE/appearance for a tracking directory)")
    di.add_argument("--wireframe", action="store_true", help="draw mesh edges")
    di.add_argument("--landmarks", action="store_true", help="draw the 478 face-mesh landmarks")
    di.add_argument("--window", type=_size, default=(1280, 820), metavar="WxH",  # viewer.app.DEFAULT_WINDOW (not imported at start-up)
                    help="GUI window size (default 1280x820; smaller windows redraw faster on software-rendered displays)")
    gu = p.add_argument_group("GUI testing")
    gu.add_argument("--gui-screenshot", metavar="PNG", help="GUI: save a screenshot of the 3D view after the first frames")
    gu.add_argument("--quit-after", type=int, metavar="N", help="GUI: close the window after N frames")
    p.set_defaults(func=run)
