"""Densification with the binding kept (avatar3d.avatar.strategy) on a toy avatar of a few hundred Gaussians."""

from __future__ import annotations

import pytest
import torch

from avatar3d.avatar.model import GaussianHead, HeadInit
from avatar3d.avatar.strategy import DensifyOptions, DensifyStrategy, duplicate, remove, reset_opacity, split


@pytest.fixture()
def toy(builtin):
    torch.manual_seed(0)
    av = GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=12, fill_triangles=False))
    with torch.no_grad():  # distinct rows, so row bookkeeping errors show
        for p in av.params.values():
            p.add_(0.01 * torch.randn_like(p))
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in av.params.items()}
    # one step so every Adam has moments to carry
    loss = sum(p.square().sum() for p in av.params.values())
    loss.backward()
    for o in opts.values():
        o.step()
    return av, opts


def _moment(opts, name):
    opt = opts[name]
    (p,) = opt.param_groups[0]["params"]
    return p, opt.state[p]["exp_avg"]


def test_duplicate_copies_rows_and_parent_and_zeroes_new_moments(toy):
    av, opts = toy
    N = av.num_gaussians
    before = {k: v.detach().clone() for k, v in av.params.items()}
    m_before = _moment(opts, "offset")[1].clone()
    parent = av.parent.clone()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[[1, 5, 7]] = True
    duplicate(av, opts, mask)
    assert av.num_gaussians == N + 3
    assert torch.equal(av.parent, torch.cat([parent, parent[[1, 5, 7]]]))
    for k, v in av.params.items():
        assert torch.equal(v[:N], before[k]) and torch.equal(v[N:], before[k][[1, 5, 7]])
        assert opts[k].param_groups[0]["params"][0] is v  # the optimiser steps the new tensor
    p, m = _moment(opts, "offset")
    assert m.shape == p.shape and torch.equal(m[:N], m_before) and bool((m[N:] == 0).all())


def test_split_keeps_the_triangle_shrinks_and_samples_inside(toy):
    av, opts = toy
    N = av.num_gaussians
    before = {k: v.detach().clone() for k, v in av.params.items()}
    parent = av.parent.clone()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[:4] = True
    split(av, opts, mask, torch.Generator().manual_seed(1))
    assert av.num_gaussians == N + 4
    assert torch.equal(av.parent, torch.cat([parent[4:], parent[:4].repeat(2)]))
    ls = av.params["log_scale"].detach()
    assert torch.allclose(ls[N - 4:], (before["log_scale"][:4] - torch.log(torch.tensor(1.6))).repeat(2, 1))
    assert torch.equal(av.params["sh_dc"][N - 4:], before["sh_dc"][:4].repeat(2, 1))
    # the children lie within a few standard deviations of their parent (triangle units)
    d = (av.params["offset"].detach()[N - 4:] - before["offset"][:4].repeat(2, 1)).norm(dim=-1)
    sd = torch.exp(before["log_scale"][:4]).max(-1).values.repeat(2)
    assert bool((d < 5 * sd).all()) and bool((d > 0).all())
    # and posed, they move with their triangle: children and parent share it, so the same rigid motion applies
    e = torch.zeros(1, av.head_model.num_expression)
    pose = torch.zeros(1, av.head_model.num_joints, 3)
    pose[0, 0, 1] = 0.5
    g, _ = av.pose(e, pose, torch.zeros(1, 3))
    assert torch.isfinite(g.means).all()


def test_remove_and_reset_opacity(toy):
    av, opts = toy
    N = av.num_gaussians
    keep_rows = av.params["sh_dc"].detach()[2:].clone()
    mask = torch.zeros(N, dtype=torch.bool)
    mask[:2] = True
    remove(av, opts, mask)
    assert av.num_gaussians == N - 2 and torch.equal(av.params["sh_dc"], keep_rows)
    reset_opacity(av, opts, 0.01)
    assert float(torch.sigmoid(av.params["opacity"].detach()).max()) <= 0.01 + 1e-6
    assert bool((_moment(opts, "opacity")[1] == 0).all())


def test_strategy_clones_small_splits_large_prunes_transparent_and_keeps_the_binding(toy):
    av, opts = toy
    N = av.num_gaussians
    strat = DensifyStrategy(DensifyOptions(refine_start=0, refine_every=2, grow_grad2d=1e-3, grow_scale_m=2e-3))
    state = strat.initial_state(N)
    hot = torch.zeros(N, dtype=torch.bool)
    hot[:20] = True
    large = torch.zeros(N, dtype=torch.bool)
    large[10:20] = True
    world_scale = torch.where(large, torch.tensor(5e-3), torch.tensor(1e-3))
    with torch.no_grad():
        av.params["opacity"][20:25] = -8.0  # opacity 3e-4: pruned
    parent = av.parent.clone()
    for step in (1, 2):
        m2d = torch.zeros(1, N, 2, requires_grad=True)
        m2d.grad = torch.where(hot[None, :, None], torch.tensor(0.05), torch.tensor(0.0)).expand(1, N, 2).clone()
        radii = torch.ones(1, N, 2, dtype=torch.int32)
        rep = strat.step_post_backward(av, opts, state, step, [m2d], [radii], 64, 64, world_scale, torch.Generator().manual_seed(0))
    assert rep == {"cloned": 10, "split": 10, "pruned": 5}
    assert av.num_gaussians == N - 5 + 10 + 10
    assert state["grad2d"].shape == (av.num_gaussians,) and float(state["grad2d"].abs().sum()) == 0
    # every new Gaussian sits on a triangle of a Gaussian that grew
    counts_before = torch.bincount(parent[~((torch.arange(N) >= 20) & (torch.arange(N) < 25))], minlength=len(av.head_model.faces))
    counts_after = torch.bincount(av.parent, minlength=len(av.head_model.faces))
    grown = torch.bincount(parent[:20], minlength=len(av.head_model.faces))
    assert torch.equal(counts_after - counts_before, grown)
    # the optimisers still step every field
    loss = sum(p.square().sum() for p in av.params.values())
    loss.backward()
    for o in opts.values():
        o.step()


def test_growth_respects_the_budget(toy):
    av, opts = toy
    N = av.num_gaussians
    strat = DensifyStrategy(DensifyOptions(refine_start=0, refine_every=1, grow_grad2d=1e-6, max_gaussians=N + 7))
    state = strat.initial_state(N)
    m2d = torch.zeros(1, N, 2, requires_grad=True)
    m2d.grad = torch.rand(1, N, 2)
    rep = strat.step_post_backward(av, opts, state, 1, [m2d], [torch.ones(1, N, 2, dtype=torch.int32)], 64, 64, torch.full((N,), 1e-3))
    assert rep["cloned"] + rep["split"] == 7 and av.num_gaussians == N + 7
