"""Export a head (and optionally a tracked performance) to GLB for Blender, Unity, Unreal or three.js.

    python examples/export_glb.py                         # built-in head -> head.glb
    python examples/export_glb.py --source ict            # ICT-FaceKit (after 'avatar3d models install ict')
    python examples/export_glb.py --source out/track_d0   # tracked video: identity baked in + animation
    python examples/export_glb.py --demo-clip             # built-in head with a synthetic 3 s talking clip

The same as ``avatar3d export SOURCE --format glb --out PATH`` but from Python, showing the
library call and how to read the result back with trimesh.
"""

from __future__ import annotations

import argparse

import numpy as np

from avatar3d.export import export_files


def synthetic_clip(model, seconds: float = 3.0, fps: float = 30.0):
    """A TrackedSequence with a mouth opening and closing, a blink and a slow head turn (for trying engines)."""
    from avatar3d.data.sequence import TrackedSequence

    n = int(seconds * fps)
    t = np.arange(n) / fps
    expr = np.zeros((n, model.num_expression), np.float32)
    for name, curve in (("jawOpen", 0.5 - 0.5 * np.cos(2 * np.pi * 1.5 * t)),
                        ("eyeBlinkLeft", np.exp(-((t - 1.5) / 0.08) ** 2)), ("eyeBlinkRight", np.exp(-((t - 1.5) / 0.08) ** 2))):
        if name in model.expression_names:
            expr[:, model.expression_names.index(name)] = curve
    pose = np.zeros((n, model.num_joints, 3), np.float32)
    pose[:, 0, 1] = 0.35 * np.sin(2 * np.pi * t / seconds)  # root: turn left and right (radians about +Y)
    return TrackedSequence(model=model.name, model_version=model.version, fps=fps, shape=np.zeros(model.num_shape, np.float32),
                           expression=expr, pose=pose, transl=np.zeros((n, 3), np.float32), K=np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
                           world_to_cam=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), width=512, height=512,
                           joint_names=list(model.joint_names), expression_names=list(model.expression_names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="builtin", help="head model spec or tracking output directory")
    ap.add_argument("--out", default="head.glb")
    ap.add_argument("--demo-clip", action="store_true", help="attach a synthetic 3 s clip to a head model")
    args = ap.parse_args()

    source, model = args.source, None
    if args.demo_clip:
        from avatar3d.models import load_head_model

        model = load_head_model(args.source)
        source = synthetic_clip(model)
    files, stats = export_files(source, "glb", args.out, model=model)
    print(f"wrote {files[0]} ({files[0].stat().st_size / 1e6:.2f} MB): {stats.vertices} vertices, "
          f"{stats.morph_targets} morph targets, {stats.joints} joints, {stats.frames} animation frames")
    for note in stats.notes:
        print("note:", note)

    import trimesh  # read it back as any tool would

    mesh = trimesh.load(str(files[0]), force="mesh")
    print(f"trimesh reads {len(mesh.vertices)} vertices; bounds (metres, +Y up): {np.round(mesh.bounds, 3).tolist()}")


if __name__ == "__main__":
    main()
