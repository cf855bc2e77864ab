"""``avatar3d avatar eval AVATAR_DIR [--track TRACK_DIR] [--images]``: the avatar's held-out scores against the
textured-mesh baseline (:func:`avatar3d.avatar.evaluate.evaluate_run`), printed as a table and written to
``AVATAR_DIR/metrics.json``."""

from __future__ import annotations

import argparse
from typing import Optional

#: table columns: (metrics.json key, header, format)
COLUMNS = (("psnr", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.4f}"), ("face_psnr", "face PSNR", "{:.2f}"),
           ("face_ssim", "face SSIM", "{:.4f}"), ("lpips", "LPIPS", "{:.4f}"))


def _cell(v: Optional[float], fmt: str, signed: bool) -> str:
    if v is None:
        return "-"
    return (fmt.replace("{:", "{:+") if signed else fmt).format(v)


def table(rows: dict, frames: int) -> str:
    """The avatar / baseline / difference rows (``EvalResult.rows()``) as aligned text."""
    header = ["", *(h for _, h, _ in COLUMNS), "frames"]
    lines = [header]
    for name in ("avatar", "baseline", "difference"):
        r = rows.get(name)
        cells = [_cell(r.get(k) if r else None, f, name == "difference") for k, _, f in COLUMNS]
        lines.append([name, *cells, str(frames) if r else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in lines)


def run(args: argparse.Namespace) -> int:
    from ..avatar.evaluate import evaluate_run

    r = evaluate_run(args.avatar_dir, args.track, save_images=args.images)
    print(f"held-out frames {r.names[0]}..{r.names[-1]} of {r.track_dir} at {r.resolution} px ({r.seconds:.1f} s)")
    print(table(r.rows(), len(r.frames)))
    print(f"baseline: {r.baseline_source}" if r.baseline is not None else f"no baseline: {r.baseline_source}")
    print(f"LPIPS: {r.lpips_note}")
    if r.images:
        print(f"wrote {len(r.images)} comparison images (video | avatar | baseline | error) to {r.images[0].parent}")
    print(f"wrote {r.path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="score an avatar on the held-out frames of its video, against the textured tracked mesh")
    p.add_argument("avatar_dir", metavar="AVATAR_DIR", help="a folder written by 'avatar3d avatar train --out'")
    p.add_argument("--track", default=None, metavar="TRACK_DIR",
                   help="the tracking directory it was trained on, when it has moved (default: the one avatar.pt records)")
    p.add_argument("--images", action="store_true", help="also write AVATAR_DIR/heldout/<frame>.png: video | avatar | baseline | error")
    p.set_defaults(func=run)
