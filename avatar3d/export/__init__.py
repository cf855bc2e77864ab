"""Export heads and tracked performances to game engines: GLB/glTF 2.0 (skinned, morph targets, animation) and OBJ.

>>> from avatar3d.export import export
>>> export("builtin", "glb", "head.glb")                 # neutral head, all blendshapes, skeleton
>>> export("out/track_d0", "glb", "performance.glb")     # subject identity baked in + animation clip
>>> export("out/track_d0", "obj", "frame10.obj", frame=10)

Everything is in metres, +Y up, face towards +Z (the glTF convention, which is also our models').
Files are written under temporary names and renamed at the end, so a failed export leaves nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import BadInputError
from ..paths import check_output_path
from .gltf import GltfStats, build_gltf, write_gltf
from .obj import write_obj
from .source import ExportSource, resolve_source

__all__ = ["export", "export_files", "FORMATS", "resolve_source", "ExportSource", "build_gltf", "write_gltf", "write_obj", "GltfStats"]

FORMATS = ("glb", "gltf", "obj")


def _check_format(format: str) -> str:
    f = str(format).lower().lstrip(".")
    if f not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of: {', '.join(FORMATS)}")
    return f


def _check_out(out: Path, fmt: str) -> Path:
    """The output file for ``fmt``: its suffix names a format we write (that format), and it can be written."""
    suffix = out.suffix.lower().lstrip(".")
    if suffix and suffix not in FORMATS:
        raise BadInputError(f"{out}: {suffix.upper()} is not a format avatar3d writes; it writes "
                            f"{', '.join('.' + f for f in FORMATS)} (glTF imports into Blender, Unity and Unreal)")
    if out.suffix.lower() != f".{fmt}":
        raise ValueError(f"output {out} should end in .{fmt} for format {fmt}")
    if out.is_dir():
        raise ValueError(f"output {out} is a directory; give a file name ending in .{fmt}")
    return check_output_path(out, "the export")


def export_files(
    source,
    format: str = "glb",
    out: Optional[str | Path] = None,
    *,
    shape=None,
    model=None,
    texture: Optional[str | Path] = None,
    appearance: Optional[str | Path] = None,
    frame: Optional[int] = None,
    all_frames: bool = False,
    animation: bool = True,
    normal_deltas: bool = True,
    morph_eps: float = 1e-6,
) -> tuple[list[Path], Optional[GltfStats]]:
    """Like :func:`export` but returns every written file (main file first) and, for glTF, its statistics."""
    fmt = _check_format(format)
    if fmt != "obj" and (frame is not None or all_frames):
        raise ValueError("frame/all_frames apply to OBJ export; glTF gets the whole performance as an animation")
    if out is not None:
        _check_out(Path(out), fmt)  # before loading anything: a bad path fails fast
    src = resolve_source(source, shape=shape, model=model, texture=texture, appearance=appearance)
    out = _check_out(Path(out) if out is not None else Path(f"{src.name}.{fmt}"), fmt)
    if fmt == "obj":
        return write_obj(src, out, frame=frame, all_frames=all_frames), None
    return write_gltf(src, out, binary=fmt == "glb", animation=animation, normal_deltas=normal_deltas, morph_eps=morph_eps)


def export(source, format: str = "glb", out: Optional[str | Path] = None, **kw) -> Path:
    """Export SOURCE (head model spec, ``HeadModel``, tracking output dir or ``TrackedSequence``) to ``out``.

    Args:
        format: "glb", "gltf" or "obj". out: output file (default ``<source name>.<format>``).
        shape: identity coefficients (S,) to bake in (array, .npy path or "a,b,c"); for a sequence,
            overrides the tracked identity. model: head model for a sequence (overrides its stored spec).
        texture: albedo image path overriding the model's texture. appearance: a folder written by
            ``avatar3d appearance`` whose PBR maps go into the material (default: a tracking directory's
            ``appearance/`` when present). frame / all_frames: OBJ of one
            tracked frame / of every frame. animation, normal_deltas, morph_eps: glTF options.
    Returns:
        the main written file.
    """
    return export_files(source, format, out, **kw)[0][0]
