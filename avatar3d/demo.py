"""The main job on built-in defaults: build the built-in head, render it, write a short report.

``avatar3d demo --out DIR`` writes ``DIR/*.png`` (neutral from three angles, identities, expressions,
joint poses), ``DIR/contact_sheet.png`` and ``DIR/report.md`` / ``report.json`` (model statistics,
timings, rasterizer backend). Later stages of the product (tracking, avatars) extend this.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .models import HeadModel, load_head_model
from .render.preview import contact_sheet, orbit_camera, render_mesh, to_uint8

#: Expressions shown by the demo (skipped when a model lacks one).
DEMO_EXPRESSIONS = ("jawOpen", "mouthSmileLeft+mouthSmileRight", "eyeBlinkLeft+eyeBlinkRight", "mouthPucker", "browInnerUp", "cheekPuff", "browDownLeft+browDownRight", "mouthFunnel")


def _weights(model: HeadModel, spec: str) -> Optional[dict[str, float]]:
    names = spec.split("+")
    if not all(n in model.expression_names for n in names):
        return None
    return {n: 1.0 for n in names}


def _render(model: HeadModel, vertices: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor, size: int) -> np.ndarray:
    """(H, W, 3) uint8 shaded render; textured with the model's albedo when it has one."""
    albedo = model.extras.get("albedo")
    kw = {}
    if albedo is not None:
        kw = dict(uvs=model.uvs, uv_faces=model.uv_faces, texture_image=torch.as_tensor(np.asarray(albedo), dtype=torch.float32) / 255.0)
    return to_uint8(render_mesh(vertices, model.faces, K, w2c, size, size, background=0.93, **kw))


def run_demo(out_dir: str | Path, model_spec: str = "builtin", size: int = 384, identities: int = 4, seed: int = 0) -> dict:
    """Render a head model in a few poses/expressions/identities; return the report dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = load_head_model(model_spec)
    t_load = time.perf_counter() - t0
    with torch.no_grad():
        rest = model()
    verts = rest.vertices[0].numpy()
    lo, hi = verts.min(0), verts.max(0)
    target = (lo + hi) / 2
    dist = 1.3 * float((hi - lo)[1]) / (2 * math.tan(math.radians(10)))  # head + neck fill ~75% of the frame
    shots: list[tuple[str, np.ndarray]] = []
    t_render = 0.0

    def shot(label: str, yaw: float = 0.0, pitch: float = 0.0, **params) -> None:
        nonlocal t_render
        with torch.no_grad():
            o = model(**params)
        K, w2c = orbit_camera(yaw, pitch, dist, target, size)
        t = time.perf_counter()
        img = _render(model, o.vertices, K, w2c, size)
        t_render += time.perf_counter() - t
        Image.fromarray(img).save(out / f"{label}.png")
        shots.append((label, img))

    for label, yaw in (("neutral_front", 0.0), ("neutral_three_quarter", 35.0), ("neutral_profile", 90.0)):
        shot(label, yaw, 5.0)
    for spec in DEMO_EXPRESSIONS:
        w = _weights(model, spec)
        if w is not None:
            shot("expr_" + spec.split("+")[0].replace("Left", ""), 15.0, 5.0, expression=model.expression_vector(w))
    g = torch.Generator().manual_seed(seed)
    for i in range(identities):
        beta = torch.randn(1, model.num_shape, generator=g) * 1.5
        shot(f"identity_{i}", 20.0, 5.0, shape=beta)
    if "jaw" in model.joint_names:
        pose = torch.zeros(1, model.num_joints, 3)
        pose[0, model.joint_names.index("jaw"), 0] = 0.25
        if "neck" in model.joint_names:
            pose[0, model.joint_names.index("neck"), 1] = 0.35
        shot("pose_jaw_neck", 0.0, 5.0, pose=pose)
    sheet = contact_sheet([img for _, img in shots], cols=4, labels=[label for label, _ in shots])
    Image.fromarray(sheet).save(out / "contact_sheet.png")

    from .render import backends

    report = {
        "model": {"name": model.name, "version": model.version, "vertices": model.num_vertices, "faces": int(len(model.faces)),
                  "identity_modes": model.num_shape, "expressions": model.num_expression, "joints": model.joint_names,
                  "regions": model.region_names, "height_m": float((hi - lo)[1])},
        "timings_s": {"load_model": round(t_load, 3), "render_total": round(t_render, 3), "per_image": round(t_render / len(shots), 4)},
        "rasterizer_backend": backends.get_mesh_backend("auto", model.v_template)[0],
        "images": [f"{label}.png" for label, _ in shots] + ["contact_sheet.png"],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    md = [f"# avatar3d demo: {model.name} head ({model.version})", "",
          f"- {model.num_vertices} vertices, {len(model.faces)} triangles, {model.num_shape} identity modes, "
          f"{model.num_expression} expressions, joints: {', '.join(model.joint_names)}",
          f"- height {report['model']['height_m'] * 100:.1f} cm; loaded in {t_load:.2f} s; "
          f"{len(shots)} images rendered at {size}x{size} in {t_render:.2f} s ({report['rasterizer_backend']})", "",
          "![contact sheet](contact_sheet.png)", ""]
    md += [f"- `{label}.png`" for label, _ in shots]
    (out / "report.md").write_text("\n".join(md) + "\n")
    return report
