"""``avatar3d appearance TRACK_DIR [--out DIR]``: PBR texture maps and the capture light of a tracked video
(see :mod:`avatar3d.appearance.pipeline`)."""

from __future__ import annotations

import argparse

#: map sizes offered: 1024 and 2048 for use, 256 and 512 for quick looks
RESOLUTIONS = (256, 512, 1024, 2048)


def run(args: argparse.Namespace) -> int:
    from ..appearance.estimate import AppearanceOptions
    from ..appearance.pipeline import run_appearance

    r = run_appearance(args.track_dir, args.out, AppearanceOptions(resolution=args.resolution), progress=not args.quiet,
                       resume=not args.restart)
    if r.up_to_date:
        print(f"{r.path} is up to date (same tracking input and settings: {r.resolution}x{r.resolution} maps of {r.frames} frames); "
              f"--restart recomputes")
        return 0
    maps = [f[:-4] for f in r.files if f.endswith(".png")]
    others = [f for f in r.files if not f.endswith(".png")]
    print(f"wrote {len(maps)} maps ({', '.join(maps)}) at {r.resolution}x{r.resolution} and {', '.join(others)} to {r.path}: "
          f"{r.frames} frames, {r.observed_fraction * 100:.1f}% of the UV layout observed, {r.seconds:.1f} s")
    return 0


def _resolution(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = None
    if v not in RESOLUTIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(map(str, RESOLUTIONS))} texels per side, got {s}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("appearance", help="PBR texture maps (albedo, specular, roughness, normal, displacement) and the capture light "
                                          "of a tracked video")
    p.add_argument("track_dir", metavar="TRACK_DIR", help="a folder written by 'avatar3d track --out'")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default TRACK_DIR/appearance): albedo/specular/roughness/normal/"
                                               "displacement/coverage PNGs, lighting.npz, environment.hdr, material.json")
    p.add_argument("--resolution", type=_resolution, default=1024, metavar="{1024,2048}",
                   help="texels per side of the maps (default 1024; 256 and 512 for quick runs)")
    p.add_argument("--restart", action="store_true", help="recompute even when the output is up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
