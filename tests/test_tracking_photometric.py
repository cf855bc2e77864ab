"""Photometric refinement (issue #4 step 4): gradients move the geometry towards the truth on a
rendered head, and on real videos the refined fit beats the landmark-only fit fairly compared
(same appearance optimisation with geometry frozen) without hurting landmarks or stability."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avatar3d._tensor import f32
from avatar3d.errors import BadInputError
from avatar3d.models import load_head_model
from avatar3d.render.camera import project
from avatar3d.render.camera_builders import front_camera
from avatar3d.render.head import HeadRenderer, RasterCache, SubmeshPoser, white_sh
from avatar3d.tracking.fitting import project_landmarks
from avatar3d.tracking.metrics import jitter, nme
from avatar3d.tracking.photometric import PhotometricConfig, refine_photometric


def _synthetic(model, n: int = 6, size: int = 128):
    """Textured, SH-lit renders of the built-in head with known parameters (crop = render size)."""
    g = np.random.default_rng(1)
    E, J = model.num_expression, model.num_joints
    expr = np.zeros((n, E), np.float32)
    expr[:, model.expression_names.index("jawOpen")] = np.linspace(0.1, 0.5, n)
    pose = np.zeros((n, J, 3), np.float32)
    pose[:, 0, 1] = np.linspace(-0.2, 0.2, n)
    transl = np.zeros((n, 3), np.float32)
    focal = 1500.0 * size / 512
    K = np.repeat(np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1]], np.float32)[None], n, 0)
    w2c = front_camera(0.65).astype(np.float32)
    shape = np.zeros(model.num_shape, np.float32)
    sh = white_sh()
    sh[0] *= 0.9
    sh[2] = -0.25  # brighter towards the camera (OpenCV camera z points away from it)
    rend = HeadRenderer(model, f32(K), f32(w2c), size, size)
    with torch.no_grad():
        out = model(f32(shape)[None].expand(n, -1), f32(expr), f32(pose), f32(transl))
        img, alpha = rend.shade(rend.raster(out.vertices, np.arange(n)), f32(model.extras["albedo"]) / 255.0, sh)
    bg = torch.tensor([0.35, 0.45, 0.4])
    img = img + (1 - alpha) * bg  # antialiased over a plain background
    images = (img.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
    masks = (alpha[..., 0].numpy() > 0.5).astype(np.uint8) * 255
    lm = project(out.landmarks, f32(K), f32(w2c))[0].numpy()
    del g
    return dict(images=images, masks=masks, landmarks=lm, shape=shape, expression=expr, pose=pose, transl=transl, K=K, w2c=w2c,
                vertices=out.vertices.numpy())


def test_refinement_recovers_perturbed_geometry_from_pixels(builtin):
    """No landmark term: only the image can pull per-frame errors of pose, position and jaw back to the truth.

    The errors differ per frame (as a landmark fit's do): the shared albedo learns the consensus,
    and each frame's misalignment against it is what the refinement sees.
    """
    s = _synthetic(builtin, n=8)
    n = len(s["images"])
    g = np.random.default_rng(0)
    sign = lambda: np.where(g.random(n) < 0.5, -1.0, 1.0) * g.uniform(0.5, 1.0, n)  # noqa: E731
    pose, transl, expr = s["pose"].copy(), s["transl"].copy(), s["expression"].copy()
    pose[:, 0, 1] += 0.03 * sign()  # up to ~1.7 degrees of yaw
    transl[:, 0] += 0.003 * sign()
    transl[:, 1] += 0.002 * sign()
    expr[:, builtin.expression_names.index("jawOpen")] += 0.15 * sign()
    # No landmark, prior or temporal terms, no smoothing (the per-frame errors here are deliberately jittery).
    cfg = PhotometricConfig(resolution=128, texture_size=128, batch=n, appearance_epochs=1, epochs=4, iters_per_batch=4,
                            w_landmarks=0.0, w_temporal=0.0, w_expression_reg=0.0, w_rotation_reg=0.0, w_transl_reg=0.0,
                            lr_expression=0.02, lr_rotation=0.004, lr_transl=0.001, smooth_passes=0, baseline=False)
    pr = refine_photometric(builtin, s["images"], s["masks"], s["landmarks"], np.ones(n, bool), s["shape"], expr, pose, transl,
                            s["K"], s["w2c"], cfg)
    face = builtin.region("face").numpy()
    with torch.no_grad():
        v0 = builtin(f32(s["shape"])[None].expand(n, -1), f32(expr), f32(pose), f32(transl)).vertices.numpy()
        v1 = builtin(f32(s["shape"])[None].expand(n, -1), f32(pr.expression), f32(pr.pose), f32(pr.transl)).vertices.numpy()
    err0 = np.linalg.norm(v0[:, face] - s["vertices"][:, face], axis=-1).mean() * 1000
    err1 = np.linalg.norm(v1[:, face] - s["vertices"][:, face], axis=-1).mean() * 1000
    assert err1 < 0.6 * err0, (err0, err1)  # mm, face-region vertices (3.9 -> 2.0 when written)
    jaw = builtin.expression_names.index("jawOpen")
    jaw0, jaw1 = (np.abs(e[:, jaw] - s["expression"][:, jaw]).mean() for e in (expr, pr.expression))
    assert jaw1 < 0.7 * jaw0, (jaw0, jaw1)
    assert pr.error_refined < pr.error_landmark_only
    assert (pr.errors_refined < pr.errors_landmark_only).all()
    assert pr.albedo.shape == (128, 128, 3) and np.isfinite(pr.sh).all()


def _posed(model, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = torch.randn(model.num_shape, generator=g) * 0.5
    expr = torch.rand(n, model.num_expression, generator=g) * 0.4
    pose = torch.randn(n, model.num_joints, 3, generator=g) * 0.05
    pose[:, 0, 1] = torch.linspace(-0.5, 0.5, n)  # turned heads: silhouettes across the face
    transl = torch.randn(n, 3, generator=g) * 0.005
    return shape, expr, pose, transl


def _intrinsics(size: int, n: int) -> torch.Tensor:
    f = 1500.0 * size / 512
    return f32(np.repeat(np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]])[None], n, 0))


def _check_poser(model, size: int = 64, n: int = 3):
    shape, expr, pose, transl = _posed(model, n)
    K = _intrinsics(size, n)
    rend = HeadRenderer(model, K, f32(front_camera(0.65)), size, size)
    assert len(rend.vertex_ids) < model.num_vertices  # the back of the head and the teeth are not posed
    v, lmk = SubmeshPoser(model, rend.vertex_ids, shape)(expr, pose, transl)
    with torch.no_grad():
        out = model(shape[None].expand(n, -1), expr, pose, transl)
    assert torch.allclose(v, out.vertices[:, rend.vertex_ids], atol=1e-6)
    assert torch.allclose(lmk, out.landmarks, atol=1e-6)
    shuffled = rend.vertex_ids[torch.randperm(len(rend.vertex_ids), generator=torch.Generator().manual_seed(0))]
    v2 = SubmeshPoser(model, shuffled, shape)(expr, pose, transl)[0]  # any vertex order (skinning groups not contiguous)
    assert torch.allclose(v2, out.vertices[:, shuffled], atol=1e-6)
    return rend, out.vertices


def test_submesh_poser_matches_the_model(builtin):
    """The sub-mesh posing of the refinement is HeadModel.forward restricted to the drawn vertices."""
    rend, verts = _check_poser(builtin)
    # Normals through the sparse incidence matmul = render.shading.vertex_normals on the drawn triangles.
    from avatar3d.geometry import vertex_normals

    sub = verts[:, rend.vertex_ids]
    ref = vertex_normals(sub, rend.faces) @ rend.w2c[:3, :3].T
    used = torch.unique(rend.faces)
    assert torch.allclose(rend.normals(verts)[:, used], ref[:, used], atol=1e-5)


def test_submesh_poser_handles_pose_correctives_and_expression_joints(builtin):
    """FLAME-style options the built-in head and ICT lack: pose correctives, joints regressed after the expression blend."""
    from avatar3d.models.base import HeadModel, HeadModelData

    m = builtin
    J, V = m.num_joints, m.num_vertices
    g = np.random.default_rng(0)
    arr = lambda t: t.detach().numpy()  # noqa: E731
    data = HeadModelData(
        name="flame_like", version="test", v_template=arr(m.v_template), faces=arr(m.faces), uvs=arr(m.uvs), uv_faces=arr(m.uv_faces),
        shapedirs=arr(m.shapedirs), exprdirs=arr(m.exprdirs), expression_names=m.expression_names, joint_names=m.joint_names,
        parents=arr(m.parents), j_regressor=arr(m.j_regressor), lbs_weights=arr(m.lbs_weights),
        posedirs=(g.standard_normal(((J - 1) * 9, V * 3)) * 1e-3).astype(np.float32),
        regions={k: arr(m.region(k)) for k in m.region_names}, lmk_faces=arr(m.lmk_faces), lmk_bary=arr(m.lmk_bary),
        expression_range=m.expression_range, joints_from_expression=True)
    _check_poser(HeadModel(data))


def test_submesh_poser_matches_the_ict_model(ict_archive):
    _check_poser(load_head_model(f"ict={ict_archive}"))


def test_cached_frozen_geometry_shades_like_the_renderer(builtin):
    """RasterCache passes (SH basis kept, antialiasing as a sparse linear map) give the images and
    albedo/lighting gradients of a fresh rasterize -> antialias pass, also after forget()."""
    n, size = 4, 64
    shape, expr, pose, transl = _posed(builtin, n, seed=1)
    K = _intrinsics(size, n)
    rend = HeadRenderer(builtin, K, f32(front_camera(0.65)), size, size)
    poser = SubmeshPoser(builtin, rend.vertex_ids, shape)
    state = {"expr": expr}
    verts_fn = lambda idx: poser(state["expr"][idx], pose[idx], transl[idx])[0]  # noqa: E731
    cache = RasterCache(rend, verts_fn, n)
    g = torch.Generator().manual_seed(2)
    tex = torch.rand(32, 32, 3, generator=g)
    sh = white_sh() + 0.2 * torch.randn(9, 3, generator=g)
    target = torch.rand(2, size, size, 3, generator=g)

    def image_and_grads(ras):
        t, s = tex.clone().requires_grad_(True), sh.clone().requires_grad_(True)
        img, alpha = rend.shade(ras, t, s)
        ((img - target) ** 2).sum().add(alpha.sum()).backward()
        return img.detach(), alpha.detach(), t.grad, s.grad

    for idx in (np.arange(1, 3), np.array([0, 3]), np.arange(1, 3)):  # fill, gather, then stored views
        with torch.no_grad():
            fresh = rend.raster(verts_fn(idx), idx)
        want, got = image_and_grads(fresh), image_and_grads(cache(idx))
        assert (want[1] > 0).any() and (want[1] < 1).any()  # antialiased edges present
        for w, c in zip(want, got):
            assert torch.allclose(w, c, atol=2e-5), float((w - c).abs().max())
    state["expr"] = expr * 0 + 0.8  # new geometry for frame 1 only once forgotten
    assert torch.equal(cache(np.arange(1, 3))["rast"], cache(np.arange(1, 3))["rast"])
    before = cache(np.arange(1, 2))["rast"].clone()
    cache.forget(np.array([1]))
    after = cache(np.arange(1, 2))["rast"]
    assert not torch.equal(before, after)
    with torch.no_grad():
        assert torch.equal(after, rend.raster(verts_fn(np.arange(1, 2)), np.arange(1, 2))["rast"])


def test_bad_inputs_raise_one_clear_error(builtin):
    s = _synthetic(builtin, n=3, size=64)
    args = [builtin, s["images"], s["masks"], s["landmarks"], np.ones(3, bool), s["shape"], s["expression"], s["pose"], s["transl"],
            s["K"], s["w2c"]]
    bad = list(args)
    bad[2] = s["masks"][:2]
    with pytest.raises(BadInputError, match="masks"):
        refine_photometric(*bad)
    bad = list(args)
    bad[6] = s["expression"][:, :5]
    with pytest.raises(BadInputError, match="expression"):
        refine_photometric(*bad)
    with pytest.raises(ValueError, match="resolution"):
        refine_photometric(*args, PhotometricConfig(resolution=0))
    with pytest.raises(BadInputError, match="region"):
        refine_photometric(*args, PhotometricConfig(region="nose_hair"))


def _real_clip(video, tmp_path, frames: int, fps: float):
    from avatar3d.capture.stage import run_capture

    cap = run_capture(video, tmp_path, fps=fps, max_frames=frames, progress=False)
    imgs = np.stack([cv2.imread(str(tmp_path / "images" / f"{n}.png"))[..., ::-1] for n in cap.names])
    masks = np.stack([cv2.imread(str(tmp_path / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) for n in cap.names])
    return cap, imgs, masks


def _check_real_video(model, video, clip_dir, out_dir, frames: int, fps: float) -> None:
    """Fair comparison on a real clip: lower masked image error than the baseline, landmark NME and
    jitter not worse than the landmark fit by more than small margins."""
    from avatar3d.tracking.fitting import CropCameras, fit_landmarks

    cap, imgs, masks = _real_clip(video, clip_dir, frames, fps)
    fit = fit_landmarks(model, cap.landmarks, cap.valid, CropCameras(cap.boxes, cap.source_size, cap.resolution), progress=False)
    pr = refine_photometric(model, imgs, masks, cap.landmarks, cap.valid, fit.shape, fit.expression, fit.pose, fit.transl, fit.K,
                            fit.world_to_cam, PhotometricConfig())
    lm = project_landmarks(model, fit.shape, pr.expression, pr.pose, pr.transl, fit.K, fit.world_to_cam)
    # Fair baseline: same appearance optimisation (own albedo + SH), geometry frozen at the landmark fit.
    n0, n1 = nme(fit.landmarks, cap.landmarks, cap.valid), nme(lm, cap.landmarks, cap.valid)
    j0, j1 = jitter(fit.landmarks), jitter(lm)
    print(f"{video.stem} {model.name}: image error {pr.error_landmark_only:.3f} -> {pr.error_refined:.3f} grey levels, "
          f"{np.mean(pr.errors_refined < pr.errors_landmark_only):.0%} frames better, NME {n0:.4f} -> {n1:.4f}, jitter {j0:.3f} -> {j1:.3f}")
    assert pr.baseline_albedo is not None and not pr.fallback
    assert pr.error_refined < 0.995 * pr.error_landmark_only, (pr.error_landmark_only, pr.error_refined)
    # Most frames gain (measured: d3 7 of 12 built-in, d13 92%, ICT d13 88%). Since the landmark fit uses the
    # detector correction, d3's built-in fit leaves less to the pixels (was 100% with the table alone); with the
    # focal no longer pinned at 2.00x the long side d3 went from 8 to 7 of 12: its first frame is 0.0002 grey
    # levels worse than its baseline (5.0524 vs 5.0522), the mean error gain is unchanged (5.875 -> 5.829).
    assert np.mean(pr.errors_refined < pr.errors_landmark_only) >= 0.55
    assert 1.0 < pr.error_refined < 30.0  # grey levels on face pixels: a real fit, not a degenerate one
    assert n1 < n0 + 0.003, (n0, n1)  # at most +0.3 % of the inter-ocular distance
    assert j1 < 1.1 * j0 + 0.05
    assert np.abs(pr.expression - fit.expression).max() < 0.15 and np.abs(pr.pose - fit.pose).max() < 0.03
    cv2.imwrite(str(out_dir / f"photometric_albedo_{video.stem}_{model.name}.png"), (pr.albedo[..., ::-1] * 255).astype(np.uint8))


@pytest.mark.parametrize("video", ["d3", "d13"])
def test_refinement_beats_landmark_only_on_real_video(video, videos_dir, tmp_path, out_dir, builtin):
    """Built-in head, 12 frames at 5 fps."""
    _check_real_video(builtin, videos_dir / f"{video}.mp4", tmp_path, out_dir, 12, 5.0)


def test_ict_refinement_beats_landmark_only_on_real_video(videos_dir, ict_archive, tmp_path, out_dir):
    """ICT head on d13, 24 frames at 10 fps: on 12-16 frame clips at 5 fps ICT's refinement wins little
    or loses to the baseline on d3 (measured -0.4% on d13, +0.7% on d3 -> fallback, before and after the
    speed work alike); at 24 frames it wins 3-4% on both (d13 -4.4%, d3 -3.3%)."""
    _check_real_video(load_head_model(f"ict={ict_archive}"), videos_dir / "d13.mp4", tmp_path, out_dir, 24, 10.0)


def test_track_command_with_photometric_writes_refined_outputs(videos_dir, tmp_path):
    """`avatar3d track --photometric` end to end: refined params with lighting, albedo, metrics."""
    from avatar3d.data.sequence import TrackedSequence
    from avatar3d.tracking.pipeline import TrackOptions, track

    out = tmp_path / "trk"
    s = track(videos_dir / "d3.mp4", out, TrackOptions(model="builtin", max_frames=8, overlay=False, photometric=True, progress=False))
    m = s if "photometric_error_refined" in s else s.get("summary", s)
    assert m["photometric_resolution"] == PhotometricConfig().resolution
    assert m["photometric_error_refined"] <= m["photometric_error_landmark_only"]  # the fallback guarantees it
    seq = TrackedSequence.load(out)
    assert seq.num_frames == 8 and seq.lighting is not None and np.isfinite(seq.lighting).all()
    albedo = cv2.imread(str(out / "albedo.png"))
    assert albedo is not None and albedo.std() > 5  # a real texture, not a flat fill
