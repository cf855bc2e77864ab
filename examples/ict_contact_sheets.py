"""Render ICT-FaceKit contact sheets (identities, expressions, views) into assets/readme/ict_*.png.

Usage: python examples/ict_contact_sheets.py [PATH_TO_FaceXModel_or_archive] [--out DIR]
Uses the Open3D ray caster from ``avatar3d.models.embedding`` (CPU, no window needed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avatar3d.models.embedding import frame_view, render_view
from avatar3d.models.ict import load_ict, read_ict_data, region_colors, render_face_mask
from avatar3d.paths import ASSETS
from avatar3d.render.preview import contact_sheet


def tile(model, data, shape=None, expr=None, yaw=0.0, size=220, eye_pose=None) -> np.ndarray:
    """Render one (size, size, 3) uint8 tile of the model with the given coefficients."""
    with torch.no_grad():
        out = model(shape=shape, expression=expr, eye_pose=eye_pose)
    v = out.vertices[0].double().numpy()
    fm = render_face_mask(data)
    view = frame_view(data.v_template[data.faces[fm]].reshape(-1, 3), yaw=yaw, size=size, fill=0.95)
    return render_view(v, data.faces, view, vertex_colors=region_colors(data), face_mask=fm)["image"]


def sheet(tiles: list[np.ndarray], cols: int) -> Image.Image:
    return Image.fromarray(contact_sheet(tiles, cols))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=None)
    ap.add_argument("--out", default=str(ASSETS / "readme"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = read_ict_data(a.path, landmarks=False)
    model = load_ict(a.path, landmarks=False)
    S = model.num_shape
    rng = np.random.default_rng(0)
    # identities: neutral, +-2 std of the first modes, random N(0,1) draws
    ids = [torch.zeros(1, S)]
    for k in range(3):
        for s in (2.0, -2.0):
            b = torch.zeros(1, S)
            b[0, k] = s
            ids.append(b)
    ids += [torch.as_tensor(rng.standard_normal((1, S)), dtype=torch.float32) for _ in range(3)]
    sheet([tile(model, data, shape=b, yaw=y) for b in ids[:5] for y in (0.0,)] + [tile(model, data, shape=b) for b in ids[5:]], 5).save(out / "ict_identities.png", optimize=True)
    exprs = [
        {},
        {"jawOpen": 1.0},
        {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0},
        {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0},
        {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "eyeWide_L": 0.8, "eyeWide_R": 0.8},
        {"mouthPucker": 1.0},
        {"jawOpen": 0.6, "mouthFunnel": 0.7},
        {"eyeBlink_L": 1.0, "mouthSmile_L": 0.8},
        {"cheekPuff_L": 1.0, "cheekPuff_R": 1.0},
        {"noseSneer_L": 1.0, "noseSneer_R": 1.0, "browDown_L": 1.0, "browDown_R": 1.0},
    ]
    sheet([tile(model, data, expr=model.expression_vector(e)) for e in exprs], 5).save(out / "ict_expressions.png", optimize=True)
    # views: front, 3/4, profile for neutral, jawOpen + random identity, smile; eyes posed on the last row
    b = ids[-1]
    rows = []
    for e in ({}, {"jawOpen": 1.0}, {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "eyeBlink_R": 1.0}):
        for y in (0.0, 35.0, 90.0):
            rows.append(tile(model, data, shape=b if e else None, expr=model.expression_vector(e), yaw=y))
    gaze = torch.tensor([[0.0, 0.35, 0.0, 0.0, 0.35, 0.0]])  # both eyes turned towards the subject's left
    rows += [tile(model, data, eye_pose=gaze), tile(model, data, eye_pose=-gaze), tile(model, data, yaw=-35.0, expr=model.expression_vector({"jawOpen": 1.0}))]
    sheet(rows, 3).save(out / "ict_views.png", optimize=True)
    for n in ("ict_identities.png", "ict_expressions.png", "ict_views.png"):
        print(out / n, (out / n).stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
