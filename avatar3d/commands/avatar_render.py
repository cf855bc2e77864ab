"""``avatar3d avatar render AVATAR_DIR --out DIR``: images or an mp4 of a Gaussian head avatar, driven by its own
tracking, another person's (cross-reenactment), hand-set expressions or a head-yaw sweep (:mod:`avatar3d.avatar.render`),
relit by an environment map or a light when the avatar is relightable (``--env``, ``--env-rotation``, ``--light``)."""

from __future__ import annotations

import argparse
import re

#: values that start with a minus but are not options: numbers, ranges and lists such as ``--yaw -45:45``, ``--frames -10:``,
#: ``--light -90,20,2``
_NEGATIVE_VALUE = re.compile(r"^-\d*\.?\d+([:,][-+]?\d*\.?\d*)*$")


def run(args: argparse.Namespace) -> int:
    from .._openmp import prefer_passive_wait

    prefer_passive_wait()  # before torch loads OpenMP: two threads pay off only when idle ones sleep
    from ..avatar.drive import DriveRequest, parse_frames, parse_yaw
    from ..avatar.render import Relight, parse_background, parse_rotation, render_avatar
    from ..viewer.params import parse_settings

    request = DriveRequest(drive=args.drive, frames=parse_frames(args.frames) if args.frames is not None else None,
                           neutral=args.neutral, settings=parse_settings(args.set or []),
                           yaw=parse_yaw(args.yaw) if args.yaw is not None else None, resolution=args.resolution)
    background = parse_background(args.background)
    rotation = parse_rotation(args.env_rotation) if args.env_rotation is not None else (0.0, 0.0)
    relight = Relight(args.env, rotation, args.light)
    r = render_avatar(args.avatar_dir, args.out, request, video=args.video, background=background, progress=not args.quiet, relight=relight)
    what = str(r.files[0]) if args.video else f"{len(r.files)} PNGs to {r.out}"
    lit = f", lit by {_describe(relight)}" if relight.active else ""
    print(f"wrote {what}: {r.frames} frames at {r.width}x{r.height}{lit} in {r.seconds:.1f} s ({r.render_seconds:.1f} s rendering)")
    return 0


def _describe(relight) -> str:
    parts = [relight.env or "the capture's light"]
    a, b = relight.rotation
    if (a, b) != (0.0, 0.0):
        parts.append(f"turned {a:g} degrees" if a == b else f"turning from {a:g} to {b:g} degrees")
    if relight.light:
        parts.append(f"plus the light {relight.light}")
    return " ".join(parts)


def _resolution(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if not 8 <= v <= 8192:
        raise argparse.ArgumentTypeError(f"expected a width in pixels between 8 and 8192, got {s}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render an avatar: its tracked frames, another person's performance, set expressions or a yaw sweep",
                       description="Render a trained avatar over a plain background to DIR/<frame>.png (or DIR/render.mp4). By default "
                       "it replays the tracked video it was trained on; --drive makes another tracked sequence drive its expression, "
                       "jaw, eyes and head motion (cross-reenactment); --set and --yaw pose it by hand.")
    p.add_argument("avatar_dir", metavar="AVATAR_DIR", help="a folder written by 'avatar3d avatar train --out'")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: <frame name>.png per frame, or render.mp4 with --video")
    p.add_argument("--drive", default=None, metavar="TRACK_DIR|params.npz",
                   help="drive the avatar with this tracked sequence (tracked with the same head model) instead of its own")
    p.add_argument("--frames", default=None, metavar="A:B", help="only frames A..B-1 of the driving sequence (e.g. 0:30; 12 for one frame)")
    p.add_argument("--neutral", action="store_true", help="start from zero expression and pose at the avatar's mean head position")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="set an expression (e.g. jawOpen=0.7) or a joint angle in degrees (head_yaw=20, jaw_pitch=10) on every frame; repeatable")
    p.add_argument("--yaw", default=None, metavar="FROM:TO[:STEPS]",
                   help="sweep the head's yaw in degrees around the first frame (e.g. -45:45, every 5 degrees unless STEPS is given)")
    p.add_argument("--video", action="store_true", help="write one mp4 (H.264) instead of PNGs")
    p.add_argument("--resolution", type=_resolution, default=None, metavar="N", help="image width in pixels (default: the avatar's training resolution)")
    p.add_argument("--background", default="1,1,1", metavar="R,G,B", help="background colour (default 1,1,1: white; 0..1 or 0..255)")
    li = p.add_argument_group("relight (avatars trained with --relightable)")
    li.add_argument("--env", default=None, metavar="NAME|FILE.hdr",
                    help="light the avatar with an environment: studio, sunset, overcast, capture (its own capture light) or an "
                    "equirectangular .hdr/.exr file (twice as wide as tall, linear)")
    li.add_argument("--env-rotation", default=None, metavar="DEG|FROM:TO",
                    help="turn the environment about the vertical by DEG degrees (+: a light in front moves to the head's left, "
                    "the picture's right), or from FROM to TO over the frames (e.g. 0:360: a rotating light)")
    li.add_argument("--light", default=None, metavar="AZ,EL,INTENSITY[,R,G,B]",
                    help="add a small directional light (alone without --env): azimuth in degrees (0 from the camera, 90 from the "
                    "head's left, the picture's right), elevation in degrees (90 from above), intensity (1: about the generated "
                    "maps' level), linear colour")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # argparse takes "-45:45" for an unknown option (only plain negative numbers pass as values): let ranges pass too
    p._negative_number_matcher = _NEGATIVE_VALUE
    p.set_defaults(func=run)
