"""``avatar3d track INPUT --out DIR``: monocular head tracking (see :mod:`avatar3d.tracking.pipeline`)."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ..tracking.pipeline import TrackOptions, track

    opts = TrackOptions(model=args.model, fps=args.fps, max_frames=args.max_frames, resolution=args.resolution,
                        overlay=not args.no_overlay, photometric=args.photometric, resume=not args.restart, progress=not args.quiet,
                        sparse_expressions=args.sparse_expressions, focal_35mm=args.focal_35mm)
    s = track(args.input, args.out, opts)
    # e.g. a video cut off part-way, a face the model cannot describe: tracked, but the user should know
    for w in s.get("warnings", []):
        print(f"avatar3d track: warning: {w}", file=sys.stderr)
    print(f"tracked {s['frames']} frames ({s['failures']} without a face, interpolated) with {s['model']}: "
          f"landmark NME {s['nme_mean'] * 100:.2f}% of inter-ocular distance ({s['error_px_mean']:.2f} px), "
          f"jitter {s['jitter_fitted_px']:.2f} px/frame² (detections {s['jitter_detected_px']:.2f}); wrote {args.out}")
    return 0


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
    return v


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s}")
    return v


MAX_RESOLUTION = 4096  # crop side in pixels: larger crops exhaust memory (30000 px: 2.7 GB per frame) long before they help a fit


def _crop_size(s: str) -> int:
    v = _positive_int(s)
    if v > MAX_RESOLUTION:
        raise argparse.ArgumentTypeError(f"the crop size is at most {MAX_RESOLUTION} pixels, got {s}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="track a head in a video, image folder or image: crops, masks, landmarks, fitted model parameters")
    p.add_argument("input", help="video file (mp4/mov/webm), folder of images, or one image")
    p.add_argument("--out", required=True, help="output directory (images/, masks/, transforms.json, params.npz, overlay.mp4, metrics.json)")
    p.add_argument("--model", default="builtin", help="head model: builtin, ict[=PATH], flame=PATH (default: builtin)")
    p.add_argument("--fps", type=_positive_float, default=None, help="subsample the video to this frame rate")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="track at most this many frames")
    p.add_argument("--resolution", type=_crop_size, default=512, help=f"crop size in pixels (default 512, at most {MAX_RESOLUTION})")
    p.add_argument("--photometric", action="store_true", help="after landmark fitting, refine expression and pose per frame against the pixels "
                   "(albedo texture + SH lighting + silhouette, about 0.3-0.5 s/frame on CPU); writes albedo.png")
    p.add_argument("--sparse-expressions", action="store_true",
                   help="fewer, larger expression coefficients (ARKit-like curves to retarget to another rig) for a slightly higher "
                        "landmark error")
    p.add_argument("--focal-35mm", type=_positive_float, default=None, metavar="MM",
                   help="the camera's focal length as a 35 mm-equivalent (a phone's main camera: about 26 mm), when known; "
                        "default: estimated from the face's perspective")
    p.add_argument("--no-overlay", action="store_true", help="skip rendering overlay.mp4")
    p.add_argument("--restart", action="store_true", help="ignore checkpoints in --out and redo every stage")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
