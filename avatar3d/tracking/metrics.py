"""Landmark error and jitter measures used by the tracker, its tests and benchmarks."""

from __future__ import annotations

import numpy as np

from ..capture.landmarks import interocular

__all__ = ["landmark_errors", "nme", "region_nme", "REGIONS", "jitter", "expression_saturation", "similarity_align", "rms_after_similarity", "compare_to_ground_truth"]


def landmark_errors(fitted: np.ndarray, detected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mean landmark distance, in pixels and divided by the detection's inter-ocular distance.

    Args:
        fitted, detected: (N, P, ≥2) pixel landmarks (MediaPipe order, P = 478).
    Returns:
        (N,) pixel errors and (N,) normalised errors (NME).
    """
    d = np.linalg.norm(np.asarray(fitted)[..., :2] - np.asarray(detected)[..., :2], axis=-1).mean(-1)
    return d, d / np.maximum(interocular(np.asarray(detected)), 1e-6)


def nme(fitted: np.ndarray, detected: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean NME over (valid) frames: mean fitted-vs-detected distance / inter-ocular distance."""
    _, n = landmark_errors(fitted, detected)
    if valid is not None:
        n = n[np.asarray(valid, bool)]
    return float(n.mean()) if len(n) else float("nan")


#: MediaPipe face-mesh regions (its FACEMESH_* connection sets): ``jaw`` is the face oval below the eyes, from
#: ear to ear through the chin. Its points are silhouette points (they slide along the cheek's outline as the
#: head turns, :mod:`avatar3d.models.embedding_contours`) where the others are fixed on the skin, so its error
#: is reported apart from the rest (issue #17: 2.6-5.1% against 0.4-1.0% for eyes and mouth).
REGIONS: dict[str, tuple[int, ...]] = {
    "jaw": (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454),
    "eyes": (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246, 249, 263, 362, 373, 374, 380, 381, 382,
             384, 385, 386, 387, 388, 390, 398, 466, *range(468, 478)),
    "brows": (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336),
    "nose": (1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440),
    "mouth": (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270, 291, 308,
              310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
}


def region_nme(fitted: np.ndarray, detected: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Mean NME per face region (:data:`REGIONS`) over (valid) frames: {region: mean distance / inter-ocular distance}.

    Args:
        fitted, detected: (N, 478, ≥2) pixel landmarks.
    """
    f, d = np.asarray(fitted)[..., :2], np.asarray(detected)[..., :2]
    keep = np.ones(len(d), bool) if valid is None else np.asarray(valid, bool)
    if not keep.any():
        return {k: float("nan") for k in REGIONS}
    iod = np.maximum(interocular(d[keep]), 1e-6)
    dist = np.linalg.norm(f[keep] - d[keep], axis=-1)  # (n, P)
    return {k: float((dist[:, list(idx)].mean(1) / iod).mean()) for k, idx in REGIONS.items()}


def jitter(points: np.ndarray) -> float:
    """Mean acceleration magnitude |p[t+1] - 2 p[t] + p[t-1]| of (N, P, D) tracks (their units / frame²).

    0 for fewer than three frames."""
    p = np.asarray(points, np.float64)
    if len(p) < 3:
        return 0.0
    return float(np.linalg.norm(p[2:] - 2 * p[1:-1] + p[:-2], axis=-1).mean())


def similarity_align(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama: the (P, 3) ``src`` after the scale + rotation + translation best matching ``dst``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    s = np.trace(np.diag(S) @ D) / (a ** 2).sum(1).mean()
    return s * a @ R.T + mu_d


def rms_after_similarity(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS distance between (P, 3) point sets after similarity-aligning ``src`` to ``dst``."""
    return float(np.sqrt(((similarity_align(src, dst) - dst) ** 2).sum(1).mean()))


def compare_to_ground_truth(model, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, transl: np.ndarray, truth: dict,
                            region: str = "face") -> dict:
    """Fitted parameters against a rendered ground truth (:func:`avatar3d.synthetic.video.render_sequence`).

    Args:
        model: the :class:`HeadModel` both were made with. shape (S,), expression (N, E), pose (N, J, 3),
            transl (N, 3): the fit. truth: the dict ``render_sequence`` returned.
    Returns:
        dict with ``rms_mm`` (N,) per-frame vertex RMS of ``region`` after similarity alignment (mm),
        ``rms_all_mm`` (RMS over all frames), ``worst_frame``, ``identity_rms_mm`` (neutral fitted vs
        true identity, similarity-aligned), ``corr`` {expression name: Pearson r over frames} for the
        animated expressions (NaN where the fit is constant), ``best_match`` {name: (fitted expression
        correlating best with its true curve, r)}, which shows where an expression the fit missed went.
    """
    import torch  # lazily: the landmark measures above are numpy only

    from .._tensor import f32

    n = len(expression)
    mask = model.region(region).numpy()
    with torch.no_grad():
        fv = model(f32(shape)[None].expand(n, -1), f32(expression), f32(pose), f32(transl)).vertices.numpy()
        a = model(f32(shape)[None]).vertices[0].numpy()
        b = model(f32(truth["shape"])[None]).vertices[0].numpy()
    rms = np.array([rms_after_similarity(fv[i][mask], truth["vertices"][i][mask]) for i in range(n)]) * 1000
    def r(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x, y)[0, 1]) if x.std() > 1e-9 and y.std() > 1e-9 else float("nan")

    ex, tr = np.asarray(expression), np.asarray(truth["expression"])
    corr, best = {}, {}
    for e in truth["animated"]:
        name = model.expression_names[e]
        corr[name] = r(ex[:, e], tr[:, e])
        rs = np.array([r(ex[:, k], tr[:, e]) for k in range(ex.shape[1])])
        k = int(np.nanargmax(np.where(np.isnan(rs), -np.inf, rs)))
        best[name] = (model.expression_names[k], float(rs[k]))
    return dict(rms_mm=rms, rms_all_mm=float(np.sqrt((rms**2).mean())), worst_frame=int(np.argmax(rms)),
                identity_rms_mm=float(rms_after_similarity(a[mask], b[mask]) * 1000), corr=corr, best_match=best)


def expression_saturation(expression: np.ndarray, names: list[str], upper: float, high: float = 0.9,
                          bound_tol: float = 0.02) -> dict:
    """How often a fit's expression coefficients are large or pinned at their upper bound.

    A low landmark error is not enough for animation: a neutral performance fitted with coefficients at
    their bound plays back as a grimace. These measures make that visible in ``metrics.json``.

    Args:
        expression: (N, E) fitted coefficients. names: E expression names. upper: the model's upper bound
            (``HeadModel.expression_range[1]``; an infinite bound uses ``high`` alone).
        high: what counts as a large coefficient. bound_tol: within this of ``upper`` counts as at the bound.
    Returns:
        ``expression_frames_any_above``: share of frames with any coefficient >= ``high``;
        ``expression_most_at_bound``: the coefficient most often at its bound and that share of frames;
        ``expression_any_at_bound_share``: share of frames with any coefficient at its bound.
    """
    e = np.asarray(expression, np.float64)
    if e.ndim != 2 or e.shape[0] == 0 or e.shape[1] == 0:
        return {}
    at_bound = e >= upper - bound_tol if np.isfinite(upper) else np.zeros_like(e, bool)
    share = at_bound.mean(0)
    k = int(np.argmax(share))
    return {
        "expression_frames_any_above": {"threshold": high, "share": float((e >= high).any(1).mean())},
        "expression_most_at_bound": {"name": names[k] if k < len(names) else str(k), "share": float(share[k])},
        "expression_any_at_bound_share": float(at_bound.any(1).mean()),
    }
