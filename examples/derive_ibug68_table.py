"""Derive avatar3d/assets/mediapipe_to_ibug68.json: the 68 iBUG / Multi-PIE points as mixes of MediaPipe points.

ICT-FaceKit documents its 68 landmark vertices. We embed MediaPipe's 478 points on ICT's neutral
head (renders + MediaPipe, :func:`compute_mediapipe_embedding`), then express each of the 68 true
points as the convex mix of its 3 nearest MediaPipe points that comes closest to it (non-negative
least squares with weights summing to 1). Any other head with a 478 embedding then gets its 68
points from the table (:func:`avatar3d.models.embedding.ibug68_from_mediapipe`).

Usage: python examples/derive_ibug68_table.py [ICT FaceXModel folder or archive] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from avatar3d.models.embedding import IBUG68_TABLE_PATH, embedding_points
from avatar3d.models.ict import ICT_LMK68_VERTICES, read_ict_data


def derive(v: np.ndarray, p478: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(68, k) indices, (68, k) weights and (68,) residual distances (metres) for targets ``v`` (68, 3)."""
    idx = np.zeros((68, k), np.int64)
    w = np.zeros((68, k))
    res = np.zeros(68)
    for i, t in enumerate(v):
        near = np.argsort(np.linalg.norm(p478[:468] - t, axis=1))[:k]  # iris points are not face landmarks
        # convex mix: rows of the points plus a heavily weighted sum-to-one row
        A = np.vstack([p478[near].T, 10.0 * np.ones(k)])
        b = np.concatenate([t, [10.0]])
        wi, _ = nnls(A, b)
        wi = wi / wi.sum()
        idx[i], w[i] = near, wi
        res[i] = np.linalg.norm(wi @ p478[near] - t)
    return idx, w, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path", nargs="?", default=None)
    ap.add_argument("--out", default=str(IBUG68_TABLE_PATH))
    a = ap.parse_args()
    data = read_ict_data(a.path, landmarks=True)
    v = data.v_template.astype(np.float64)
    p478 = embedding_points(v, data.faces, data.lmk_faces, data.lmk_bary)
    idx, w, res = derive(v[ICT_LMK68_VERTICES], p478)
    nearest = np.linalg.norm(p478[idx[:, 0]] - v[ICT_LMK68_VERTICES], axis=1)
    print(f"nearest MediaPipe point: mean {nearest.mean() * 1000:.2f} mm, max {nearest.max() * 1000:.2f} mm")
    print(f"3-point convex mix:      mean {res.mean() * 1000:.2f} mm, max {res.max() * 1000:.2f} mm")
    out = {
        "description": "iBUG/Multi-PIE 68 landmarks as convex mixes of MediaPipe FaceMesh landmarks, derived on ICT-FaceKit "
        "Light's neutral head by examples/derive_ibug68_table.py (row i = iBUG point i, 0-based).",
        "indices": idx.tolist(),
        "weights": np.round(w, 4).tolist(),
        "residual_mm_on_ict": np.round(res * 1000, 2).tolist(),
    }
    # one row per line: readable diffs when the table is regenerated
    text = json.dumps(out, indent=1)
    for key in ("indices", "weights"):
        rows = ",\n  ".join(json.dumps(r) for r in out[key])
        text = text.replace(json.dumps({key: out[key]}, indent=1)[2:-2], f'"{key}": [\n  {rows}\n ]')
    json.loads(text)  # still valid JSON
    Path(a.out).write_text(text + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    main()
