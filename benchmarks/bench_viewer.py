"""Viewer interactivity: slider-to-frame latency on the CPU (Open3D Filament on Mesa llvmpipe).

Three ways to draw a slider step, measured in the same run:

* **full** (the reference): every step at full quality (``defaultLit``, SSAO, post-processing;
  MSAA off), what the viewer first did;
* **filament**: Filament's interactive frames (per-vertex lighting drawn unlit, post-processing
  off, ``avatar3d/viewer/fastshade.py``), the previous default;
* **software** (the default now): the same picture drawn by our CPU rasterizer
  (``avatar3d/viewer/softview.py``) into an image widget that stands in for the 3D view while the
  slider moves.

1. ``offscreen``: one slider step = write a slider value, pose the model, then update the scene,
   render and read back (``OffscreenRenderer.render_to_image``), or for software draw the picture;
   at 256^2 and 512^2.
2. ``gui`` (needs Xvfb): ``avatar3d view`` in its default 1280x820 window (3D view 940x820; other
   sizes with ``--windows``) on a private X server; a synthetic mouse (XTest) presses on the jawOpen
   slider's track, alternately near its low and high end, and the X framebuffer is watched until
   the 3D view shows the new expression (``avatar3d/viewer/latency.py``): what a user sees, end to
   end. "slider callback ms" is our side of it (posing, and for software drawing the picture).

Targets (README): < 50 ms for the built-in head and < 150 ms for ICT on a 2-core CPU. Wall times
grow with the machine's load (other jobs share the cores), so CPU ms (all threads of the viewer
and, for the GUI, the X server) are printed as well, and the load average.

    .venv/bin/python benchmarks/bench_viewer.py [--steps 15] [--models builtin,ict] [--sizes 256,512] [--no-gui]
        [--no-offscreen] [--gui-steps 12] [--windows default,1000x640]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)
import numpy as np  # noqa: E402
import torch  # noqa: E402

TARGET_MS = {"builtin": 50.0, "ict": 150.0}
PATHS = ("full", "filament", "software")  # ways to draw a slider step, compared offscreen and in the window


def _model_spec(name: str) -> str | None:
    from avatar3d.paths import shared_data_dir

    if name == "ict":
        d = shared_data_dir()
        arc = d / "ict-facekit-light.tar.xz" if d else None
        return f"ict={arc}" if arc is not None and arc.is_file() else None
    return name


def _slider(model):
    """The slider a user drags most: jawOpen (or the first expression)."""
    from avatar3d.viewer.params import slider_specs

    specs = [s for s in slider_specs(model) if s.kind == "expression"]
    return next((s for s in specs if s.name.lower().startswith("jawopen")), specs[0])


def bench_offscreen(model, size: int, steps: int, path: str) -> dict:
    """One slider step offscreen: set a value, pose, then ``path``: "full"/"filament" update the
    Filament scene, render and read back; "software" draws the picture with our rasterizer
    (avatar3d/viewer/softview.py; what the window's slider callback does)."""
    from avatar3d.viewer.headless import HeadlessRenderer
    from avatar3d.viewer.mesh import HeadMesh
    from avatar3d.viewer.params import HeadParams, set_value
    from avatar3d.viewer.scene import Lighting

    mesh = HeadMesh(model)
    r = HeadlessRenderer(mesh, size, size, fast=True)  # MSAA off, as the GUI
    p = HeadParams.neutral(model)
    r.render(p, Lighting())
    r.head.set_interactive(path == "filament")
    spec = _slider(model)
    t_pose, t_update, t_render, t_total, t_cpu = [], [], [], [], []
    values = np.linspace(0, 1, steps)
    for k in range(steps + 2):  # two warm-up steps
        c0 = time.process_time()  # CPU time of all threads (llvmpipe's included)
        t0 = time.perf_counter()
        set_value(spec, p, float(values[k % steps]))
        verts, lmk, _ = mesh.pose(p)
        t1 = time.perf_counter()
        r.head.set_vertices(verts, lmk, update_scene=path != "software")
        t2 = time.perf_counter()
        if path == "software":
            r.head.software_frame(size, size)
        else:
            r.renderer.render_to_image()
        t3 = time.perf_counter()
        if k >= 2:
            t_pose.append(t1 - t0)
            t_update.append(t2 - t1)
            t_render.append(t3 - t2)
            t_total.append(t3 - t0)
            t_cpu.append(time.process_time() - c0)
    r.close()
    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    return dict(pose=ms(t_pose), update=ms(t_update), render=ms(t_render), total=ms(t_total), p90=1000 * float(np.percentile(t_total, 90)),
                cpu=ms(t_cpu))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,512", help="offscreen viewport sizes in pixels (square)")
    ap.add_argument("--steps", type=int, default=15, help="slider steps per measurement (offscreen)")
    ap.add_argument("--gui-steps", type=int, default=12, help="slider moves per GUI measurement")
    ap.add_argument("--models", default="builtin,ict")
    ap.add_argument("--no-gui", action="store_true", help="skip the windowed measurement (it needs Xvfb)")
    ap.add_argument("--windows", default="default", help="window sizes for the GUI probe: 'default' and/or WxH, comma-separated")
    ap.add_argument("--no-offscreen", action="store_true", help="skip the offscreen measurement")
    args = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    torch.set_num_threads(1)  # as the viewer does: posing is a few small matmuls, threads only contend
    from avatar3d.models import load_head_model

    models = {}
    for name in args.models.split(","):
        spec = _model_spec(name.strip())
        if spec is None:
            print(f"{name}: skipped (model data not found)")
            continue
        models[name.strip()] = (spec, load_head_model(spec))

    load0 = os.getloadavg()[0]
    off = []
    for name, (spec, model) in models.items():
        for size in ([] if args.no_offscreen else map(int, args.sizes.split(","))):
            row = {path: bench_offscreen(model, size, args.steps, path) for path in PATHS}
            off.append((name, model.num_vertices, size, row))
            print(f"offscreen {name} {size}: " + ", ".join(f"{k} {v['total']:.1f} ms" for k, v in row.items()), flush=True)

    gui, floors = [], []
    if not args.no_gui and shutil.which("Xvfb"):
        from avatar3d.errors import Avatar3DError
        from avatar3d.viewer.latency import measure_gui_latency, measure_window_floor

        sizes = [None if w == "default" else tuple(map(int, w.split("x"))) for w in args.windows.split(",")]
        for size in sizes:
            try:
                floors.append(measure_window_floor(size, changes=10))
                print(f"window floor {floors[-1]['size']}: {floors[-1]['median']:.1f} ms", flush=True)
            except Avatar3DError as e:
                print(f"window floor {size}: failed: {e}", flush=True)
        for name, (spec, model) in models.items():
            for size in sizes:
                res = {}
                for path in PATHS:
                    try:
                        res[path] = measure_gui_latency(spec, steps=args.gui_steps, path=path, size=size)
                        print(f"gui {name} {size or 'default'} {path}: {res[path]['median']:.1f} ms", flush=True)
                    except Avatar3DError as e:  # the probe failed (see latency.py); report the rest
                        print(f"gui {name} {size or 'default'} {path}: probe failed: {e}", flush=True)
                if res:
                    gui.append((name, model.num_vertices, size, res))
    elif not args.no_gui:
        print("gui: skipped (no Xvfb; Debian package xvfb)")

    load = (load0 + os.getloadavg()[0]) / 2
    print(f"\nslider-to-frame latency, torch threads={torch.get_num_threads()}, cpus={os.cpu_count()}, mean load average during the run "
          f"{load:.1f} (wall times grow with the load; CPU ms much less). Reference = full: the full-quality frame per step.")
    print("\nOffscreen (pose + scene update + render + read-back; software: pose + our rasterizer, no Filament), median of", args.steps, "steps:\n")
    print("| model | vertices | viewport | path | pose ms | update ms | render ms | total wall ms (p90) | total CPU ms | speed-up vs full (wall) "
          "| target ms | wall meets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, nv, size, row in off:
        target = TARGET_MS.get(name, float("nan"))
        for path in PATHS:
            r = row[path]
            print(f"| {name} | {nv} | {size}² | {path} | {r['pose']:.1f} | {r['update']:.1f} | {r['render']:.1f} | {r['total']:.1f} ({r['p90']:.1f}) "
                  f"| {r['cpu']:.1f} | {row['full']['total'] / r['total']:.2f}x | {target:.0f} | {'yes' if r['total'] < target else 'NO'} |")
    if gui:
        print(f"\nWindow (mouse press on the jawOpen slider -> new expression in the X framebuffer), median of {args.gui_steps} presses. "
              "Reference = full; filament = Filament's interactive frames (the previous default); software = our rasterizer "
              "in an image widget (the default now):\n")
        print("| model | window | 3D view | path | latency ms (p90) | CPU ms to the frame | slider callback ms | speed-up vs full | vs filament "
              "| target ms | meets |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, nv, size, res in gui:
            target = TARGET_MS.get(name, float("nan"))
            win = "default" if size is None else f"{size[0]}x{size[1]}"
            for path in PATHS:
                if path not in res:
                    continue
                r = res[path]
                to = f", {r['timeouts']} timed out" if r["timeouts"] else ""
                vs = lambda ref: f"{res[ref]['median'] / r['median']:.2f}x" if ref in res else "-"  # noqa: E731
                print(f"| {name} | {win} | {r['view'][0]}x{r['view'][1]} | {path} | {r['median']:.0f} ({r['p90']:.0f}{to}) | {r['cpu_to_frame']:.0f} | "
                      f"{r['callback_ms']:.1f} | {vs('full')} | {vs('filament')} | {target:.0f} | {'yes' if r['median'] < target else 'NO'} |")
    if floors:
        print("\nFloor: an Open3D window showing one label (no 3D view, no panel) changes the label's text; change -> new pixels "
              "(what any frame of the viewer window costs at least):\n")
        print("| window | latency ms (p90) | CPU ms per frame (window + X server) |")
        print("|---|---|---|")
        for f in floors:
            print(f"| {f['size'][0]}x{f['size'][1]} | {f['median']:.0f} ({f['p90']:.0f}) | {f['cpu']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
