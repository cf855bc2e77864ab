"""Viewer interactivity: slider-to-frame latency on the CPU (Open3D Filament on Mesa llvmpipe).

One "slider step" = write a slider value, pose the model (``HeadModel.forward``), update the head
geometry in the scene, render a frame and read it back. Measured for the built-in head and ICT
(when ``../shared/data`` has it), with and without MSAA (``--fast`` in the headless renderer), and
compared with a named reference measured in the same run: **rebuild**, the naive path that builds a
new legacy ``TriangleMesh`` (Open3D normals) and a new material (texture re-upload) every step.

Targets (README): < 50 ms for the built-in head and < 150 ms for ICT on a 2-core CPU.

    .venv/bin/python benchmarks/bench_viewer.py [--size 512] [--steps 15] [--models builtin,ict]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET_MS = {"builtin": 50.0, "ict": 150.0}


def _model(name: str):
    from avatar3d.models import load_head_model
    from avatar3d.paths import shared_data_dir

    if name == "ict":
        d = shared_data_dir()
        arc = d / "ict-facekit-light.tar.xz" if d else None
        if arc is None or not arc.is_file():
            return None
        return load_head_model(f"ict={arc}")
    return load_head_model(name)


def _slider(model):
    """The slider a user drags most: jawOpen (or the first expression)."""
    from avatar3d.viewer.params import slider_specs

    specs = [s for s in slider_specs(model) if s.kind == "expression"]
    return next((s for s in specs if s.name.lower().startswith("jawopen")), specs[0])


def bench_model(name: str, size: int, steps: int, fast: bool) -> dict | None:
    import open3d as o3d

    from avatar3d.viewer.headless import HeadlessRenderer
    from avatar3d.viewer.mesh import HeadMesh
    from avatar3d.viewer.params import HeadParams, set_value
    from avatar3d.viewer.scene import Lighting

    model = _model(name)
    if model is None:
        print(f"{name}: skipped (model data not found)")
        return None
    mesh = HeadMesh(model)
    r = HeadlessRenderer(mesh, size, size, fast=fast)
    p = HeadParams.neutral(model)
    r.render(p, Lighting())
    spec = _slider(model)
    t_pose, t_update, t_render, t_total, t_cpu = [], [], [], [], []
    values = np.linspace(0, 1, steps)
    for k in range(steps + 2):  # two warm-up steps
        c0 = time.process_time()  # CPU time of all threads (llvmpipe's included)
        t0 = time.perf_counter()
        set_value(spec, p, float(values[k % steps]))
        verts, lmk, _ = mesh.pose(p)
        t1 = time.perf_counter()
        r.head.set_vertices(verts, lmk)
        t2 = time.perf_counter()
        r.renderer.render_to_image()
        t3 = time.perf_counter()
        if k >= 2:
            t_pose.append(t1 - t0)
            t_update.append(t2 - t1)
            t_render.append(t3 - t2)
            t_total.append(t3 - t0)
            t_cpu.append(time.process_time() - c0)
    # Reference: rebuild everything per step (legacy mesh + Open3D normals + fresh material).
    R = o3d.visualization.rendering
    t_ref = []
    faces = mesh.render_faces.astype(np.int32)
    for k in range(max(steps // 2, 3) + 1):
        set_value(spec, p, float(values[k % steps]))
        verts, _, _ = mesh.pose(p)
        t0 = time.perf_counter()
        lm = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(verts[mesh.render_to_model].astype(np.float64)),
                                       o3d.utility.Vector3iVector(faces))
        lm.compute_vertex_normals()
        if mesh.render_uvs is not None:
            lm.triangle_uvs = o3d.utility.Vector2dVector(mesh.render_uvs[mesh.render_faces.reshape(-1)].astype(np.float64))
        mat = R.MaterialRecord()
        mat.shader = "defaultLit"
        if mesh.albedo is not None:
            mat.albedo_img = o3d.geometry.Image(mesh.albedo.copy())
        r.renderer.scene.remove_geometry("head")
        r.renderer.scene.add_geometry("head", lm, mat)
        if k:
            t_ref.append(time.perf_counter() - t0)  # the update part only: rendering is the same
        r.renderer.render_to_image()
    r.close()
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    return dict(model=name, vertices=model.num_vertices, fast=fast, pose=ms(t_pose), update=ms(t_update), render=ms(t_render),
                total=ms(t_total), p90=1000 * float(np.percentile(t_total, 90)), cpu=ms(t_cpu), ref=ms(t_ref))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="viewport size in pixels (square)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--models", default="builtin,ict")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as the viewer does: posing is a few small matmuls, threads only contend
    rows = []
    for name in args.models.split(","):
        for fast in (False, True):
            row = bench_model(name.strip(), args.size, args.steps, fast)
            if row:
                rows.append(row)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nslider-to-frame latency, {args.size}x{args.size} viewport, median of {args.steps} steps, torch threads={torch.get_num_threads()}, "
          f"cpus={os.cpu_count()}, load average={load:.1f} (wall times grow with the load; CPU ms does not)")
    print("| model | vertices | MSAA | pose ms | mesh update ms | render ms | total wall ms (p90) | total CPU ms | rebuild update ms (reference) "
          "| update speed-up | target ms | wall meets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = TARGET_MS.get(r["model"], float("nan"))
        print(f"| {r['model']} | {r['vertices']} | {'off' if r['fast'] else 'on'} | {r['pose']:.1f} | {r['update']:.1f} | {r['render']:.1f} | "
              f"{r['total']:.1f} ({r['p90']:.1f}) | {r['cpu']:.1f} | {r['ref']:.1f} | {r['ref'] / r['update']:.2f}x | {target:.0f} | "
              f"{'yes' if r['total'] < target else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
