"""Rendering speed of a relightable Gaussian head avatar on the CPU, relit, as ``avatar3d avatar render --env`` does it.

Each frame: posing (head model, Gaussians on its triangles), the relightable appearance's colours under an
environment (diffuse SH irradiance with the self-shadowing transfer, split-sum specular from the prefiltered map),
projection, binning and compositing (:func:`avatar3d.render.gaussians.rasterize_gaussians`) and the uint8 conversion
(:func:`avatar3d.avatar.render.render_frames`). Rows, all in one run:

* ``plain``: the reference, the same Gaussians with SH colours (the avatar baked under its capture light into
  degree-1 SH, :func:`avatar3d.export.gaussian_ply.bake_sh`: what an avatar that cannot be relit costs to render);
* ``capture``: the avatar under its own trained capture light (``set_environment(None)``);
* ``studio``: relit by the generated studio map (set once; ``--env studio``);
* ``rotating``: studio turning 0 -> 360 degrees over the frames (``--env studio --env-rotation 0:360``): the map is
  prefiltered once (in the untimed first frame) and each frame's light is it turned (``FixedLight.rotated``);
* ``rotating, re-prefiltered``: the same maps with their source forgotten, so each frame prefilters its map again
  (how every rotating frame was lit before; ``--old-rotation`` adds the row, ~0.3-0.4 s of CPU a frame).

Target (issue #15): a relit frame >= 10 FPS at 512^2 on two CPU cores. The command (about a minute on two idle
cores; OMP_WAIT_POLICY is set to PASSIVE by the script unless given, see bench_avatar_render.py for why):

    python benchmarks/bench_avatar_relight_render.py --avatar AVATAR_DIR [--threads 1,2] [--res 512] [--frames 16]
        [--old-rotation] [--stages]

AVATAR_DIR is a relightable avatar (``avatar3d avatar train TRACK_DIR --relightable --out AVATAR_DIR``, or the
``avatar/`` of an ``avatar3d reconstruct`` run) whose tracking directory is still where it was trained. FPS is frames
over wall seconds (median frame); cpu ms is process CPU time per frame over all threads (it does not count waiting
for a core, so it stays meaningful on a loaded machine); the ratios are against ``plain`` in the same run.
``--stages`` adds the CPU milliseconds of each step of one relit frame's colours (1 thread, fastest of 15).

Results, 2026-12-08, Intel Xeon (2 cores, AVX2, AVX-512), torch 2.13 CPU, ``OMP_WAIT_POLICY=PASSIVE``; the d3 avatar
of an ``avatar3d reconstruct`` run (relightable, 31,273 Gaussians) driven by its first 16 tracked frames at 512^2,
``--old-rotation --stages``, on a box shared with five other jobs and a long reconstruct run (load average 9-11 on
2 cores: the wall FPS are several times too low; the CPU milliseconds and the ratios, measured in the same run,
are what compare, the least CPU the steadiest):

    threads  res                     light |   FPS  best | cpu ms    min | FPS ratio cpu ratio min ratio | vs 10 FPS
          1  512                     plain |   3.2   3.9 |   87.5   72.5 |     1.00x     1.00x     1.00x |    missed
          1  512                   capture |   3.1   3.3 |   92.2   87.4 |     0.95x     1.05x     1.20x |    missed
          1  512                    studio |   3.0   3.3 |   93.5   84.8 |     0.93x     1.07x     1.17x |    missed
          1  512                  rotating |   3.2   3.4 |   89.6   84.5 |     0.99x     1.02x     1.16x |    missed
          1  512  rotating, re-prefiltered |   0.7   0.9 |  396.4  371.4 |     0.23x     4.53x     5.12x |    missed
          2  512                     plain |   3.4   3.9 |   83.7   73.0 |     1.00x     1.00x     1.00x |    missed
          2  512                   capture |   2.9   3.3 |   98.4   86.5 |     0.85x     1.18x     1.18x |    missed
          2  512                    studio |   3.1   3.5 |   93.0   82.9 |     0.91x     1.11x     1.13x |    missed
          2  512                  rotating |   3.1   3.5 |   94.6   82.5 |     0.90x     1.13x     1.13x |    missed
          2  512  rotating, re-prefiltered |   0.7   0.9 |  404.8  382.8 |     0.21x     4.83x     5.24x |    missed

    one relit frame (studio), 1 thread, CPU ms (fastest of 15): plain frame (SH colours) 66.3, relit frame 79.0;
    posing 7.5; colours 18.3 = normals 5.7, albedo with expressions 1.7, SH irradiance 1.3, prefiltered lookup 4.3,
    GGX LUT 0.4, visibility 1.3, sRGB 0.5 (the rest: elementwise products).

So a relit frame costs 1.13-1.17x the plain frame's CPU (+10-12 ms at 512^2), and a rotating light the same as a
fixed one (it was 5x: prefiltering each frame's map, ~300 ms). The colours went from 24.0 to 18.1 ms of CPU (the
fastest of 25 interleaved A/B frames, same run): the prefiltered stack read by one trilinear lookup instead of a
bilinear lookup per roughness level (6.9 -> 3.8 ms, fastest of 25, same run) and the expression albedo's change by a
batched product instead of ``einsum``'s transposing copy (3.0 -> 1.5 ms), colours equal to 1e-6
(tests/test_relit_shading_paths.py). The
normals (5.7 ms, ``ShadingInputs.normals``) are the next cut: their part in each Gaussian's own frame does not change
between frames. On the idle box the plain render gives 18.3 FPS at 512^2 on two threads (bench_avatar_render.py);
at 1.13-1.17x its CPU a relit frame would be ~15.5-16 FPS, above the 10 FPS target, but that is an estimate from the
ratio: the idle rerun is what measures it.

Later (same day): a render now keeps the normals' part in each Gaussian's own frame while the Gaussians are unchanged
(``ShadingInputs.local_normals``, cached by ``GaussianHead.colours`` when grad mode is off; per frame only the turn by
the posed rotation is left) and the head model's mesh at the avatar's identity (``GaussianHead._shaped_template``).
Measured in one process, the old and new code of each piece in turns (40 calls each, median CPU ms, 1 thread, load
~2 but CPU time inflated by the other jobs): relit colours 32.2 -> 25.6, head model 7.3 -> 5.1. Whole frames, this
script ``--threads 1 --res 512 --frames 8``, three runs of the old code (main at 6dba3cb) and the new in turns:
studio row, least of each run's min CPU ms 77.4 -> 69.8, median of the runs' medians 105.3 -> 76.5 (the box swung
between ~60 and ~85 ms plain frames from run to run; the per-piece figures are the steadier ones). Images equal to
2.1e-7 (float order of the kept normals; tests/test_avatar_render_caches.py). The ``--stages`` table times fresh
``ShadingInputs`` (its normals row is the uncached cost).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: spinning waits cost 4x on a busy box

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import machine  # noqa: E402  (benchmarks/machine.py, beside this script)

from avatar3d.avatar.appearance import ShadingInputs, SHAppearance  # noqa: E402
from avatar3d.avatar.drive import DriveRequest, build_drive, open_avatar  # noqa: E402
from avatar3d.avatar.model import GaussianHead  # noqa: E402
from avatar3d.avatar.render import Relight, frame_lights, render_frames  # noqa: E402
from avatar3d.export.gaussian_ply import avatar_cloud  # noqa: E402
from avatar3d.render.brdf import irradiance, lut_lookup, reflect, specular_to_f0  # noqa: E402
from avatar3d.render.color import srgb_encode  # noqa: E402
from avatar3d.render.lighting import EnvironmentMap, environment_from_spec  # noqa: E402

TARGET_FPS = 10.0


def sh_twin(avatar: GaussianHead) -> GaussianHead:
    """The same Gaussians with SH colours: the avatar baked under its capture light (its neutral expression)."""
    m = avatar.head_model
    cloud = avatar_cloud(avatar, torch.zeros(m.num_expression), torch.zeros(m.num_joints, 3), torch.zeros(3))
    params = {k: v.detach() for k, v in avatar.params.items() if k in ("offset", "rotation", "log_scale", "opacity", "expr_offset")}
    N, K = avatar.num_gaussians, len(avatar.expr_index)
    params.update({"sh_dc": cloud.sh_dc, "sh_rest": cloud.sh_rest, "expr_colour": torch.zeros(N, K, 3)})
    return GaussianHead(m, avatar.shape, avatar.parent, params, SHAppearance(), avatar.expr_index).eval()


def time_frames(avatar: GaussianHead, drive, lights) -> dict[str, float]:
    """Seconds per frame of ``render_frames(avatar, drive, lights=lights)`` (the first frame untimed: warm-up, and a
    new map's prefiltering): median and fastest wall, median and least CPU (all threads)."""
    frames = render_frames(avatar, drive, lights=lights)
    next(frames)
    walls, cpus = [], []
    while True:
        w, c = time.perf_counter(), time.process_time()
        try:
            next(frames)
        except StopIteration:
            break
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return {"wall": statistics.median(walls), "best": min(walls), "cpu": statistics.median(cpus), "cpu_min": min(cpus)}


def forgetful(lights):
    """``lights`` with each map's source forgotten (:attr:`EnvironmentMap.turned`): every frame prefilters anew."""
    return lambda i: EnvironmentMap(lights(i).pixels)


def _cpu_ms(f, reps: int = 15) -> float:
    f()
    best = float("inf")
    for _ in range(reps):
        c = time.process_time()
        f()
        best = min(best, time.process_time() - c)
    return 1e3 * best


@torch.no_grad()
def stages(av: GaussianHead, ref: GaussianHead, drive) -> dict[str, float]:
    """CPU ms (fastest of 15) of each step of one relit frame (studio): posing, the colours and their parts; and the
    plain frame of ``ref`` (SH colours) for comparison."""
    ap, P = av.appearance, av.params
    ap.set_environment(environment_from_spec("studio"))
    e, p, t = drive.expression[:1], drive.pose[:1], drive.transl[:1]
    cam = drive.camera(slice(0, 1))
    posed = av.posed_head(e, p, t)
    g = posed.gaussians
    dirs = torch.nn.functional.normalize(g.means - cam.centre.reshape(1, 1, 3).to(g.means), dim=-1)

    def inputs() -> ShadingInputs:
        return ShadingInputs(dirs, g.means, g.quats, g.scales, P["rotation"], posed.vertices, av.parent)

    n, view = inputs().normals(), -dirs
    sh, pre = ap.lighting()
    rough = torch.sigmoid(P["roughness"])[None]
    nov = (n * view).sum(-1, keepdim=True).clamp(1e-6, 1)
    r = reflect(view, n)
    colour = ap.colours(P, posed.drive, inputs())
    steps = {
        "plain frame (SH colours)": lambda: ref(e, p, t, cam),
        "relit frame": lambda: av(e, p, t, cam),
        "posing": lambda: av.posed_head(e, p, t),
        "colours (all below)": lambda: ap.colours(P, posed.drive, inputs()),
        "  normals": lambda: inputs().normals(),
        "  albedo (+expressions)": lambda: ap.albedo(P, posed.drive),
        "  SH irradiance": lambda: irradiance(n, sh),
        "  prefiltered lookup": lambda: pre.radiance(r, rough),
        "  GGX LUT lookup": lambda: lut_lookup(ap.lut, rough.clamp(0, 1), nov),
        "  visibility (shadow)": lambda: ap.transfer.shadow(posed.vertices, sh) if ap.transfer is not None else None,
        "  sRGB encode": lambda: srgb_encode(colour),
        "  f0 etc.": lambda: specular_to_f0(torch.sigmoid(P["specular"])),
    }
    return {k: _cpu_ms(f) for k, f in steps.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--avatar", required=True, help="a relightable avatar directory (avatar.pt)")
    ap.add_argument("--threads", default="1,2", help="CPU threads (torch and OpenMP), comma-separated")
    ap.add_argument("--res", default="512", help="render sizes in pixels, comma-separated")
    ap.add_argument("--frames", type=int, default=16, help="tracked frames rendered per measurement (plus one untimed)")
    ap.add_argument("--old-rotation", action="store_true", help="add the row that prefilters every rotating frame anew")
    ap.add_argument("--stages", action="store_true", help="CPU ms of each step of one relit frame (1 thread)")
    a = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    src = open_avatar(a.avatar)
    av = src.avatar.eval()
    if not av.appearance.relightable:
        print(f"{a.avatar} is not relightable (its appearance is {av.appearance.name!r}); train one with --relightable")
        return 2
    ref = sh_twin(av)
    print(f"# avatar {a.avatar}: {av.num_gaussians} Gaussians, appearance {av.appearance.name!r}, {a.frames} tracked frames per row, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, load1 at start {os.getloadavg()[0]:.1f}")
    hdr = (f"{'threads':>7} {'res':>4} {'light':>25} | {'FPS':>5} {'best':>5} | {'cpu ms':>6} {'min':>6} | {'FPS ratio':>9} "
           f"{'cpu ratio':>9} {'min ratio':>9} | {'vs 10 FPS':>9}")
    print(hdr)
    print("-" * len(hdr))
    result = {}
    for threads in (int(x) for x in a.threads.split(",")):
        torch.set_num_threads(threads)  # also OpenMP's team size (the extension's tiles)
        for res in (int(x) for x in a.res.split(",")):
            drive = build_drive(src, DriveRequest(frames=slice(0, a.frames + 1), resolution=res))
            capture = av.appearance.capture_environment()
            rows = {"plain": None, "capture": None, "studio": frame_lights(Relight("studio"), len(drive), capture),
                    "rotating": frame_lights(Relight("studio", (0.0, 360.0)), len(drive), capture)}
            if a.old_rotation:
                rows["rotating, re-prefiltered"] = forgetful(frame_lights(Relight("studio", (0.0, 360.0)), len(drive), capture))
            base = None
            for name, lights in rows.items():
                av.appearance.set_environment(None)
                t = time_frames(ref if name == "plain" else av, drive, lights)
                base = base or t
                result[(threads, res, name)] = 1 / t["wall"]
                print(f"{threads:7d} {res:4d} {name:>25} | {1 / t['wall']:5.1f} {1 / t['best']:5.1f} | {1e3 * t['cpu']:6.1f} "
                      f"{1e3 * t['cpu_min']:6.1f} | {base['wall'] / t['wall']:8.2f}x {t['cpu'] / base['cpu']:8.2f}x "
                      f"{t['cpu_min'] / base['cpu_min']:8.2f}x | {'met' if 1 / t['wall'] >= TARGET_FPS else 'missed':>9}", flush=True)
    for name in ("studio", "rotating"):
        if (2, 512, name) in result:
            fps = result[(2, 512, name)]
            print(f"# target >= {TARGET_FPS:.0f} FPS relit ({name}) at 512^2 on 2 threads: {fps:.1f} FPS (median frame), "
                  f"{'met' if fps >= TARGET_FPS else 'MISSED'}")
    print(f"# load1 at end={os.getloadavg()[0]:.1f}. FPS = 1 / median frame wall time; best = 1 / fastest frame; cpu ms = median "
          "process CPU time per frame (all threads), min = the least; FPS ratio = plain's median frame time / this row's; cpu ratio "
          "and min ratio = this row's CPU / plain's (same run, same threads; the least CPU is the steadiest on a loaded machine).")
    if a.stages:
        torch.set_num_threads(1)
        drive = build_drive(src, DriveRequest(frames=slice(0, 1), resolution=int(a.res.split(",")[-1])))
        print("# one relit frame (studio), 1 thread, CPU ms (fastest of 15):")
        for k, ms in stages(av, ref, drive).items():
            print(f"#   {k:24s} {ms:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
