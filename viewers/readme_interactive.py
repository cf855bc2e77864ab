#!/usr/bin/env python
"""Writes ``assets/readme/viewer_interactive.png``: the built-in head (jawOpen 0.6) under three
lightings, as the viewer draws it at full quality (after a slider rests), with Filament's
interactive frames, and with the software frames it shows while a slider moves.

    .venv/bin/python viewers/readme_interactive.py [--out PATH] [--size 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "assets" / "readme" / "viewer_interactive.png"))
    ap.add_argument("--size", type=int, default=300)
    args = ap.parse_args()
    import torch
    from PIL import Image

    from avatar3d.models import load_head_model
    from avatar3d.render.preview import contact_sheet
    from avatar3d.viewer.headless import HeadlessRenderer
    from avatar3d.viewer.mesh import HeadMesh
    from avatar3d.viewer.params import HeadParams, apply_settings
    from avatar3d.viewer.scene import Lighting

    torch.set_num_threads(1)
    model = load_head_model("builtin")
    r = HeadlessRenderer(HeadMesh(model), args.size, args.size, fast=True)
    p = apply_settings(model, HeadParams.neutral(model), {"jawOpen": 0.6})
    lights = [("studio", Lighting()), ("sunset, sun from the left", Lighting(environment="sunset", azimuth=-60)),
              ("overcast, no sun", Lighting(intensity=0.0, environment="overcast"))]
    rows: dict[str, list] = {"full quality (slider at rest)": [], "Filament interactive": [], "software (while a slider moves)": []}
    for _, L in lights:
        rows["full quality (slider at rest)"].append(r.render(p, L))
        r.head.set_interactive(True)
        rows["Filament interactive"].append(r.render())
        r.head.set_interactive(False)
        rows["software (while a slider moves)"].append(r.head.software_frame(args.size, args.size).copy())
    images = [im for row in rows.values() for im in row]
    labels = [f"{name}: {light}" for name in rows for light, _ in lights]
    sheet = contact_sheet(images, cols=len(lights), labels=labels, background=30)
    Image.fromarray(sheet).save(args.out)
    r.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
