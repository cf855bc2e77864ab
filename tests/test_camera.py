"""The one camera (avatar3d.render.camera.Camera) and its builders: projection, clip space, rays, crops,
resolution changes and the OpenGL pose agree with each other and with the formulas they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.errors import BadInputError
from avatar3d.render.camera import (
    Camera,
    crop_intrinsics,
    cv_to_gl_c2w,
    intrinsics_from_fov,
    look_at,
    opencv_intrinsics,
    project,
    raster_intrinsics,
    scale_intrinsics,
)
from avatar3d.render.camera_builders import centred_K, framing, front_camera, frontal, orbit, phone_focal


def _camera(dtype=torch.float64) -> Camera:
    K = torch.tensor([[900.0, 3.0, 250.3], [0.0, 880.0, 190.7], [0.0, 0.0, 1.0]], dtype=dtype)
    eye = torch.tensor([0.2, 0.1, 0.8], dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(look_at(eye, (0.0, 0.0, 0.0))[:3, :3].double())
    w2c = torch.eye(4, dtype=torch.float64)  # look_at is float32: make the rotation orthonormal in float64
    w2c[:3, :3] = U @ Vh
    w2c[:3, 3] = -(U @ Vh) @ eye
    return Camera(K, w2c.to(dtype), 512, 384)


def _points(n=50, seed=0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.as_tensor(g.uniform(-0.1, 0.1, (n, 3)))


def test_project_and_to_clip_agree_on_pixel_centres():
    """to_clip (raster intrinsics, NDC) lands where project (pixel centres at integers) says, shifted by half a pixel."""
    cam = _camera()
    X = _points()
    uv, z = cam.project(X)
    clip = cam.to_clip(X)[0]
    ndc = clip[:, :2] / clip[:, 3:]
    u_raster = (ndc[:, 0] + 1) / 2 * cam.width
    v_raster = (ndc[:, 1] + 1) / 2 * cam.height
    torch.testing.assert_close(torch.stack([u_raster, v_raster], -1), uv + 0.5, rtol=0, atol=1e-9)
    torch.testing.assert_close(clip[:, 3], z, rtol=0, atol=1e-12)  # w is the camera depth


def test_project_numpy_and_torch_give_the_same_numbers():
    cam = _camera()
    X = _points()
    uv_t, z_t = project(X, cam.K, cam.world_to_cam)
    uv_n, z_n = project(X.numpy(), cam.K.numpy(), cam.world_to_cam.numpy())
    assert isinstance(uv_n, np.ndarray) and uv_n.shape == (50, 2) and z_n.shape == (50,)
    np.testing.assert_array_equal(uv_t.numpy(), uv_n)
    np.testing.assert_array_equal(z_t.numpy(), z_n)


def test_batched_camera_broadcasts_and_indexes():
    cam = _camera()
    K = torch.stack([cam.K, scale_intrinsics(cam.K, 0.5)])  # (2, 3, 3) with one extrinsic
    batch = Camera(K, cam.world_to_cam, cam.width, cam.height)
    assert batch.batch_shape == (2,)
    X = _points(7)[None].expand(2, -1, -1)
    uv, z = batch.project(X)
    assert uv.shape == (2, 7, 2) and z.shape == (2, 7)
    torch.testing.assert_close(uv[0], cam.project(X[0])[0])
    torch.testing.assert_close(batch[1].project(X[1])[0], uv[1])


def test_rays_through_projected_points_hit_the_points():
    cam = _camera()
    X = _points()
    uv, z = cam.project(X)
    o, d = cam.rays_at(uv)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(len(X), dtype=d.dtype))
    t = ((X - o) * d).sum(-1, keepdim=True)
    torch.testing.assert_close(o + t * d, X, rtol=0, atol=1e-9)
    torch.testing.assert_close(o[0], cam.centre)


def test_per_pixel_rays_go_through_pixel_centres():
    cam = Camera(centred_K(40.0, 8, 6), front_camera(1.0), 8, 6)
    o, d = cam.rays()
    assert o.shape == d.shape == (6, 8, 3)
    # the centre of pixel (row i, col j) projects back to (j, i)
    uv, _ = cam.project(o + 2.0 * d)
    jj, ii = np.meshgrid(np.arange(8), np.arange(6))
    np.testing.assert_allclose(uv[..., 0].numpy(), jj, atol=1e-9)
    np.testing.assert_allclose(uv[..., 1].numpy(), ii, atol=1e-9)
    # a centred K: the middle of the image looks straight down the axis (-Z for the front camera)
    _, dc = cam.rays_at(torch.tensor([[3.5, 2.5]], dtype=torch.float64))
    np.testing.assert_allclose(dc[0].numpy(), [0.0, 0.0, -1.0], atol=1e-12)


def test_crop_matches_the_crop_coordinates_formula():
    """Camera.crop's K maps points where capture's to_crop_coords (source pixel centre x -> (x + 0.5 - x0) s - 0.5) puts them."""
    from avatar3d.capture.crop import to_crop_coords

    cam = _camera()
    K0 = cam.K
    boxes = np.array([[-20, 10, 300], [5, -7, 260], [100, 50, 128]])
    crops = cam.crop(boxes, 512)
    assert crops.batch_shape == (3,) and crops.width == crops.height == 512
    X = _points(9)
    uv, _ = cam.project(X)
    ref = to_crop_coords(np.repeat(uv.numpy()[None], 3, 0), boxes, 512)
    uvc, _ = crops.project(X[None].expand(3, -1, -1))
    np.testing.assert_allclose(uvc.numpy(), ref, atol=1e-9)
    # the old capture/crop.py formula (which knew no skew), exactly
    K0 = K0.clone()
    K0[0, 1] = 0.0
    crops = Camera(K0, cam.world_to_cam, cam.width, cam.height).crop(boxes, 512)
    s = 512 / boxes[:, 2].astype(np.float64)
    old = np.repeat(K0.numpy()[None], 3, 0)
    old[:, 0, 0] *= s
    old[:, 1, 1] *= s
    old[:, 0, 2] = (old[:, 0, 2] + 0.5 - boxes[:, 0]) * s - 0.5
    old[:, 1, 2] = (old[:, 1, 2] + 0.5 - boxes[:, 1]) * s - 0.5
    np.testing.assert_array_equal(crops.K.numpy(), old)
    np.testing.assert_array_equal(crop_intrinsics(K0.numpy(), boxes, 512), old)
    with pytest.raises(BadInputError):
        crops.crop(boxes, 64)


def test_scale_matches_the_resolution_change_formula_and_the_raster_view():
    cam = _camera()
    small = cam.scale(128)
    assert (small.width, small.height) == (128, 96)
    s = 0.25
    old = cam.K.numpy().copy()  # tracking/pipeline.py's formula, bit for bit
    old[:2] *= s
    old[:2, 2] += 0.5 * s - 0.5
    np.testing.assert_array_equal(small.K.numpy(), old)
    np.testing.assert_array_equal(scale_intrinsics(cam.K.numpy(), s), old)
    # in raster intrinsics a resolution change is a plain multiplication
    torch.testing.assert_close(small.raster_K[:2], cam.raster_K[:2] * s, rtol=0, atol=1e-12)
    # the same image point: pixel centre (0, 0) of the small image covers source pixels 0..3, centred at 1.5
    X = _points(5)
    torch.testing.assert_close(small.project(X)[0], (cam.project(X)[0] + 0.5) * s - 0.5)
    aniso = cam.scale(256, 96)
    torch.testing.assert_close(aniso.K[1, 1], cam.K[1, 1] / 4)
    torch.testing.assert_close(aniso.K[0, 0], cam.K[0, 0] / 2)


def test_raster_intrinsics_are_the_half_pixel_and_keep_kind_and_dtype():
    K = np.array([[500.0, 0, 10], [0, 500, 20], [0, 0, 1]])
    Kr = raster_intrinsics(K)
    assert isinstance(Kr, np.ndarray) and Kr.dtype == np.float64 and K[0, 2] == 10  # a copy
    np.testing.assert_array_equal(Kr[:2, 2], [10.5, 20.5])
    Kt = raster_intrinsics(torch.as_tensor(K, dtype=torch.float32))
    assert Kt.dtype == torch.float32 and Kt[1, 2] == 20.5
    np.testing.assert_array_equal(opencv_intrinsics(Kr), K)
    assert raster_intrinsics(np.eye(3, dtype=int)).dtype == np.float64
    # intrinsics_from_fov builds raster intrinsics: the library's K centres on (W - 1) / 2
    np.testing.assert_array_equal(opencv_intrinsics(intrinsics_from_fov(64, 48)).numpy()[:2, 2], [31.5, 23.5])


def test_opengl_camera_to_world():
    w2c = front_camera(0.6)
    c2w = Camera(np.eye(3), w2c, 10, 10).cam_to_world_gl()
    # the upright camera on +Z looking at the origin is OpenGL's identity pose moved to z = 0.6 (it looks down -z, +y up)
    want = np.eye(4)
    want[2, 3] = 0.6
    np.testing.assert_allclose(c2w.numpy(), want, atol=1e-12)
    np.testing.assert_allclose(c2w.numpy(), cv_to_gl_c2w(w2c), atol=1e-15)
    cam = _camera()
    c2w = cam.cam_to_world_gl()
    torch.testing.assert_close(c2w[:3, 3], cam.centre)
    fwd = -c2w[:3, 2]  # OpenGL forward is -z
    _, d = cam.rays_at(torch.tensor([[cam.K[0, 2], cam.K[1, 2]]]))
    torch.testing.assert_close(fwd, d[0])


def test_builders():
    o = orbit(90.0, 0.0, 1.0, (0.0, 0.0, 0.0), 100)
    assert o.K.dtype == torch.float32 and (o.width, o.height) == (100, 100)
    np.testing.assert_allclose(o.centre.numpy(), [1.0, 0.0, 0.0], atol=1e-6)  # yaw 90: at the subject's left
    np.testing.assert_array_equal(o.K[:2, 2].numpy(), [49.5, 49.5])  # the image centre, pixel centres at integers
    uv, _ = o.project(torch.zeros(1, 3))
    torch.testing.assert_close(uv[0], torch.tensor([49.5, 49.5]))
    v = torch.as_tensor(_points(100)).float()
    f = framing(v, 64, 48)
    uv, z = f.project(v)
    assert (z > 0).all() and (uv[:, 0] > 0).all() and (uv[:, 0] < 63).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < 47).all()
    fr = frontal(v.double().numpy(), 80, 60)
    assert fr.K.dtype == torch.float64
    uv, z = fr.project(v.double())
    assert (uv[:, 0] > 0).all() and (uv[:, 0] < 79).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < 59).all()
    assert abs(phone_focal(1080, 1920) - 26.0 / 43.267 * np.hypot(1080, 1920)) < 1e-9
    np.testing.assert_array_equal(centred_K(100.0, 5, 4)[:2, 2], [2.0, 1.5])


def test_bad_shapes_are_refused():
    with pytest.raises(BadInputError):
        Camera(np.eye(4), np.eye(4), 10, 10)
    with pytest.raises(BadInputError):
        Camera(np.eye(3), np.eye(3), 10, 10)
    with pytest.raises(BadInputError):
        Camera(np.eye(3), np.eye(4), 0, 10)
