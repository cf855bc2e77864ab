"""GLB size and export time per head model: our sparse morph targets vs dense storage (the reference).

    python benchmarks/export_size.py [--frames 300] [--models builtin,ict]

Prints one row per model: exported vertices, morph targets, GLB size with sparse accessors, size of
the same file with every morph target stored densely (what a naive exporter writes), their ratio, and
the export time. ICT is taken from ../shared/data when present. The issue's target: a built-in-head
GLB with all blendshapes and a 300-frame clip under 20 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.data.sequence import TrackedSequence  # noqa: E402
from avatar3d.export import build_gltf, resolve_source  # noqa: E402
from avatar3d.models import load_head_model  # noqa: E402
from avatar3d.paths import shared_data_dir  # noqa: E402


def clip(model, n: int, fps: float = 30.0) -> TrackedSequence:
    """A smooth random performance of n frames (expression in [0, 1], small rotations)."""
    rng = np.random.default_rng(0)
    t = np.arange(n)[:, None] / fps
    E, J = model.num_expression, model.num_joints
    expr = 0.5 + 0.5 * np.sin(2 * t + rng.uniform(0, 6, E))
    pose = 0.2 * np.sin(t[..., None] + rng.uniform(0, 6, (J, 3)))
    return TrackedSequence(model=model.name, model_version=model.version, fps=fps, shape=np.zeros(model.num_shape, np.float32),
                           expression=expr.astype(np.float32), pose=pose.astype(np.float32), transl=np.zeros((n, 3), np.float32),
                           K=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)), world_to_cam=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                           width=512, height=512, joint_names=list(model.joint_names), expression_names=list(model.expression_names))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--models", default="builtin,ict")
    args = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    torch.set_num_threads(1)
    specs = []
    for name in args.models.split(","):
        if name == "ict":
            d = shared_data_dir()
            p = d / "ict-facekit-light.tar.xz" if d else None
            if p is None or not p.is_file():
                print("ict: skipped (../shared/data/ict-facekit-light.tar.xz not found)")
                continue
            specs.append(f"ict={p}")
        else:
            specs.append(name)
    print(f"{'model':8} {'verts':>6} {'targets':>7} {'frames':>6} {'sparse MB':>9} {'dense MB':>9} {'dense/sparse':>12} {'export s':>8}")
    for spec in specs:
        model = load_head_model(spec)
        src = resolve_source(clip(model, args.frames), model=model)
        t0 = time.perf_counter()
        gb, stats, _ = build_gltf(src)
        sparse = len(gb.to_glb())
        dt = time.perf_counter() - t0
        gb_dense, _, _ = build_gltf(src, morph_eps=-1.0, normal_eps=-1.0)  # eps < 0: every vertex "moves", so dense
        dense = len(gb_dense.to_glb())
        print(f"{spec.split('=')[0]:8} {stats.vertices:6d} {stats.morph_targets:7d} {stats.frames:6d} {sparse / 1e6:9.2f} {dense / 1e6:9.2f} "
              f"{dense / sparse:12.2f} {dt:8.2f}")


if __name__ == "__main__":
    main()
