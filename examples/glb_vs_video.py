"""The exported performance played in three.js beside the tracked video frames (the README's assets/readme/glb_vs_video.png).

    python examples/glb_vs_video.py TRACK_DIR --frames 20 60 --out assets/readme/glb_vs_video.png

Exports TRACK_DIR to a GLB (with its appearance/ maps when present), loads that GLB in headless Chromium with
three.js's GLTFLoader (the page of tests/helpers/threejs_page.py), sets the clip's AnimationMixer to each
frame's time, renders it through the tracked camera (intrinsics and extrinsics from params.npz) under the
capture's own light (appearance/environment.hdr, else three.js's RoomEnvironment) and puts the video frame
(TRACK_DIR/images) to its left, one row per frame. Needs Chromium and node_modules/three
(``bash scripts/run.sh setup``).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the browser and three.js page helpers live with the tests

from avatar3d.data.sequence import TrackedSequence  # noqa: E402
from avatar3d.export import export  # noqa: E402
from helpers.browser import screenshot  # noqa: E402
from helpers.threejs_page import write_page  # noqa: E402


def tracked_camera(seq: TrackedSequence, frame: int) -> dict:
    """The page's camera for ``frame``: OpenCV extrinsics (x right, y down, z forward) -> position, target, up;
    vertical field of view and principal-point shift from K (pixel centres at integers)."""
    c2w = np.linalg.inv(np.asarray(seq.world_to_cam[frame], np.float64))
    pos, R = c2w[:3, 3], c2w[:3, :3]
    K = np.asarray(seq.K[frame], np.float64)
    W, H = int(seq.width), int(seq.height)
    return {"position": pos.tolist(), "target": (pos + R[:, 2]).tolist(), "up": (-R[:, 1]).tolist(),
            "offset": [W / 2 - (K[0, 2] + 0.5), H / 2 - (K[1, 2] + 0.5)], "fov": math.degrees(2 * math.atan(H / 2 / K[1, 1]))}


def three_js_environment(src: Path, out: Path) -> str:
    """Write our equirect .hdr (middle column +Z, longitude towards +X) in three.js's layout (middle column +X,
    +Z at u = 0.75): u_three = 1.25 - u_ours, so columns are mirrored and shifted. Returns the file name."""
    from avatar3d.render.lighting import EnvironmentMap

    env = EnvironmentMap.read(src).pixels
    W = env.shape[1]
    u_three = (np.arange(W) + 0.5) / W
    cols = np.floor(((1.25 - u_three) % 1.0) * W).astype(int) % W
    EnvironmentMap(np.ascontiguousarray(env[:, cols])).write(out)
    return out.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("track", type=Path)
    ap.add_argument("--frames", type=int, nargs="+", default=[20, 60])
    ap.add_argument("--size", type=int, default=256, help="pixels per side of each tile")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "readme" / "glb_vs_video.png")
    args = ap.parse_args()
    seq = TrackedSequence.load(args.track)
    with tempfile.TemporaryDirectory(prefix="glb_vs_video_") as tmp:
        glb = export(args.track, "glb", Path(tmp) / "head.glb")
        light = args.track / "appearance" / "environment.hdr"  # the capture's own light, when the appearance stage ran
        env = three_js_environment(light, Path(tmp) / "env.hdr") if light.is_file() else None
        rows = []
        for f in args.frames:
            cam = tracked_camera(seq, f)
            page = write_page(glb, [f / seq.fps], render_time=f / seq.fps, fov=cam["fov"], camera=cam, room=env is None, env_hdr=env,
                              size=(int(seq.width), int(seq.height)), name=f"frame{f}.html")
            shot = screenshot(page, Path(tmp) / f"frame{f}.png", width=int(seq.width), height=int(seq.height), budget_ms=60000)
            video = Image.open(args.track / "images" / f"{f:06d}.png").convert("RGB")
            render = Image.open(shot).convert("RGB").crop((0, 0, int(seq.width), int(seq.height)))
            rows.append(np.concatenate([np.asarray(im.resize((args.size, args.size), Image.LANCZOS)) for im in (video, render)], 1))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, 0)).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
