"""Landmark fitting on a synthetic head (known parameters), camera conventions, output files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from avatar3d.models.lbs import batch_rodrigues
from avatar3d.render.camera import cv_to_gl_c2w, project
from avatar3d.render.camera_builders import front_camera, look_at_world_to_cam
from avatar3d.synthetic.toy_head import make_toy_head, toy_sequence
from avatar3d.tracking.fitting import CropCameras, FitConfig, fit_landmarks
from avatar3d.tracking.landmark_model import LandmarkHead, project_points, projected_landmark_loss
from avatar3d.tracking.metrics import jitter, nme, rms_after_similarity
from avatar3d.tracking.outputs import write_metrics, write_transforms


def f32(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


@pytest.fixture(scope="module")
def toy():
    return make_toy_head()


def test_front_camera_sees_an_upright_face(toy, out_dir):
    K = f32([[1000, 0, 255.5], [0, 1000, 255.5], [0, 0, 1]])
    w2c = f32(front_camera(0.6))
    out = toy()
    uv, z = project(out.vertices, K, w2c)
    uv, z = uv[0].numpy(), z[0].numpy()
    v = out.vertices[0].numpy()
    assert (z > 0.4).all() and (z < 0.8).all()
    top, chin = np.argmax(v[:, 1]), np.argmin(v[:, 1])
    assert uv[top, 1] < 200 < 300 < uv[chin, 1]  # +Y up -> smaller image rows
    lm, _ = project(out.landmarks, K, w2c)
    lm = lm[0].numpy()
    assert lm[33, 0] < lm[263, 0]  # subject's right eye (-X) on the image's left, like a photo
    # The camera centre of the OpenGL camera-to-world is where we put it, looking down -Z.
    c2w = cv_to_gl_c2w(front_camera(0.6))
    assert np.allclose(c2w[:3, 3], [0, 0, 0.6]) and np.allclose(c2w[:3, 2], [0, 0, 1])
    assert np.allclose(look_at_world_to_cam(np.array([0, 0, 0.6]), np.zeros(3)), front_camera(0.6))
    img = np.zeros((512, 512, 3), np.uint8)
    for p in uv.astype(int):
        cv2.circle(img, tuple(p), 1, (128, 128, 128), -1)
    for i, col in ((33, (0, 0, 255)), (263, (255, 0, 0))):
        cv2.circle(img, tuple(lm[i].astype(int)), 5, col, -1)
    cv2.imwrite(str(out_dir / "camera_convention_toy.png"), img)


def test_landmark_head_matches_full_forward(toy):
    seq = toy_sequence(toy, 6)
    lh = LandmarkHead(toy, extra_vertices=torch.arange(0, toy.num_vertices, 97))
    lm, ex = lh(f32(seq["shape"]), f32(seq["expression"]), f32(seq["pose"]), f32(seq["transl"]))
    ref = toy(f32(seq["shape"])[None].expand(6, -1), f32(seq["expression"]), f32(seq["pose"]), f32(seq["transl"]))
    assert torch.allclose(ex, ref.vertices[:, ::97], atol=1e-6)
    # Landmarks blend skinning weights inside a triangle: sub-millimetre even on this coarse mesh.
    assert (lm - ref.landmarks).norm(dim=-1).max() < 5e-4
    # Pose correctives (FLAME has them; the toy head does not): random ones, ~1 cm per radian.
    posed = make_toy_head()
    posed.posedirs = 0.01 * torch.randn(9 * (posed.num_joints - 1), 3 * posed.num_vertices, generator=torch.Generator().manual_seed(0))
    _, ex = LandmarkHead(posed, extra_vertices=torch.arange(0, toy.num_vertices, 97))(
        f32(seq["shape"]), f32(seq["expression"]), f32(seq["pose"]), f32(seq["transl"]))
    ref2 = posed(f32(seq["shape"])[None].expand(6, -1), f32(seq["expression"]), f32(seq["pose"]), f32(seq["transl"]))
    assert torch.allclose(ex, ref2.vertices[:, ::97], atol=1e-6) and not torch.allclose(ex, ref.vertices[:, ::97], atol=1e-4)


def test_fused_landmark_term_matches_autograd(toy):
    """The fitting's fused landmark term: same pixels as LandmarkHead + project, same value and gradients as autograd."""
    N = 5
    seq = toy_sequence(toy, N, focal=1300.0, noise_px=1.0, seed=1)
    head = LandmarkHead(toy).double()
    d = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    shape, w2c = d(seq["shape"]), d(front_camera(0.6))
    pose = d(seq["pose"]) + 0.05 * torch.randn(N, toy.num_joints, 3, dtype=torch.float64)  # every joint rotated
    K = d(CropCameras(np.array([[0, 0, 512]] * N), (512, 512), 512).K(1300.0))
    f, pp = K[:, 0, 0], K[:, :2, 2]
    R = batch_rodrigues(pose.reshape(-1, 3)).view(N, -1, 3, 3)
    v = head.rest_points(shape, d(seq["expression"]), R).requires_grad_(True)
    A = head.camera_transforms(shape, R, d(seq["transl"]), w2c).requires_grad_(True)
    uv = project_points(v, A, f, pp, head.weights_t)
    ref, _ = project(head(shape, d(seq["expression"]), pose, d(seq["transl"]))[0], K, w2c)
    assert (uv - ref).abs().max() < 1e-4  # pixels
    target, w = d(seq["landmarks"]), torch.rand(uv.shape[1], dtype=torch.float64)
    args = (pp, target.transpose(1, 2).contiguous(), head.weights_t, w, 1 / 60.0, 0.01)
    fused = projected_landmark_loss(v, A, f, *args)
    r2 = ((uv - target) ** 2).sum(-1) / 60.0**2
    plain = ((torch.sqrt(r2 + 0.01**2) - 0.01) * w).sum(-1)  # the pseudo-Huber term of fitting.py, autograd
    assert torch.allclose(fused, plain, rtol=1e-10) and fused.min() > 0
    gw = torch.rand(N, dtype=torch.float64)
    g_fused = torch.autograd.grad((fused * gw).sum(), (v, A))
    g_plain = torch.autograd.grad((plain * gw).sum(), (v, A))
    for a, b in zip(g_fused, g_plain):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12) and b.abs().max() > 0
    fc = f.clone().requires_grad_(True)  # and the focal length (fitted when there is no focal search)
    assert torch.autograd.gradcheck(lambda f_: projected_landmark_loss(v.detach(), A.detach(), f_, *args), (fc,))


def test_fit_recovers_synthetic_parameters(toy):
    N = 40
    seq = toy_sequence(toy, N, focal=1400.0, noise_px=0.5, seed=3)
    valid = np.ones(N, bool)
    valid[[12, 13, 27]] = False  # failed detections: no data, filled by the temporal terms
    lm = seq["landmarks"].copy()
    lm[~valid] = 0.0
    from avatar3d.capture.crop import interpolate_invalid

    lm = interpolate_invalid(lm, valid).astype(np.float32)
    cams = CropCameras(np.array([[0, 0, 512]] * N), (512, 512), 512)
    res = fit_landmarks(toy, lm, valid, cams, progress=False)
    assert nme(res.landmarks, seq["landmarks"], valid) < 0.01
    assert abs(res.focal / 1400.0 - 1) < 0.2, res.focal  # estimated, starting from a 512 px guess
    with torch.no_grad():
        out = toy(f32(res.shape)[None].expand(N, -1), f32(res.expression), f32(res.pose), f32(res.transl))
    face = toy.region("face").numpy()
    rms = [rms_after_similarity(out.vertices[i].numpy()[face], seq["vertices"][i][face]) for i in range(N)]
    assert max(rms) < 0.002, f"face vertices {max(rms) * 1000:.2f} mm RMS"
    corr = [np.corrcoef(res.expression[:, e], seq["expression"][:, e])[0, 1] for e in range(toy.num_expression)]
    assert min(corr) > 0.9, corr
    # Interpolated frames land near the truth too (the true motion is smooth).
    gt_uv = seq["landmarks"]
    assert np.abs(res.landmarks[~valid] - gt_uv[~valid]).mean() < 3.0
    assert jitter(res.landmarks) < jitter(seq["landmarks"])
    assert res.expression.min() >= 0 and res.expression.max() <= 1  # valid blendshape range


def test_fit_single_frame_and_bad_valid(toy):
    seq = toy_sequence(toy, 1, noise_px=0.3)
    cams = CropCameras(np.array([[0, 0, 512]]), (512, 512), 512)
    res = fit_landmarks(toy, seq["landmarks"], np.ones(1, bool), cams, FitConfig(iters_rigid=30, iters_full=80), progress=False)
    assert res.expression.shape == (1, toy.num_expression) and nme(res.landmarks, seq["landmarks"]) < 0.02
    with pytest.raises(ValueError, match="at least one True"):
        fit_landmarks(toy, seq["landmarks"], np.zeros(1, bool), cams, progress=False)


def test_transforms_json_reproduces_the_projection(tmp_path, toy):
    N = 3
    seq = toy_sequence(toy, N, noise_px=0.0)
    boxes = np.array([[10, -5, 400], [12, -4, 400], [14, -3, 400]])
    cams = CropCameras(boxes, (640, 480), 512)
    K = cams.K(900.0).numpy()
    w2c = front_camera(0.6)
    names = ["a", "b", "c"]
    write_transforms(tmp_path / "transforms.json", K, w2c, names, 512, 512, head_rotation=seq["pose"][:, 0],
                     head_translation=seq["transl"], head_pivot=toy.j_regressor[0].numpy() @ toy(f32(seq["shape"])[None]).vertices_unposed[0].numpy())
    data = json.loads((tmp_path / "transforms.json").read_text())
    assert len(data["frames"]) == N and data["frames"][1]["file_path"] == "images/b.png"
    X = toy(f32(seq["shape"])[None].expand(N, -1), f32(seq["expression"]), f32(seq["pose"]), f32(seq["transl"])).landmarks.numpy()
    uv_ref, _ = project(f32(X), f32(K), f32(w2c))
    for i, fr in enumerate(data["frames"]):
        c2w = np.array(fr["transform_matrix"])
        # NeRF convention: camera looks down its -Z, +Y up; pixel centres at +0.5.
        cam = (X[i] - c2w[:3, 3]) @ c2w[:3, :3]
        u = fr["fl_x"] * cam[:, 0] / -cam[:, 2] + fr["cx"] - 0.5
        v = -fr["fl_y"] * cam[:, 1] / -cam[:, 2] + fr["cy"] - 0.5
        assert np.allclose(np.stack([u, v], 1), uv_ref[i].numpy(), atol=1e-3)
        # Head-relative camera: the same pixels from the canonical (unposed) head.
        rest = toy(f32(seq["shape"])[None], f32(seq["expression"][i : i + 1]), f32(seq["pose"][i : i + 1]) * f32([0, 1, 1, 1, 1])[:, None]).landmarks[0].numpy()
        ch = np.array(fr["transform_matrix_head"])
        cam = (rest - ch[:3, 3]) @ ch[:3, :3]
        u2 = fr["fl_x"] * cam[:, 0] / -cam[:, 2] + fr["cx"] - 0.5
        assert np.allclose(u2, u, atol=1e-2)


def test_metrics_json(tmp_path):
    rng = np.random.default_rng(0)
    det = rng.uniform(100, 400, (5, 478, 2))
    det[:, 33], det[:, 133], det[:, 263], det[:, 362] = (150, 200), (190, 200), (350, 200), (310, 200)  # IOD 160
    fit = det + np.array([3.0, 4.0])  # 5 px everywhere
    s = write_metrics(tmp_path / "m.json", fit, det, np.array([1, 1, 0, 1, 1], bool), list("abcde"), {"fit": 1.0})
    assert s["failures"] == 1 and s["failed_frames"] == ["c"]
    assert s["error_px_mean"] == pytest.approx(5.0) and s["nme_mean"] == pytest.approx(5.0 / 160)
    per = json.loads((tmp_path / "m.json").read_text())["per_frame"]
    assert len(per) == 5 and per[2]["valid"] is False


def test_expression_saturation_counts_large_and_pinned_coefficients():
    from avatar3d.tracking.metrics import expression_saturation

    e = np.zeros((10, 3))
    e[:4, 1] = 1.0  # "b" pinned at the bound in 4 of 10 frames
    e[4, 2] = 0.95  # "c" large once, not at the bound
    s = expression_saturation(e, ["a", "b", "c"], upper=1.0)
    assert s["expression_frames_any_above"] == {"threshold": 0.9, "share": 0.5}
    assert s["expression_most_at_bound"] == {"name": "b", "share": 0.4}
    assert s["expression_any_at_bound_share"] == 0.4
    unbounded = expression_saturation(e, ["a", "b", "c"], upper=float("inf"))  # FLAME-like: no bound, only "large"
    assert unbounded["expression_any_at_bound_share"] == 0.0 and unbounded["expression_frames_any_above"]["share"] == 0.5
    assert expression_saturation(np.zeros((0, 3)), ["a", "b", "c"], 1.0) == {}
