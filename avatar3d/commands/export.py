"""``avatar3d export SOURCE --format glb|gltf|obj [--out PATH]``: heads and performances for game engines."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a head model or tracked performance to GLB/glTF/OBJ",
        description="Export SOURCE (a head model: builtin, ict, ict=PATH, flame=PATH; or a directory written by "
        "'avatar3d track') to glTF 2.0 binary (.glb), glTF with external files (.gltf) or Wavefront OBJ. glTF files hold "
        "the identity-applied mesh, one morph target per expression blendshape, the skeleton with skin weights and, "
        "for a tracked sequence, the performance as an animation clip. Units: metres, +Y up, face towards +Z.",
    )
    p.add_argument("source", help="head model spec or tracking output directory")
    p.add_argument("--format", "-f", default=None, help="glb (default), gltf or obj; inferred from --out when omitted")
    p.add_argument("--out", "-o", default=None, help="output file (default: <source name>.<format> in the current directory)")
    p.add_argument("--shape", default=None, help="identity coefficients: a .npy file or comma-separated numbers (overrides a tracked identity)")
    p.add_argument("--model", default=None, help="head model for a tracked sequence, overriding the one it was tracked with")
    p.add_argument("--texture", default=None, help="albedo image (PNG/JPEG) to use instead of the model's texture")
    p.add_argument("--appearance", default=None, metavar="DIR",
                   help="PBR maps written by 'avatar3d appearance' (default: SOURCE/appearance when it exists): albedo, roughness, "
                   "normal and specular go into the glTF material (KHR_materials_specular/ior) or beside the OBJ")
    p.add_argument("--frame", type=int, default=None, help="OBJ: export this tracked frame instead of the neutral mesh")
    p.add_argument("--all-frames", action="store_true", help="OBJ: one file per tracked frame (<stem>_000000.obj ...)")
    p.add_argument("--no-animation", action="store_true", help="glTF: leave out the performance clip")
    p.add_argument("--no-normal-deltas", action="store_true", help="glTF: morph targets without normal deltas (smaller files)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import FORMATS, export_files

    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        fmt = suffix if suffix in FORMATS else "glb"
    files, stats = export_files(
        args.source, fmt, args.out, shape=args.shape, model=args.model, texture=args.texture, appearance=args.appearance, frame=args.frame,
        all_frames=args.all_frames, animation=not args.no_animation, normal_deltas=not args.no_normal_deltas,
    )
    total = sum(f.stat().st_size for f in files)
    shown = files if len(files) <= 4 else files[:2] + [Path(f"... ({len(files) - 3} more)")] + files[-1:]
    for f in shown:
        print(f"wrote {f}" + (f" ({f.stat().st_size / 1e6:.2f} MB)" if f.exists() else ""))
    if stats is not None:
        print(f"{stats.vertices} vertices, {stats.triangles} triangles, {stats.morph_targets} morph targets "
              f"({stats.sparse_targets} sparse), {stats.joints} joints, "
              f"{'appearance PBR maps' if stats.pbr_maps else 'albedo texture' if stats.textured else 'neutral skin material'}"
              + (f", animation {stats.frames} frames / {stats.duration_s:.2f} s" if stats.frames else ""))
        for n in stats.notes:
            print(f"note: {n}")
    print(f"total {total / 1e6:.2f} MB")
    return 0
