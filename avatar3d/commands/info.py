"""``avatar3d info``: versions, rasterizer backends and head models, with why anything is missing."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from typing import Callable


def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
        return str(getattr(m, "__version__", "installed"))
    except Exception as e:  # report, never crash: info is what people run when things are broken
        return f"missing ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"


def _status_rows(module: str, func: str) -> list[tuple[str, bool, str]]:
    try:
        fn: Callable = getattr(importlib.import_module(module), func)
        res = fn()
        prefix = func.split("_")[0]  # "mesh" / "gaussian"
        if isinstance(res, dict):  # {backend: "ok (...)" | "unavailable: why"}
            return [(f"{prefix}-{k}", str(v).startswith("ok"), str(v)) for k, v in res.items()]
        return [(str(r[0]), bool(r[1]), str(r[2])) for r in res]
    except Exception as e:
        return [(f"{module}.{func}", False, f"{type(e).__name__}: {e}")]


def collect() -> dict:
    import torch

    from .. import __version__
    from ..models import model_status

    versions = {"avatar3d": __version__, "python": platform.python_version()}
    for m in ("torch", "numpy", "scipy", "cv2", "av", "mediapipe", "open3d", "trimesh", "pygltflib"):
        versions[m] = _version(m)
    versions["cuda"] = f"available ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "not available"
    backends = _status_rows("avatar3d.render.backends", "mesh_backend_status") + _status_rows("avatar3d.render.gaussians", "gaussian_backend_status")
    return {"versions": versions, "rasterizer_backends": backends, "head_models": model_status()}


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("avatar3d", info["versions"]["avatar3d"])
    print("\nversions")
    for k, v in info["versions"].items():
        print(f"  {k:<10} {v}")
    for title, rows in (("rasterizer backends", info["rasterizer_backends"]), ("head models", info["head_models"])):
        print(f"\n{title}")
        for name, ok, detail in rows:
            print(f"  {'[x]' if ok else '[ ]'} {name:<18} {detail}")
    sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="versions, available rasterizer backends and head models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
