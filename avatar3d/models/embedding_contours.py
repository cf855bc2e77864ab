"""Contour landmarks of the 478-point embedding: lips and eyelids stay on their own side.

MediaPipe's lip and eye contours lie on seams of the mesh (closed lips, lid margins), where a ray
cast from the detected pixel can land on the wrong lip or on the eyeball. These helpers move such
points onto the surface they belong to; :func:`avatar3d.models.embedding.compute_mediapipe_embedding`
calls them per view and once more on the result.
"""

from __future__ import annotations

import numpy as np

from .embedding_views import RaycastScene, View, embedding_points

#: MediaPipe's inner-lip contour, upper and lower halves, as vertically aligned pairs (corners 78/308 excluded).
UPPER_INNER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)
#: Other lip points (outer contour and the two rings between), which must stay on their own lip.
UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 184, 74, 73, 72, 11, 302, 303, 304, 408, 183, 42, 41, 38, 12, 268, 271, 272, 407)
#: Mouth-corner landmarks as (subject's right, subject's left) pairs: outer corner, the two rings, inner corner.
MOUTH_CORNER_PAIRS = ((61, 291), (76, 306), (62, 292), (78, 308))
#: Midline landmarks (nose tip and bridge, lips, chin) used to find the mesh's mirror plane.
MIDLINE = (1, 4, 5, 6, 168, 197, 195, 0, 13, 14, 17, 152)
LOWER_LIP = (146, 91, 181, 84, 17, 314, 405, 321, 375, 77, 90, 180, 85, 16, 315, 404, 320, 307, 96, 89, 179, 86, 15, 316, 403, 319, 325)
#: MediaPipe's eye contours (FACEMESH_LEFT_EYE / _RIGHT_EYE): upper lid, lower lid (corners excluded), corners.
UPPER_LID = (466, 388, 387, 386, 385, 384, 398, 246, 161, 160, 159, 158, 157, 173)
LOWER_LID = (249, 390, 373, 374, 380, 381, 382, 7, 163, 144, 145, 153, 154, 155)
EYE_CORNERS = (263, 362, 33, 133)


# ----------------------------------------------------------------------------- lips
def _local_components(v: np.ndarray, f: np.ndarray, centre: np.ndarray, radius: float) -> dict[int, int]:
    """Connected components (vertex id -> label) of the triangles touching the ball of ``radius`` around ``centre``.

    Near a closed mouth the upper and lower lips are separate sheets that touch (they connect only
    at the corners or through the mouth interior, both outside a small ball), so the labels tell
    the lips apart without knowing the rig.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    near = np.linalg.norm(v - centre, axis=1) < radius
    ff = f[near[f].any(1)]
    if len(ff) == 0:
        return {}
    ids, inv = np.unique(ff, return_inverse=True)
    e = inv.reshape(-1, 3)
    a = np.concatenate([e[:, 0], e[:, 1], e[:, 2]])
    b = np.concatenate([e[:, 1], e[:, 2], e[:, 0]])
    _, lab = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids))), directed=False)
    return dict(zip(ids.tolist(), lab.tolist()))


def snap_lips_to_their_side(v: np.ndarray, f: np.ndarray, scene: RaycastScene, view: View, det: np.ndarray, tri: np.ndarray,
                             bary: np.ndarray) -> np.ndarray:
    """Move lip landmarks onto the correct lip, in place (``tri``/``bary`` of one view's 478 hits).

    Returns (478,) bool: the inner-lip points whose seam this view resolved (the caller prefers
    these views for them).

    On a neutral head the mouth is closed and MediaPipe puts the upper and lower inner-lip points
    on the same seam line (within a pixel of each other, and on this kind of render a millimetre or
    two off the true seam), so their rays all hit one lip: the lower inner lip would then ride with
    the upper lip when the jaw opens, and the tracker could not see the mouth open. We scan a short
    vertical line of pixels through each inner-lip pair, label the hits by local mesh connectivity,
    and put the upper point on the last hit of the upper lip and the lower point on the first hit
    of the lower lip (the two sides of the seam, where the inner lip contour is once the mouth
    opens). Other lip points only move when their hit lies on the wrong lip.
    """

    snapped = np.zeros(len(tri), bool)
    iod = _eye_corner_distance(det)
    if not iod > 0:
        return snapped
    half = 0.05 * iod  # scan +-3 mm around the seam: a lip is ~8-10 mm high, a mouth corner >~8 mm away
    steps = np.arange(-half, half + 1e-9, max(0.25, half / 40))

    def scan(px: np.ndarray):
        p = np.stack([np.full_like(steps, px[0]), px[1] + steps], 1)
        t, b, _ = scene.cast(view.rays(p))
        return t, b

    def labels(t: np.ndarray, b: np.ndarray, centre: np.ndarray) -> np.ndarray:
        comp = _local_components(v, f, centre, radius=1.2 * half / view.focal * view.distance + 1e-4)
        return np.array([comp.get(int(f[k, 0]), -1) if k >= 0 else -1 for k in t])

    for up, lo in zip(UPPER_INNER_LIP, LOWER_INNER_LIP):
        t, b = scan(0.5 * (det[up] + det[lo]))
        ok = t >= 0
        if ok.sum() < 3:
            continue
        centre = embedding_points(v, f, t[ok], b[ok])[len(t[ok]) // 2]
        lab = labels(t, b, centre)
        first, last = lab[ok][0], lab[ok][-1]  # top of the scan: upper lip; bottom: lower lip
        if first < 0 or last < 0 or first == last:
            continue  # no seam found (e.g. a mesh with fused lips): keep MediaPipe's hits
        iu = np.flatnonzero(lab == first)[-1]
        il = np.flatnonzero(lab == last)[0]
        if iu < il:
            tri[up], bary[up] = t[iu], b[iu]
            tri[lo], bary[lo] = t[il], b[il]
            snapped[[up, lo]] = True
    # Points away from the seam: only fix hits on the wrong lip.
    for group, take_last in ((UPPER_LIP, True), (LOWER_LIP, False)):
        for k in group:
            if tri[k] < 0:  # no hit in this view: nothing to fix
                continue
            t, b = scan(det[k])  # centred on the point; the far end lies on the point's own lip
            ok = t >= 0
            if ok.sum() < 3:
                continue
            centre = embedding_points(v, f, t[ok], b[ok])[len(t[ok]) // 2]
            lab = labels(t, b, centre)
            own = lab[ok][0] if take_last else lab[ok][-1]  # the lip the point belongs to, away from the seam
            if own < 0:
                continue
            comp_k = lab[len(steps) // 2]  # the scan's middle pixel is the landmark itself
            if comp_k != own:
                side = np.flatnonzero(lab == own)
                j = side[-1] if take_last else side[0]
                tri[k], bary[k] = t[j], b[j]
    return snapped


def _eye_corner_distance(det: np.ndarray) -> float:
    """Pixels between the two eyes' corner midpoints of (478, 2) detections (a scale for the scans)."""
    return float(np.linalg.norm(det[[33, 133]].mean(0) - det[[263, 362]].mean(0)))


# ----------------------------------------------------------------------------- eyelids
def _eye_of(k: int) -> tuple[int, ...]:
    """The contour (upper, lower lid and corners) of the eye that landmark ``k`` belongs to."""
    left = (263, 362, *UPPER_LID[:7], *LOWER_LID[:7])  # MediaPipe's LEFT_EYE: the subject's left
    return left if k in left else tuple(i for i in (*EYE_CORNERS, *UPPER_LID, *LOWER_LID) if i not in left)


def snap_lids_off_eyeballs(scene: RaycastScene, view: View, det: np.ndarray, tri: np.ndarray, bary: np.ndarray, eyeball_tri: np.ndarray) -> None:
    """Move eye-contour landmarks whose hit lies on an eyeball onto their lid's margin, in place.

    MediaPipe's lid contour is the boundary between lid and eyeball, and a pixel inside it is enough
    for the ray to hit the eyeball: the point then follows the eye joint instead of the lid, and the
    tracker explains a blink by rolling the eyes. From the landmark we walk away from the eye opening
    (upper lid: up in the image, lower lid: down, corners: away from the eye's centre) and take the
    first pixel that hits something other than an eyeball: the margin of the point's own lid. A point
    with no lid within reach gets ``tri = -1`` (this view then gives no candidate for it).
    ``eyeball_tri``: (F,) bool triangles of the eyeballs (any vertex on one).
    """
    iod = _eye_corner_distance(det)
    if not iod > 0:
        return
    steps = np.arange(0.25, 0.12 * iod, 0.25)  # up to ~7 mm from the point: an open eye is ~10 mm high
    for group, dy in ((UPPER_LID, -1.0), (LOWER_LID, 1.0), (EYE_CORNERS, 0.0)):
        for k in group:
            if tri[k] < 0 or not eyeball_tri[tri[k]]:
                continue
            d = np.array([0.0, dy]) if dy else det[k] - det[list(_eye_of(k))].mean(0)
            d /= max(float(np.linalg.norm(d)), 1e-9)
            # A corner is where both lids meet, so the nearest lid may be above, below or outside it.
            turns = (0.0,) if dy else (0.0, -np.pi / 4, np.pi / 4, -np.pi / 2, np.pi / 2)
            best = (len(steps), -1, None)
            for a in turns:
                da = np.array([np.cos(a) * d[0] - np.sin(a) * d[1], np.sin(a) * d[0] + np.cos(a) * d[1]])
                t, b, _ = scene.cast(view.rays(det[k] + steps[:, None] * da))
                lid = np.flatnonzero((t >= 0) & ~eyeball_tri[np.maximum(t, 0)])  # misses (gaps) are skipped
                if len(lid) and lid[0] < best[0]:
                    best = (lid[0], t[lid[0]], b[lid[0]])
            tri[k] = best[1]
            if best[2] is not None:
                bary[k] = best[2]


def lids_off_eyeballs_by_proximity(v: np.ndarray, f: np.ndarray, ids: np.ndarray, eyeball_tri: np.ndarray, out_f: np.ndarray,
                                    out_b: np.ndarray) -> None:
    """Last resort, in place: an eye-contour point still on an eyeball goes to the closest lid surface point."""
    for k in (*UPPER_LID, *LOWER_LID, *EYE_CORNERS):
        if not eyeball_tri[out_f[k]]:
            continue
        q = embedding_points(v, f, out_f[k:k + 1], out_b[k:k + 1])
        near = ids[~eyeball_tri[ids] & (np.linalg.norm(v[f[ids]].mean(1) - q, axis=1) < 0.008)]
        if len(near) == 0:
            continue
        t, b = RaycastScene(v, f, near).closest(q)
        out_f[k], out_b[k] = t[0], b[0]


def symmetric_mouth_corners(v: np.ndarray, f: np.ndarray, ids: np.ndarray, out_f: np.ndarray, out_b: np.ndarray) -> None:
    """Make each left/right mouth-corner pair mirror images of each other, in place.

    The corners sit where the upper and lower lip blend into each other: a pixel up or down puts a
    point on the upper lip (no jaw motion) or on the lower lip (all of it), and MediaPipe's two
    corners rarely land on the same side, so one corner followed the jaw and the other did not. The
    pair's mean (one point mirrored across the head's mirror plane, found from the midline
    landmarks) is put back on the surface on both sides, which sits in the blend on both.
    """
    p = embedding_points(v, f, out_f, out_b)
    x0 = float(np.median(p[list(MIDLINE), 0]))
    mirror = lambda q: q * np.array([-1.0, 1.0, 1.0]) + np.array([2 * x0, 0.0, 0.0])  # noqa: E731
    cent = v[f[ids]].mean(1)
    for r, l in MOUTH_CORNER_PAIRS:
        m = 0.5 * (p[r] + mirror(p[l]))
        targets = np.stack([m, mirror(m)])
        # Snap onto triangles near the corners only, so a point never lands on a hidden layer.
        near = ids[np.linalg.norm(cent - targets[:, None], axis=-1).min(0) < 0.006]
        if len(near) == 0:
            continue
        tri, bary = RaycastScene(v, f, near).closest(targets)
        out_f[[r, l]], out_b[[r, l]] = tri, bary
