"""Parametric head models behind one interface (:class:`HeadModel`).

``load_head_model(spec)`` is the single entry point used by the CLI and the library:

* ``"builtin"``: the head our own code generates (offline default, no third-party data);
* ``"ict"`` or ``"ict=PATH"``: ICT-FaceKit Light (a ``FaceXModel/`` folder, or the archive);
* ``"flame=PATH"``: FLAME 2020 (``generic_model.pkl``) or 2023 (``flame2023.pkl``), companion files
  (masks, landmark embeddings, texture space) picked up from the same folder.
"""

from __future__ import annotations

import importlib

from .base import REGION_NAMES, STANDARD_JOINTS, HeadModel, HeadModelData, HeadOutput

__all__ = ["HeadModel", "HeadModelData", "HeadOutput", "REGION_NAMES", "STANDARD_JOINTS", "load_head_model", "model_status", "MODEL_NAMES"]

MODEL_NAMES = ("builtin", "ict", "flame")


def _split(spec: str) -> tuple[str, str | None]:
    name, _, arg = str(spec).partition("=")
    name = name.strip().lower()
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown head model {spec!r}; expected one of: builtin, ict, ict=PATH, flame=PATH")
    return name, (arg.strip() or None)


def load_head_model(spec: str = "builtin", **kwargs) -> HeadModel:
    """Load a head model from a spec string (see module docstring). Extra kwargs go to the loader."""
    name, arg = _split(spec)
    if name == "builtin":
        from .builtin import load_builtin

        return load_builtin(**kwargs)
    if name == "ict":
        from .ict import load_ict

        return load_ict(arg, **kwargs)
    from .flame import load_flame

    # arg None: $AVATAR3D_FLAME, else a MissingFileError with the registration URL.
    return load_flame(arg, **kwargs)


def model_status() -> list[tuple[str, bool, str]]:
    """For ``avatar3d info``: (model, available, detail) for each model family, in MODEL_NAMES order."""
    out: list[tuple[str, bool, str]] = []
    for name in MODEL_NAMES:
        try:
            status = importlib.import_module(f"{__name__}.{name}").status
        except ImportError as e:
            out.append((name, False, f"import failed: {e}"))
            continue
        ok, detail = status()
        out.append((name, ok, detail))
    return out
