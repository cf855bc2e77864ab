"""The shared HeadModel maths (blendshapes, LBS, landmarks, validation) on a tiny hand-made model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar3d.models.base import HeadModel, HeadModelData
from avatar3d.models.lbs import batch_rodrigues


def tiny_data() -> HeadModelData:
    """A 2-triangle 'head': 4 vertices, root + jaw joint; vertex 3 follows the jaw."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], np.float64) * 0.1
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    shapedirs = np.zeros((4, 3, 2))
    shapedirs[:, 0, 0] = 0.01  # mode 0: shift x by 1 cm
    shapedirs[3, 2, 1] = 0.02  # mode 1: push vertex 3 forward
    exprdirs = np.zeros((4, 3, 1))
    exprdirs[3, 1, 0] = -0.05
    jreg = np.zeros((2, 4))
    jreg[0, 0] = 1
    jreg[1, 1] = 1
    w = np.zeros((4, 2))
    w[:3, 0] = 1
    w[3, 1] = 1
    return HeadModelData(
        name="tiny", version="1", v_template=v, faces=faces, uvs=v[:, :2], uv_faces=faces.copy(),
        shapedirs=shapedirs, exprdirs=exprdirs, expression_names=["jawOpen"], joint_names=["root", "jaw"],
        parents=np.array([-1, 0]), j_regressor=jreg, lbs_weights=w,
        regions={"face": np.array([True, True, True, False])},
        lmk68_faces=np.zeros(68, int), lmk68_bary=np.tile([1.0, 0, 0], (68, 1)),
    )


def test_zero_params_give_template():
    m = HeadModel(tiny_data())
    out = m()
    assert out.vertices.shape == (1, 4, 3)
    torch.testing.assert_close(out.vertices[0], m.v_template)
    assert out.joints.shape == (1, 2, 3)
    assert out.landmarks.shape == (1, 478, 3) and out.landmarks68.shape == (1, 68, 3)


def test_blendshapes_are_linear_and_padded():
    m = HeadModel(tiny_data())
    out = m(shape=torch.tensor([[2.0]]), expression=torch.tensor([[1.0]]))  # one leading shape coefficient
    expect = m.v_template.clone()
    expect[:, 0] += 0.02
    expect[3, 1] -= 0.05
    torch.testing.assert_close(out.vertices[0], expect)


def test_jaw_rotation_moves_only_its_vertices_about_the_joint():
    m = HeadModel(tiny_data())
    pose = torch.zeros(1, 2, 3)
    pose[0, 1, 2] = math.pi / 2  # 90 degrees about z at the jaw joint (vertex 1)
    out = m(pose=pose)
    torch.testing.assert_close(out.vertices[0, :3], m.v_template[:3])
    j = m.v_template[1]
    rel = m.v_template[3] - j  # (0, 0.1, 0) -> rotated to (-0.1, 0, 0)
    torch.testing.assert_close(out.vertices[0, 3], j + torch.tensor([-rel[1], rel[0], 0.0]), atol=1e-6, rtol=0)


def test_global_orient_and_transl_are_rigid():
    m = HeadModel(tiny_data())
    go = torch.tensor([[0.3, -0.2, 0.5]])
    out = m(global_orient=go, transl=torch.tensor([[0.0, 1.0, 2.0]]))
    R = batch_rodrigues(go)[0]
    expect = (m.v_template - m.v_template[0]) @ R.T + m.v_template[0] + torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(out.vertices[0], expect, atol=1e-6, rtol=0)


def test_batched_and_differentiable():
    m = HeadModel(tiny_data(), dtype=torch.float64)
    shape = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    pose = (0.3 * torch.randn(3, 2, 3, dtype=torch.float64)).requires_grad_()
    out = m(shape=shape, pose=pose)
    assert out.vertices.shape == (3, 4, 3)
    assert torch.autograd.gradcheck(lambda s, p: m(shape=s, pose=p).vertices, (shape, pose))


def test_wrong_lengths_and_missing_joints_are_clear_errors():
    m = HeadModel(tiny_data())
    with pytest.raises(ValueError, match=r"expression: expected shape \(B, 1\)"):
        m(expression=torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"pose: expected shape \(B, 2, 3\)"):
        m(pose=torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="no 'neck' joint"):
        m(neck_pose=torch.ones(1, 3))
    with pytest.raises(ValueError, match="batch size 2 does not match 3"):
        m(shape=torch.zeros(3, 2), expression=torch.zeros(2, 1))
    with pytest.raises(KeyError, match="valid names: jawOpen"):
        m.expression_vector({"smile": 1.0})


def test_inconsistent_data_is_rejected():
    d = tiny_data()
    d.lbs_weights = d.lbs_weights[:3]
    with pytest.raises(ValueError, match=r"lbs_weights must be \(4, 2\)"):
        HeadModel(d)
    d = tiny_data()
    d.faces = d.faces + 10
    with pytest.raises(ValueError, match="faces index outside"):
        HeadModel(d)


def test_landmarks_follow_the_surface():
    m = HeadModel(tiny_data())
    out = m(expression=torch.tensor([[1.0]]))
    torch.testing.assert_close(out.landmarks68[0], out.vertices[0, 0].expand(68, 3))
    assert m.region("face").sum() == 3
