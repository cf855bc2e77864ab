"""Render the README gallery of the built-in head into assets/readme/ (and refresh its landmark asset).

    python examples/builtin_gallery.py [--out assets/readme] [--size 256] [--landmarks]

Contact sheets: neutral (front, 3/4, profile, back), identities at +-2 std, expressions, and the
478 MediaPipe landmarks of the embedding drawn on the neutral head. ``--landmarks`` also writes
``avatar3d/assets/builtin/landmarks.npz`` (geometry hash + embeddings) so loads need no MediaPipe run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from avatar3d.models.builtin import LANDMARKS_ASSET, geometry_hash, load_builtin
from avatar3d.models.builtin.anatomy import DEFAULT
from avatar3d.models.builtin.preview import project, render
from avatar3d.models.builtin.proportions import head_proportions
from avatar3d.render.preview import contact_sheet


def _save(img: np.ndarray, path: Path) -> None:
    """Palette PNG (256 colours): a third of the size of RGB and visually the same for renders."""
    from PIL import Image

    Image.fromarray(img).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="assets/readme")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--landmarks", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    m = load_builtin()
    F = m.faces.numpy()
    tex = m.extras["albedo"]
    kw = dict(uvs=m.uvs.numpy(), uv_faces=m.uv_faces.numpy(), texture=tex, size=args.size)

    def verts(shape=None, expr=None, pose=None):
        with torch.no_grad():
            return m(shape=shape, expression=expr, pose=pose).vertices[0].numpy()

    v0 = verts()
    p = head_proportions(v0, np.asarray(m.extras["part_ids"]), DEFAULT)
    print("proportions (metres; eye_height as a fraction of the height): " + ", ".join(f"{k} {v:.3f}" for k, v in p.items()))
    # The whole head and neck (crown 0.13 m .. neck cut -0.19 m) fits the 22 degree view at 0.9 m.
    neutral = [render(v0, F, yaw_deg=y, distance=0.9, target=(0.0, -0.03, 0.0), **kw) for y in (0, 35, 90, 160)]
    _save(contact_sheet(neutral, 4), out / "builtin_neutral.png")

    rng = np.random.default_rng(7)
    ids = []
    for i in range(4):
        b = torch.tensor(rng.normal(size=m.num_shape) * 1.5, dtype=torch.float32)[None]  # all modes at once: 1.5 std
        ids.append(render(verts(shape=b), F, yaw_deg=25, **kw))
    for name in ("head_width", "face_length", "nose_length", "jaw_width"):
        k = m.extras["shape_names"].index(name)
        for sgn in (-2.0, 2.0):
            b = torch.zeros(1, m.num_shape)
            b[0, k] = sgn
            ids.append(render(verts(shape=b), F, yaw_deg=25, **kw))
    _save(contact_sheet(ids, 6), out / "builtin_identities.png")

    ex = []
    for combo in ({"jawOpen": 1.0}, {"mouthSmileLeft": 1, "mouthSmileRight": 1, "cheekSquintLeft": 0.6, "cheekSquintRight": 0.6},
                  {"eyeBlinkLeft": 1, "eyeBlinkRight": 1}, {"mouthPucker": 1}, {"cheekPuff": 1}, {"browInnerUp": 1, "browOuterUpLeft": 1, "browOuterUpRight": 1, "eyeWideLeft": 1, "eyeWideRight": 1},
                  {"browDownLeft": 1, "browDownRight": 1, "mouthFrownLeft": 1, "mouthFrownRight": 1}, {"mouthFunnel": 1, "jawOpen": 0.3}):
        e = m.expression_vector(combo)
        ex.append(render(verts(expr=e), F, yaw_deg=20, **kw))
    pose = torch.zeros(1, 5, 3)
    pose[0, 2, 0] = 0.25  # jaw joint
    pose[0, 1, 1] = 0.3  # neck turn (to the subject's left)
    ex.append(render(verts(pose=pose), F, yaw_deg=0, **kw))
    pose = torch.zeros(1, 5, 3)
    pose[0, 3:, 1] = 0.35  # both eyes look to the subject's left
    ex.append(render(verts(pose=pose), F, yaw_deg=0, **kw))
    _save(contact_sheet(ex, 5), out / "builtin_expressions.png")

    if m.has_landmarks:
        cam = dict(size=384, distance=0.5, target=(0.0, -0.015, 0.04))
        img = render(v0, F, uvs=m.uvs.numpy(), uv_faces=m.uv_faces.numpy(), texture=tex, **cam).copy()
        with torch.no_grad():
            out_ = m()
        for pts, col in ((out_.landmarks[0].numpy(), (0, 200, 0)), (out_.landmarks68[0].numpy(), (230, 30, 30))):
            uv = project(pts, **cam)
            for x, y in np.round(uv[:, :2]).astype(int):
                if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
                    img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = col
        _save(img, out / "builtin_landmarks.png")
        if args.landmarks:
            LANDMARKS_ASSET.parent.mkdir(parents=True, exist_ok=True)
            np.savez(LANDMARKS_ASSET, geometry_hash=geometry_hash(m.v_template.numpy(), F), lmk_faces=m.lmk_faces.numpy(), lmk_bary=m.lmk_bary.numpy(),
                     lmk68_faces=m.lmk68_faces.numpy(), lmk68_bary=m.lmk68_bary.numpy())
    print("wrote", sorted(p.name for p in out.glob("builtin_*.png")))


if __name__ == "__main__":
    main()
