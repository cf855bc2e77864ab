"""Vertex normals for the shaded previews and the ``avatar3d track`` overlay (geometry.vertex_normals).

Compares, in the same run, on the built-in head (posed with random expressions):

* ``vertex_normals``: the library's (vertex-major (V, B*3) layout, in-place index_add_),
* ``per-corner index_add``: the previous implementation, three out-of-place index_adds on (B, V, 3)
  (kept here as the reference; bit-identical results),
* ``sparse incidence``: one (V, F) sparse CSR matmul, as ``render.head.HeadRenderer``
  does (incidence built once, not timed),

then the whole overlay stage (``tracking.outputs.render_overlay_frames``, 48 frames of 512x512 in
batches of 8, as the pipeline calls it) with the library's normals and with the reference.

    python benchmarks/bench_normals.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import machine  # noqa: E402  (benchmarks/machine.py, beside this script)
import numpy as np
import torch


def normals_per_corner(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The previous ``vertex_normals``: (B, V, 3) -> (B, V, 3)."""
    f = faces.long()
    v0, v1, v2 = vertices[:, f[:, 0]], vertices[:, f[:, 1]], vertices[:, f[:, 2]]
    fn = torch.linalg.cross(v1 - v0, v2 - v0)
    n = torch.zeros_like(vertices)
    for k in range(3):
        n = n.index_add(1, f[:, k], fn)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def incidence(faces: torch.Tensor, V: int) -> torch.Tensor:
    """(V, F) sparse CSR vertex-face incidence."""
    F = len(faces)
    rows, cols = faces.long().T.reshape(-1), torch.arange(F).repeat(3)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(3 * F), (V, F)).coalesce().to_sparse_csr()


def normals_sparse(vertices: torch.Tensor, faces: torch.Tensor, inc: torch.Tensor) -> torch.Tensor:
    """Normals through one sparse incidence matmul (HeadRenderer.normals without the camera rotation)."""
    f = faces.long()
    B, V = vertices.shape[:2]
    vt = vertices.transpose(0, 1).reshape(V, B * 3)
    v0, v1, v2 = (vt[f[:, k]].view(-1, B, 3) for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0)
    n = (inc @ fn.reshape(len(f), B * 3)).view(V, B, 3).transpose(0, 1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12)


def median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(machine.describe(), flush=True)  # speed figures compare only on the same CPU
    torch.set_num_threads(args.threads)

    import avatar3d.render.preview as preview
    from avatar3d.geometry import vertex_normals
    from avatar3d.models import load_head_model
    from avatar3d.tracking.outputs import render_overlay_frames

    m = load_head_model("builtin")
    N, batch, size = 48, 8, 512
    with torch.no_grad():
        expr = torch.randn(N, m.num_expression, generator=torch.Generator().manual_seed(0)) * 0.4
        verts = m(expression=expr).vertices
    faces = m.faces
    inc = incidence(faces, verts.shape[1])
    print(f"built-in head: V={verts.shape[1]}, F={len(faces)}; torch threads={torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| batch | vertex_normals ms | per-corner index_add ms (reference) | sparse incidence ms | speed-up vs reference | vs sparse | same bits as reference |")
    print("|---|---|---|---|---|---|---|")
    for B in (1, 8):
        v = verts[:B].contiguous()
        t_new = median_ms(lambda: vertex_normals(v, faces), args.repeats)
        t_ref = median_ms(lambda: normals_per_corner(v, faces), args.repeats)
        t_sp = median_ms(lambda: normals_sparse(v, faces, inc), args.repeats)
        same = torch.equal(vertex_normals(v, faces), normals_per_corner(v, faces))
        print(f"| {B} | {t_new:.2f} | {t_ref:.2f} | {t_sp:.2f} | {t_ref / t_new:.2f}x | {t_sp / t_new:.2f}x | {same} |")

    K, w2c = preview.framing_camera(verts[0], size, size, margin=1.3)
    Ks = np.repeat(K.numpy()[None], N, 0)
    imgs = np.full((N, size, size, 3), 90, np.uint8)
    vn, fn_np, w2c_np = verts.numpy(), faces.numpy(), w2c.numpy()

    def stage(normals) -> tuple[float, np.ndarray]:
        preview.vertex_normals = normals  # render_mesh's normals
        try:
            t0, out = time.perf_counter(), []
            for s in range(0, N, batch):
                out.append(render_overlay_frames(imgs[s:s + batch], vn[s:s + batch], fn_np, Ks[s:s + batch], w2c_np))
            return time.perf_counter() - t0, np.concatenate(out)
        finally:
            preview.vertex_normals = vertex_normals

    stage(vertex_normals)  # warm-up: extension load, allocator
    t_new, t_ref = [], []
    for _ in range(3):  # interleaved: both see the same machine load
        t, a = stage(normals_per_corner)
        t_ref.append(t)
        t, b = stage(vertex_normals)
        t_new.append(t)
    print(f"\n| overlay stage, {N} frames {size}x{size} | vertex_normals s | reference s | speed-up | frames identical |")
    print("|---|---|---|---|---|")
    print(f"| median of 3 | {statistics.median(t_new):.3f} | {statistics.median(t_ref):.3f} | "
          f"{statistics.median(t_ref) / statistics.median(t_new):.2f}x | {np.array_equal(a, b)} |")


if __name__ == "__main__":
    main()
