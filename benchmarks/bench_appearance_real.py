"""The appearance stage on the real videos: re-render error against the tracker's, maps and relit renders to look at.

Usage::

    python benchmarks/bench_appearance_real.py [--videos d0,d3,d6,d12,d13,d14] [--models builtin,ict]
                                               [--fps 10] [--frames 90] [--resolution 512] [--out DIR]

For every video and head model: track a clip (``--frames`` frames at ``--fps``, ``--photometric``, cached
under the avatar3d cache folder keyed by these settings), run :func:`avatar3d.appearance.estimate.estimate_appearance`
at ``--resolution``, and print one table row:

* re-render error on face pixels (:func:`avatar3d.appearance.evaluate.rerender_errors`: mean |render - frame| in
  grey levels and PSNR, at 256 px) of our maps and of the tracking stage's 128 px albedo + SH (the named
  reference, same frames, same pixels), their ratio and the share of frames where ours is lower;
* seconds of the appearance stage and its peak memory (the process's max RSS so far).

``--out`` (default ``bench_appearance_real/``) gets, per video x model, ``maps_<video>_<model>.png`` (albedo |
specular | roughness | normal | coverage) and ``relit_<video>_<model>.png`` (frame | our re-render | tracking's |
a middle frame relit under the three generated environments ``studio``, ``sunset``, ``overcast``), and
``bench_appearance_real.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.appearance.estimate import AppearanceOptions, estimate_appearance  # noqa: E402
from avatar3d.appearance.evaluate import rerender_errors  # noqa: E402
from avatar3d.data.frames import TrackedFrames  # noqa: E402
from avatar3d.models import load_head_model  # noqa: E402
from avatar3d.paths import cache_dir, shared_data_dir  # noqa: E402
from avatar3d.render.color import srgb_encode  # noqa: E402
from avatar3d.render.lighting import EnvironmentMap  # noqa: E402
from avatar3d.render.pbr import PBRLight, PBRMaterial, SeamMesh, render_pbr  # noqa: E402

ENVIRONMENTS = ("studio", "sunset", "overcast")


def model_spec(name: str, data: Path) -> str:
    return f"ict={data / 'ict-facekit-light.tar.xz'}" if name == "ict" else name


def tracked(video: Path, model: str, spec: str, fps: float, frames: int) -> Path:
    """A photometric track of the clip, cached (the tracker resumes / no-ops when it is complete)."""
    from avatar3d.tracking.pipeline import TrackOptions, track

    out = cache_dir(f"bench/appearance_real/{video.stem}_{model}_{fps:g}fps_{frames}")
    if not (out / "albedo.png").is_file():
        track(video, out, TrackOptions(model=spec, fps=fps, max_frames=frames, photometric=True, overlay=False, progress=False))
    return out


def u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, np.float64) * 255), 0, 255).astype(np.uint8)


def maps_sheet(maps, size: int = 256) -> np.ndarray:
    """(size, 5 size, 3) albedo (sRGB) | specular x2 | roughness | normal | coverage."""
    import cv2

    grey = lambda a: np.repeat(np.asarray(a)[..., None], 3, -1)  # noqa: E731
    tiles = [srgb_encode(np.clip(maps.albedo, 0, 1)), grey(np.clip(maps.specular * 2, 0, 1)), grey(maps.roughness),
             maps.normal * 0.5 + 0.5, grey(maps.coverage)]
    return np.concatenate([cv2.resize(u8(t), (size, size), interpolation=cv2.INTER_AREA) for t in tiles], 1)


def relit_sheet(track_dir: Path, maps, model, size: int = 256) -> np.ndarray:
    """(size, 6 size, 3): a middle frame | ours | tracking's | relit under each of :data:`ENVIRONMENTS`."""
    from avatar3d.appearance.evaluate import pbr_light, tracking_appearance
    from avatar3d.render.head import HeadRenderer

    frames = TrackedFrames(track_dir, resolution=size)
    i = len(frames) // 2
    p = frames.params(i)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)[None]  # noqa: E731
    cam = frames.camera(i)
    mesh, mat = SeamMesh.of(model), PBRMaterial.of(maps.albedo, maps.specular, maps.roughness, maps.normal)
    with torch.no_grad():
        verts = model(t(p.shape), t(p.expression), t(p.pose), t(p.transl)).vertices[0].float()
        tiles = [frames.image(i) / 255.0]
        ours = render_pbr(mesh, verts, cam.K, cam.world_to_cam, size, size, mat, pbr_light(maps))
        tiles.append(srgb_encode(ours.rgb).clamp(0, 1).numpy())
        seq = frames.sequence
        head = HeadRenderer(model, torch.as_tensor(frames.K, dtype=torch.float32), torch.as_tensor(seq.world_to_cam[0]).float(),
                            crop=size, r=size)
        tex, sh = tracking_appearance(frames)
        tiles.append(head.shade(head.raster(verts[None][:, head.vertex_ids], np.array([i])), tex, sh)[0][0].clamp(0, 1).numpy())
        for name in ENVIRONMENTS:
            r = render_pbr(mesh, verts, cam.K, cam.world_to_cam, size, size, mat, PBRLight.of(EnvironmentMap.generated(name, 256)))
            tiles.append(srgb_encode(r.rgb).clamp(0, 1).numpy())
    return np.concatenate([u8(x) for x in tiles], 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", default="d0,d3,d6,d12,d13,d14")
    ap.add_argument("--models", default="builtin,ict")
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path("bench_appearance_real"))
    a = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        print("skipped: ../shared/data (the real videos) is absent")
        return 0
    import cv2

    print(machine.describe())
    a.out.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    for mname in a.models.split(","):
        spec = model_spec(mname, data)
        model = load_head_model(spec)
        for v in a.videos.split(","):
            td = tracked(data / "videos" / f"{v}.mp4", mname, spec, a.fps, a.frames)
            t0 = time.perf_counter()
            maps = estimate_appearance(TrackedFrames(td), model, AppearanceOptions(resolution=a.resolution))
            secs = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            s = rerender_errors(td, maps, model).summary()
            cv2.imwrite(str(a.out / f"maps_{v}_{mname}.png"), maps_sheet(maps)[..., ::-1])
            cv2.imwrite(str(a.out / f"relit_{v}_{mname}.png"), relit_sheet(td, maps, model)[..., ::-1])
            records.append(dict(video=v, model=mname, seconds=secs, peak_rss_gb=rss, **s))
            rows.append(f"| {v} | {mname} | {s['ours']:.2f} | {s['tracking']:.2f} | {s['ours'] / s['tracking']:.2f} | "
                        f"{s['psnr_ours']:.2f} | {s['psnr_tracking']:.2f} | {s['frames_better']:.0%} | {secs:.0f} | {rss:.1f} |")
            print(rows[-1], flush=True)
    print("\n| video | model | ours (grey levels) | tracking 128 px + SH | ratio | PSNR ours | PSNR tracking | frames better | s | peak RSS GB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    (a.out / "bench_appearance_real.json").write_text(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
