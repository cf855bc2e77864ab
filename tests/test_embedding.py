"""Landmark embeddings: ray-cast camera maths, MediaPipe embedding on ICT, iBUG-68 table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar3d.errors import Avatar3DError, BadInputError
from avatar3d.models import embedding as E


def _sphere(n: int = 24, r: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A UV sphere (V, 3), (F, 3) with outward-facing triangles."""
    th, ph = np.meshgrid(np.linspace(0.05, np.pi - 0.05, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False), indexing="ij")
    v = r * np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    m = 2 * n
    f = []
    for i in range(n - 1):
        for j in range(m):
            a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + j, (i + 1) * m + (j + 1) % m
            f += [[a, c, b], [b, c, d]]
    return v, np.array(f)


def test_rays_and_projection_agree():
    v, f = _sphere()
    for yaw, pitch in ((0, 0), (25, -10)):
        view = E.frame_view(v, yaw=yaw, pitch=pitch, size=128)
        r = E.render_view(v, f, view)
        assert r["image"].shape == (128, 128, 3) and (r["tri"] >= 0).mean() > 0.3
        # the surface point hit through a pixel projects back onto that pixel
        ys, xs = np.nonzero(r["tri"] >= 0)
        k = np.random.default_rng(0).choice(len(xs), 50, replace=False)
        px = np.stack([xs[k] + 0.5, ys[k] + 0.5], 1)
        p3 = E.embedding_points(v, f, r["tri"][ys[k], xs[k]], r["bary"][ys[k], xs[k]])
        np.testing.assert_allclose(E.project(p3, view), px, atol=1e-3)
        # and the visible hits are on the camera side of the sphere
        cam = view.rays(px[:1])[0, :3]
        assert np.all(np.linalg.norm(p3 - cam, axis=1) < np.linalg.norm(cam) + 1e-6)


def test_no_face_and_bad_shapes_are_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "cache_dir", lambda sub="": tmp_path)
    v, f = _sphere()
    with pytest.raises(Avatar3DError, match="no face"):
        E.compute_mediapipe_embedding(v, f, views=((0.0, 0.0),))
    with pytest.raises(BadInputError, match=r"\(V, 3\)"):
        E.compute_mediapipe_embedding(v[:, :2], f)
    with pytest.raises(BadInputError, match="478"):
        E.ibug68_from_mediapipe(np.zeros(10, int), np.zeros((10, 3)))


def test_ibug68_table_is_well_formed():
    d = json.loads(E.IBUG68_TABLE_PATH.read_text())
    idx, w = E.load_ibug68_table()
    assert idx.shape == w.shape and idx.shape[0] == 68
    assert idx.min() >= 0 and idx.max() < 468  # face points only, no iris
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w >= 0).all() and len(d["residual_mm_on_ict"]) == 68
    # symmetric points map to different MediaPipe points (eye corners, mouth corners)
    heavy = idx[np.arange(68), w.argmax(1)]
    assert len({heavy[36], heavy[45], heavy[48], heavy[54]}) == 4


# ----------------------------------------------------------------------------- on ICT (real data)
@pytest.fixture(scope="session")
def ict(ict_session):
    """(HeadModel, HeadModelData) of ICT, shared with test_ict.py (one extraction, one cache)."""
    return ict_session["model"], ict_session["data"]


def _render_and_detect(model, data, shape=None, expr=None, yaw=0.0):
    from avatar3d.models.ict import region_colors, render_face_mask

    with torch.no_grad():
        out = model(shape=shape, expression=expr)
    v = out.vertices[0].double().numpy()
    fm = render_face_mask(data)
    view = E.frame_view(data.v_template[data.faces[fm]].reshape(-1, 3), yaw=yaw)
    img = E.render_view(v, data.faces, view, vertex_colors=region_colors(data), face_mask=fm)["image"]
    det = E.detect_mediapipe(img)
    assert det is not None, "MediaPipe found no face on the ICT render"
    return E.project(out.landmarks[0].double().numpy(), view), det, img


def _nme(pred: np.ndarray, det: np.ndarray) -> float:
    """Mean error over the 478 points / inter-ocular distance (outer eye corners 33, 263)."""
    return float(np.linalg.norm(pred - det, axis=1).mean() / np.linalg.norm(det[33] - det[263]))


def test_ict_embedding_matches_mediapipe_on_renders(ict, out_dir):
    import cv2

    model, data = ict
    assert model.has_landmarks
    pred, det, img = _render_and_detect(model, data)
    nme = _nme(pred, det)
    # iris points: the geometric ones land on MediaPipe's iris estimate too
    iris = float(np.linalg.norm(pred[468:] - det[468:], axis=1).mean() / np.linalg.norm(det[33] - det[263]))
    g = torch.Generator().manual_seed(3)
    pred2, det2, img2 = _render_and_detect(model, data, torch.randn(1, 100, generator=g), model.expression_vector({"mouthSmile_L": 0.8, "mouthSmile_R": 0.8, "jawOpen": 0.3}))
    nme2 = _nme(pred2, det2)
    pred3, det3, _ = _render_and_detect(model, data, yaw=20.0)
    nme3 = _nme(pred3, det3)
    print(f"NME frontal {nme:.4f} (iris {iris:.4f}); random identity + smile/jawOpen {nme2:.4f}; yaw 20 {nme3:.4f}")
    for im, p, d, name in ((img, pred, det, "neutral"), (img2, pred2, det2, "smile")):
        im = im[:, :, ::-1].copy()
        for (x, y) in d:
            cv2.circle(im, (int(x), int(y)), 1, (0, 255, 0), -1)
        for (x, y) in p:
            cv2.circle(im, (int(x), int(y)), 1, (0, 0, 255), -1)
        cv2.imwrite(str(out_dir / f"ict_embedding_{name}.png"), im)
    assert nme < 0.02
    assert iris < 0.04
    assert nme2 < 0.04
    assert nme3 < 0.04


def test_ibug68_from_mediapipe_on_ict_matches_documented_vertices(ict):
    from avatar3d.models.ict import ICT_LMK68_VERTICES

    model, data = ict
    v = data.v_template.astype(np.float64)
    true = v[ICT_LMK68_VERTICES]
    f_snap, b_snap = E.ibug68_from_mediapipe(data.lmk_faces, data.lmk_bary, v, data.faces)
    f_fast, b_fast = E.ibug68_from_mediapipe(data.lmk_faces, data.lmk_bary)
    e_snap = np.linalg.norm(E.embedding_points(v, data.faces, f_snap, b_snap) - true, axis=1)
    e_fast = np.linalg.norm(E.embedding_points(v, data.faces, f_fast, b_fast) - true, axis=1)
    print(f"iBUG68 from MediaPipe on ICT: snapped mean {e_snap.mean() * 1000:.2f} mm, heaviest-point mean {e_fast.mean() * 1000:.2f} mm")
    inner = np.arange(17, 68)  # brows, nose, eyes, mouth: well defined in both schemes
    assert e_snap[inner].mean() < 0.002 and e_snap.mean() < 0.003
    assert e_fast[inner].mean() < 0.005
    np.testing.assert_allclose(b_snap.sum(1), 1.0, atol=1e-5)


def test_embedding_is_cached(ict):
    from avatar3d.models.ict import region_colors, render_face_mask

    _, data = ict
    eyes = [data.regions["eye_left"], data.regions["eye_right"]]
    import time

    t = time.perf_counter()
    lf, lb = E.compute_mediapipe_embedding(data.v_template, data.faces, vertex_colors=region_colors(data), eyeball_masks=eyes, face_mask=render_face_mask(data))
    assert time.perf_counter() - t < 2.0  # cache hit: no rendering / MediaPipe
    np.testing.assert_array_equal(lf, data.lmk_faces)


# ----------------------------------------------------------------------------- eyelids (issue #4)
EYE_CONTOUR = (*E.UPPER_LID, *E.LOWER_LID, *E.EYE_CORNERS)


def _lid_and_eyeball() -> tuple[np.ndarray, np.ndarray, int]:
    """A flat 'lid' sheet (z = 0, 40 x 40 mm) with a 20 x 8 mm eye opening, and an eyeball sphere behind it.

    Returns vertices (V, 3), faces (F, 3) and the number of lid triangles (the eyeball's come after)."""
    n, h = 80, 0.0005
    xs = np.arange(n + 1) * h - 0.02
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    v_lid = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    f = []
    for i in range(n):
        for j in range(n):
            cx, cy = xs[i] + h / 2, xs[j] + h / 2
            if abs(cx) < 0.01 and abs(cy) < 0.004:
                continue  # the eye opening
            a, b, c, d = i * (n + 1) + j, (i + 1) * (n + 1) + j, i * (n + 1) + j + 1, (i + 1) * (n + 1) + j + 1
            f += [[a, b, c], [b, d, c]]
    f_lid = np.array(f)
    v_eye, f_eye = _sphere(24, 0.012)
    v = np.vstack([v_lid, v_eye + [0.0, 0.0, -0.013]])  # eyeball front 1 mm behind the lid
    return v, np.vstack([f_lid, f_eye + len(v_lid)]), len(f_lid)


def test_lid_points_on_the_eyeball_snap_to_their_own_lid_margin():
    v, f, n_lid = _lid_and_eyeball()
    eyeball_tri = np.arange(len(f)) >= n_lid
    view = E.View(centre=(0.0, 0.0, 0.0), distance=0.3, focal=4000.0, width=400, height=400)
    p = np.full((478, 3), [0.5, 0.5, 0.0])  # off the mesh: rays miss, so those points are left alone
    # the right eye's contour just inside the opening (on the eyeball); 159 already on the lid skin
    for k in E.UPPER_LID[7:]:
        p[k] = (0.008 * np.sin(k), 0.0035, 0.0)
    for k in E.LOWER_LID[7:]:
        p[k] = (0.008 * np.sin(k), -0.0035, 0.0)
    p[159] = (0.0, 0.0047, 0.0)
    p[33], p[133] = (-0.0095, 0.0, 0.0), (0.0095, 0.0, 0.0)
    p[[263, 362]] = (0.07, 0.0, 0.0)  # the other eye, for the inter-ocular distance
    p[468] = (0.0, 0.0, 0.0)  # iris centre: on the eyeball, must stay
    det = E.project(p, view)
    scene = E.RaycastScene(v, f, np.arange(len(f)))
    tri, bary, _ = scene.cast(view.rays(det))
    before = tri.copy(), bary.copy()
    assert eyeball_tri[tri[[33, 133, 468, *E.UPPER_LID[7:], *E.LOWER_LID[7:]]]].sum() == 2 + 1 + 13  # 159 is on the lid
    E.snap_lids_off_eyeballs(scene, view, det, tri, bary, eyeball_tri)
    q = E.embedding_points(v, f, np.maximum(tri, 0), bary)
    for k in set(E.UPPER_LID[7:]) - {159}:
        assert not eyeball_tri[tri[k]] and 0.004 - 1e-6 <= q[k, 1] < 0.0045, (k, q[k])  # the upper margin, not past it
        assert abs(q[k, 0] - p[k, 0]) < 1e-4  # walked straight up
    for k in E.LOWER_LID[7:]:
        assert not eyeball_tri[tri[k]] and -0.0045 < q[k, 1] <= -0.004 + 1e-6, (k, q[k])
    for k, sx in ((33, -1), (133, 1)):  # corners: the nearest lid skin, outside the opening's end
        assert not eyeball_tri[tri[k]] and sx * q[k, 0] >= 0.01 - 1e-6 and np.linalg.norm(q[k, :2] - p[k, :2]) < 0.001
    assert tri[159] == before[0][159] and tri[468] == before[0][468]  # lid skin and iris untouched
    np.testing.assert_array_equal(tri[263], before[0][263])



def _on_eyeball(faces: np.ndarray, lmk_faces: np.ndarray, eye_left: np.ndarray, eye_right: np.ndarray) -> np.ndarray:
    return (eye_left | eye_right)[np.asarray(faces)[np.asarray(lmk_faces)]].any(1)


def test_builtin_eye_contours_are_on_the_lids_and_follow_blinks(builtin):
    m = builtin
    on_eye = _on_eyeball(m.faces.numpy(), m.lmk_faces.numpy(), m.region("eye_left").numpy(), m.region("eye_right").numpy())
    assert not on_eye[list(EYE_CONTOUR)].any(), [k for k in EYE_CONTOUR if on_eye[k]]
    assert on_eye[468:].all()  # iris points stay on the eyeballs
    with torch.no_grad():
        rest = m().landmarks[0].numpy()
        pose = torch.zeros(1, m.num_joints, 3)
        pose[0, [m.joint_names.index("eye_left"), m.joint_names.index("eye_right")], 0] = 0.3  # both eyes look down
        rolled = m(pose=pose).landmarks[0].numpy()
        for name, upper in (("eyeBlinkLeft", E.UPPER_LID[:7]), ("eyeBlinkRight", E.UPPER_LID[7:])):
            closed = m(expression=m.expression_vector({name: 1.0})).landmarks[0].numpy()
            drop = (rest[list(upper), 1] - closed[list(upper), 1]) * 1000
            # every upper-lid point closes with the lid (the lateral three did not move at all when
            # they sat on the eyeball); the ones near the inner corner move least
            assert drop.min() > 0.5 and np.sort(drop)[-5:].min() > 3.0, (name, np.round(drop, 2))
    moved = np.linalg.norm(rolled - rest, axis=1) * 1000
    assert moved[list(EYE_CONTOUR)].max() < 1e-3 and moved[468:].min() > 1.0  # eye rotation moves irises only


def test_ict_eye_contours_are_on_the_lids(ict):
    _, data = ict
    on_eye = _on_eyeball(data.faces, data.lmk_faces, data.regions["eye_left"], data.regions["eye_right"])
    assert not on_eye[list(EYE_CONTOUR)].any(), [k for k in EYE_CONTOUR if on_eye[k]]
    assert on_eye[468:].all()


def test_bad_eyeball_masks_are_one_sentence():
    v, f = _sphere()
    with pytest.raises(BadInputError, match="eyeball_masks must be two"):
        E.compute_mediapipe_embedding(v, f, eyeball_masks=[np.zeros(len(v), bool)])
    with pytest.raises(BadInputError, match="vertex masks"):
        E.compute_mediapipe_embedding(v, f, eyeball_masks=[np.zeros(3, bool), np.zeros(3, bool)])


def test_last_resort_moves_a_lid_point_to_the_closest_lid_skin():
    v, f, n_lid = _lid_and_eyeball()
    eyeball_tri = np.arange(len(f)) >= n_lid
    # an embedding with 159 on the eyeball's front (just behind the upper part of the opening)
    scene = E.RaycastScene(v, f, np.arange(n_lid, len(f)))
    t, b, _ = scene.cast(np.array([[0.0, 0.0035, 0.1, 0.0, 0.0, -1.0]]))
    out_f, out_b = np.full(478, n_lid), np.tile([1.0, 0.0, 0.0], (478, 1))
    out_f[0] = 0  # a non-contour point on the eyeball region is not touched
    out_f[159], out_b[159] = t[0], b[0]
    q0 = E.embedding_points(v, f, out_f[159:160], out_b[159:160])[0]
    E.lids_off_eyeballs_by_proximity(v, f, np.arange(len(f)), eyeball_tri, out_f, out_b)
    q = E.embedding_points(v, f, out_f[159:160], out_b[159:160])[0]
    assert not eyeball_tri[out_f[159]] and abs(q[2]) < 1e-9  # on the lid sheet
    assert np.linalg.norm(q - q0) < 0.002 and q[1] >= 0.004 - 1e-6  # the nearby upper margin
    assert out_f[0] == 0 and out_f[100] == n_lid
