"""ICT-FaceKit load time: cached reload vs. parsing the OBJ files (target: cached reload < 1 s).

Usage: python benchmarks/bench_ict_load.py [FaceXModel folder or archive]   (default: the cache
install / $AVATAR3D_ICT, else ../shared/data/ict-facekit-light.tar.xz).
Reference measured in the same run: a full parse of the source without the cache.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from avatar3d.errors import MissingFileError
from avatar3d.models import ict
from avatar3d.paths import shared_data_dir


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    torch.set_num_threads(1)
    src = sys.argv[1] if len(sys.argv) > 1 else None
    if src is None:
        try:
            src = str(ict.find_ict(None))
        except MissingFileError:
            d = shared_data_dir()
            if d is None or not (d / "ict-facekit-light.tar.xz").is_file():
                sys.exit("no ICT-FaceKit source: pass a FaceXModel folder or archive")
            src = str(d / "ict-facekit-light.tar.xz")
    with tempfile.TemporaryDirectory() as td:
        # private cache: the first cached call builds it (parse + MediaPipe embedding, not timed)
        ict.cache_dir = lambda sub="": (Path(td) / sub).mkdir(parents=True, exist_ok=True) or Path(td) / sub
        import avatar3d.models.embedding as emb

        emb.cache_dir = ict.cache_dir
        t_parse = timed(lambda: ict.read_ict_data(src, landmarks=False, use_cache=False))
        ict.load_ict(src)  # warm the cache
        t_data = timed(lambda: ict.read_ict_data(src), repeat=3)
        t_model = timed(lambda: ict.load_ict(src), repeat=3)
        # a fresh interpreter (what a CLI call pays), imports of torch/numpy excluded
        code = (
            "import time,torch,avatar3d.models.ict as m;from pathlib import Path;"
            f"m.cache_dir=lambda sub='': Path({td!r})/sub;t=time.perf_counter();m.load_ict({src!r});print(time.perf_counter()-t)"
        )
        t_fresh = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])
    print(f"source: {src}")
    print(f"{'step':40s} {'seconds':>8s} {'vs parse':>9s}")
    print(f"{'parse OBJ files (reference, no cache)':40s} {t_parse:8.3f} {1.0:9.2f}")
    print(f"{'cached read_ict_data':40s} {t_data:8.3f} {t_data / t_parse:9.3f}")
    print(f"{'cached load_ict (HeadModel)':40s} {t_model:8.3f} {t_model / t_parse:9.3f}")
    print(f"{'cached load_ict, fresh process':40s} {t_fresh:8.3f} {t_fresh / t_parse:9.3f}")
    print(f"target cached load < 1 s: {'PASS' if max(t_model, t_fresh) < 1.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
