"""The landmark fit's faster inner loop computes what the plain formulas compute.

The priors' hand-written gradient (:mod:`avatar3d.tracking.fit_priors`) against autograd, the 3x4 joint chain
(:meth:`LandmarkHead.camera_transforms`) against the 4x4 skinning transforms, the detector correction merged into
the expression GEMM against the network applied on its own, and the allocator setting. Speed itself is measured
by ``benchmarks/bench_tracking_speed.py``, not here.
"""

from __future__ import annotations

import sys

import pytest
import torch

from avatar3d._allocator import keep_freed_memory
from avatar3d._tensor import torch_threads
from avatar3d.models import load_head_model
from avatar3d.models.lbs import batch_rodrigues
from avatar3d.render.camera_builders import front_camera
from avatar3d.tracking.detector_model import DetectorCorrection, joint_indices, load_response
from avatar3d.tracking.fit_priors import PriorWeights, Unknowns, reference_regularizer, regularizer
from avatar3d.tracking.landmark_model import LandmarkHead

D = torch.float64


@pytest.fixture(scope="module")
def builtin():
    return load_head_model("builtin")


def _weights(E: int, S: int, N: int, rest: bool) -> PriorWeights:
    pw = torch.ones(E, dtype=D)
    pw[[1, 4]] = 0.1  # two "blinks": robust smoothness, weaker magnitude priors
    vmask = torch.ones(N, dtype=D)
    vmask[3] = 0  # a frame without a detection does not count in the resting-face prior
    return PriorWeights(w_focal=1e-3, w_smooth=0.5, w_shape=1e-4, w_expr=3e-4, w_expr_l1=1e-4, w_jaw=1e-3, w_eyes=1e-3,
                        w_smooth_expr=0.03, smooth_expr_delta=0.01, w_expr_rest=1e-2, expr_rest_tau=0.05, expr_prior=pw,
                        shape_std=torch.rand(S, dtype=D) + 0.5, vmask=vmask, rest=rest)


@pytest.mark.parametrize("rigid", [False, True])
@pytest.mark.parametrize("rest", [False, True])
def test_priors_gradient_matches_autograd(rigid, rest):
    g = torch.Generator().manual_seed(0)
    N, E, S = 12, 9, 7
    ts = [torch.randn((), generator=g, dtype=D), torch.randn(N, 3, generator=g, dtype=D), torch.randn(N, 3, generator=g, dtype=D),
          torch.randn(2, S, generator=g, dtype=D), torch.rand(N, E, generator=g, dtype=D) * 0.5,
          0.1 * torch.randn(N, 3, generator=g, dtype=D), 0.1 * torch.randn(N, 6, generator=g, dtype=D)]
    ts[4][0, 2] = 0.0  # |x| at zero: both give the zero subgradient
    ts[4][5:8, 1] = torch.tensor([0.0, 1.0, 0.0], dtype=D)  # a blink: a second difference far beyond the robust width
    ts = [t.requires_grad_(True) for t in ts]
    used = ts[:4] if rigid else ts
    w = _weights(E, S, N, rest)
    with torch_threads(1):
        fused, plain = regularizer(w, Unknowns(*used)), reference_regularizer(w, Unknowns(*used))
        g_fused = torch.autograd.grad(3 * fused, used)
        g_plain = torch.autograd.grad(3 * plain, used)
    assert float(plain) > 0 and torch.allclose(fused, plain, rtol=1e-12)
    for a, b in zip(g_fused, g_plain):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-15) and b.abs().max() > 0


def test_camera_transforms_equal_the_skinning_chain(builtin):
    head = LandmarkHead(builtin).double()
    g = torch.Generator().manual_seed(1)
    B, J = 5, builtin.num_joints
    rot = batch_rodrigues(0.3 * torch.randn(B * J, 3, generator=g, dtype=D)).view(B, J, 3, 3)
    w2c, transl = torch.as_tensor(front_camera(0.6), dtype=D), 0.05 * torch.randn(B, 3, generator=g, dtype=D)
    Rc, tc = w2c[:3, :3], w2c[:3, 3]
    for shape in (torch.randn(builtin.num_shape, generator=g, dtype=D), torch.randn(B, builtin.num_shape, generator=g, dtype=D)):
        A = Rc @ head.skin_transforms(shape, rot)
        ref = torch.cat([A[..., :3], A[..., 3:] + (transl @ Rc.T + tc)[:, None, :, None]], -1)
        assert torch.allclose(head.camera_transforms(shape, rot, transl, w2c), ref, atol=1e-14)


def test_merged_correction_equals_the_network_added(builtin):
    table = load_response(builtin, correction=False)
    if table is None:
        pytest.skip("the built-in head ships no response table for this version")
    c = DetectorCorrection(builtin.num_expression, joint_indices(builtin))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a random network: the shipped one may be absent or stale
        for p in c.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    extra = torch.arange(0, builtin.num_vertices, 997)
    head = LandmarkHead(builtin, extra_vertices=extra, response={**table, "correction": c}).double()  # (c too)
    B, L = 4, head.num_landmarks
    shape, expr = 0.5 * torch.randn(builtin.num_shape, generator=g, dtype=D), torch.rand(B, builtin.num_expression, generator=g, dtype=D)
    rot = batch_rodrigues(0.2 * torch.randn(B * builtin.num_joints, 3, generator=g, dtype=D)).view(B, builtin.num_joints, 3, 3)
    with torch_threads(1), torch.no_grad():
        plain = head.rest_points(shape, expr, rot, correct=False)
        merged = head.rest_points(shape, expr, rot)
        d = c(expr, rot) - head.correction_rest
    assert d.abs().max() > 1e-4  # the network does move the points
    # (the merged rows are formed in float32 when the head is built: 0.1 micrometre)
    torch.testing.assert_close(merged[:, :, :L], plain[:, :, :L] + d, rtol=0, atol=1e-7)
    torch.testing.assert_close(merged[:, :, L:], plain[:, :, L:], rtol=0, atol=1e-12)  # extra vertices keep the mesh's


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")
def test_allocator_setting_applies_once():
    assert keep_freed_memory() and keep_freed_memory()
