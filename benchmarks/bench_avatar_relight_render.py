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

    python benchmarks/bench_avatar_relight_render.py --avatar AVATAR_DIR [--threads 1,2] [--res 512] [--frames 12]
        [--old-rotation] [--stages]

AVATAR_DIR is a relightable avatar (``avatar3d avatar train TRACK_DIR --relightable --out AVATAR_DIR``, or the
``avatar/`` of an ``avatar3d reconstruct`` run) whose tracking directory is still where it was trained. FPS is frames
over wall seconds (median frame); cpu ms is process CPU time per frame over all threads (it does not count waiting
for a core, so it stays meaningful on a loaded machine); the ratios are against ``plain`` in the same run.
``--stages`` adds the CPU milliseconds of each step of one relit frame's colours (1 thread, fastest of 15).

Results, 2026-12-08, Intel Xeon (2 cores, AVX2, AVX-512), torch 2.13 CPU; the d3 avatar of an ``avatar3d reconstruct``
run (relightable, 31,273 Gaussians) driven by its first 12 tracked frames at 512^2, on a box shared with five other
jobs and a long reconstruct run (load average ~8 on 2 cores: the wall FPS are several times too low; the CPU
milliseconds and the ratios, measured in the same run, are what compare):

    (see the README's "Relightable avatars" speed rows; filled in from the run below)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP: spinning waits cost 4x on a busy box

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import machine  # noqa: E402  (benchmarks/machine.py, beside this script)
from bench_avatar_render import time_render  # noqa: E402  (beside this script)

from avatar3d.avatar.appearance import ShadingInputs, SHAppearance  # noqa: E402
from avatar3d.avatar.drive import DriveRequest, build_drive, open_avatar  # noqa: E402
from avatar3d.avatar.model import GaussianHead  # noqa: E402
from avatar3d.avatar.render import Relight, frame_lights  # noqa: E402
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
def stages(av: GaussianHead, drive) -> dict[str, float]:
    """CPU ms (fastest of 15) of each step of one relit frame (studio): posing, the colours and their parts."""
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
        "whole frame": lambda: av(e, p, t, cam),
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
    ap.add_argument("--frames", type=int, default=12, help="tracked frames rendered per measurement (plus one untimed)")
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
    hdr = f"{'threads':>7} {'res':>4} {'light':>25} | {'FPS':>6} {'best':>6} {'cpu ms':>7} | {'FPS ratio':>9} {'cpu ratio':>9} | {'vs 10 FPS':>9}"
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
                wall, best, cpu = time_render(ref if name == "plain" else av, drive, lights=lights)
                base = base or (wall, cpu)
                result[(threads, res, name)] = 1 / wall
                print(f"{threads:7d} {res:4d} {name:>25} | {1 / wall:6.1f} {1 / best:6.1f} {1e3 * cpu:7.1f} | {base[0] / wall:8.2f}x "
                      f"{cpu / base[1]:8.2f}x | {'met' if 1 / wall >= TARGET_FPS else 'missed':>9}", flush=True)
    for name in ("studio", "rotating"):
        if (2, 512, name) in result:
            fps = result[(2, 512, name)]
            print(f"# target >= {TARGET_FPS:.0f} FPS relit ({name}) at 512^2 on 2 threads: {fps:.1f} FPS (median frame), "
                  f"{'met' if fps >= TARGET_FPS else 'MISSED'}")
    print(f"# load1 at end={os.getloadavg()[0]:.1f}. FPS = 1 / median frame wall time; best = 1 / fastest frame; cpu ms = median "
          "process CPU time per frame (all threads); FPS ratio = plain's median frame time / this row's, cpu ratio = this row's CPU "
          "/ plain's (same run, same threads).")
    if a.stages:
        torch.set_num_threads(1)
        drive = build_drive(src, DriveRequest(frames=slice(0, 1), resolution=int(a.res.split(",")[-1])))
        print("# one relit frame (studio), 1 thread, CPU ms (fastest of 15):")
        for k, ms in stages(av, drive).items():
            print(f"#   {k:24s} {ms:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
