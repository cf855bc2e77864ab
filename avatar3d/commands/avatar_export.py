"""``avatar3d avatar export AVATAR_DIR --format ply``: the avatar as a standard 3D Gaussian Splatting PLY
(:mod:`avatar3d.export.gaussian_ply`), posed at a tracked frame or neutral; a relightable avatar is baked under one light
(its capture's, or ``--env``)."""

from __future__ import annotations

import argparse

FORMATS = ("ply",)


def run(args: argparse.Namespace) -> int:
    from ..errors import BadInputError
    from ..export.gaussian_ply import export_avatar_ply

    if args.format.lower() not in FORMATS:
        raise BadInputError(f"avatar export writes {', '.join(FORMATS)} (3D Gaussian Splatting PLY) for now, not {args.format!r}")
    r = export_avatar_ply(args.avatar_dir, args.out, frame=args.frame, neutral=args.neutral, environment=args.env,
                          env_rotation=args.env_rotation)
    pose = f"at tracked frame {r.frame}" if r.frame is not None else "neutral (zero expression and pose, the head model's frame)"
    lit = f", its colours baked under {args.env}" if args.env else ""
    print(f"wrote {r.path} ({r.bytes / 1e6:.2f} MB): {r.gaussians} Gaussians, {pose}{lit}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an avatar as a 3D Gaussian Splatting PLY (for 3DGS viewers and gsplat)",
                       description="Write the avatar's Gaussians as a standard 3D Gaussian Splatting PLY (x y z, nx ny nz, f_dc, "
                       "f_rest, opacity, scale, rot: the layout INRIA's 3DGS writes), posed at a tracked frame or neutral.")
    p.add_argument("avatar_dir", metavar="AVATAR_DIR", help="a folder written by 'avatar3d avatar train --out'")
    p.add_argument("--format", default="ply", help="ply (the only format for now)")
    p.add_argument("--out", default=None, metavar="FILE.ply", help="output file (default AVATAR_DIR/avatar.ply)")
    pose = p.add_mutually_exclusive_group()
    pose.add_argument("--frame", type=int, default=None, metavar="N", help="pose it at frame N of its tracking (that tracking's world frame)")
    pose.add_argument("--neutral", action="store_true", help="zero expression and pose in the head model's frame (the default)")
    p.add_argument("--env", default=None, metavar="NAME|FILE.hdr",
                   help="relightable avatars: bake the colours under this light (studio, sunset, overcast, capture, a .hdr/.exr "
                   "file or AZ,EL,INTENSITY; default: the capture's own light) for 3DGS viewers, which cannot relight")
    p.add_argument("--env-rotation", type=float, default=0.0, metavar="DEG", help="turn --env about the vertical by DEG degrees")
    p.set_defaults(func=run)
