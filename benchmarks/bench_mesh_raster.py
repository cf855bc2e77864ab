"""Mesh rasterizer speed: rasterize + interpolate + antialias, forward + backward.

CPU: our C++/OpenMP extension against the pure-PyTorch reference, same thread count, same run.
GPU (when CUDA is available): our CUDA extension against nvdiffrast (if installed), same run.

    .venv/bin/python benchmarks/bench_mesh_raster.py [--res 512] [--threads 2] [--quick]

Prints a table of best-of-N wall times (and CPU times) and the speed-up ratio against the named reference.
"""

from __future__ import annotations

import argparse
import math
import os
import time

# On a shared, oversubscribed machine OpenMP's default spin-waiting makes a descheduled thread stall
# everyone at each barrier; passive waiting is fairer to both contenders (set before torch loads libgomp).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)
import torch  # noqa: E402

from avatar3d.render import camera as cam  # noqa: E402
from avatar3d.render import mesh as M  # noqa: E402


def sphere_mesh(n_faces: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bumpy UV sphere (radius ~0.2 m) with about ``n_faces`` triangles: vertices (V,3), faces (F,3) int32."""
    rows = max(3, int(round(math.sqrt(n_faces / 4))))
    cols = 2 * rows
    th = torch.linspace(0, math.pi, rows + 1)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, cols + 1)[:-1]
    T, P = torch.meshgrid(th, ph, indexing="ij")
    r = 0.2 * (1 + 0.05 * torch.sin(7 * T) * torch.cos(5 * P))
    ring = torch.stack([r * torch.sin(T) * torch.cos(P), r * torch.cos(T), r * torch.sin(T) * torch.sin(P)], -1).reshape(-1, 3)
    v = torch.cat([ring, torch.tensor([[0.0, 0.2, 0.0], [0.0, -0.2, 0.0]])])
    top, bot = len(ring), len(ring) + 1
    f = []
    for i in range(rows - 2):
        for j in range(cols):
            a, b = i * cols + j, i * cols + (j + 1) % cols
            c, d = a + cols, b + cols
            f += [[a, c, b], [b, c, d]]
    for j in range(cols):
        f.append([top, (j + 1) % cols, j])
        k = (rows - 2) * cols
        f.append([bot, k + j, k + (j + 1) % cols])
    return v, torch.tensor(f, dtype=torch.int32)


def step(backend: str, pos: torch.Tensor, tri: torch.Tensor, attr: torch.Tensor, res: int, adj: torch.Tensor) -> None:
    """One forward + backward of rasterize -> interpolate -> antialias."""
    p = pos.detach().requires_grad_()
    a = attr.detach().requires_grad_()
    rast, _ = M.rasterize(p, tri, (res, res), backend=backend)
    col, _ = M.interpolate(a, rast, tri, backend=backend)
    img = M.antialias(col.contiguous(), rast, p, tri, topology_hash=adj, backend=backend)
    img.square().sum().backward()
    if p.is_cuda:
        torch.cuda.synchronize()


def timeit(fn, reps: int) -> tuple[float, float]:
    """Best (wall seconds, process CPU seconds) over ``reps`` runs after one warm-up.

    The minimum is the least disturbed run on a shared machine; CPU time (all threads) is
    reported too because wall time there is noisy.
    """
    fn()  # warm-up (extension load, allocator)
    ts, cs = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return min(ts), min(cs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 repetition of the reference, smaller sizes")
    args = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    torch.set_num_threads(args.threads)  # also caps OpenMP threads of the extension (shared runtime)
    sizes = [10_000, 100_000] if not args.quick else [2_000, 20_000]
    rows = []
    for nf in sizes:
        v, tri = sphere_mesh(nf)
        K, vm = cam.intrinsics_from_fov(args.res, args.res, 30.0), cam.look_at((0.1, 0.1, 0.9), (0.0, 0.0, 0.0))
        pos = cam.world_to_clip(v, K, vm, args.res, args.res, 0.05, 10.0)
        attr = torch.rand(1, v.shape[0], 3)
        adj = M.triangle_adjacency(tri)
        t_cpu = timeit(lambda: step("cpu", pos, tri, attr, args.res, adj), 10)
        t_ref = timeit(lambda: step("reference", pos, tri, attr, args.res, adj), 1 if args.quick else 3)
        rows.append(("cpu-ext", "torch-reference", tri.shape[0], t_cpu, t_ref))
        if torch.cuda.is_available():
            pc, tc, ac, adc = pos.cuda(), tri.cuda(), attr.cuda(), adj.cuda()
            t_cuda = timeit(lambda: step("cuda", pc, tc, ac, args.res, adc), 20)
            try:
                import nvdiffrast.torch  # noqa: F401

                t_nv = timeit(lambda: step("nvdiffrast", pc, tc, ac, args.res, None), 20)
                rows.append(("cuda-ext", "nvdiffrast", tri.shape[0], t_cuda, t_nv))
            except ImportError:
                rows.append(("cuda-ext", "(nvdiffrast not installed)", tri.shape[0], t_cuda, (float("nan"), float("nan"))))
    print(f"\nrasterize+interpolate+antialias fwd+bwd, {args.res}x{args.res}, {args.threads} CPU threads")
    print(f"{'ours':<10} {'reference':<26} {'triangles':>10} {'ours ms':>9} {'ref ms':>9} {'speed-up':>9} {'cpu-time speed-up':>18}")
    for ours, ref, nf, (t_o, c_o), (t_r, c_r) in rows:
        print(f"{ours:<10} {ref:<26} {nf:>10d} {t_o * 1e3:>9.1f} {t_r * 1e3:>9.1f} {t_r / t_o:>8.1f}x {c_r / max(c_o, 1e-9):>17.1f}x")
    if not torch.cuda.is_available():
        print("GPU: no CUDA device in this run; the CUDA path is unmeasured.")


if __name__ == "__main__":
    main()
