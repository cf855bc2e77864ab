"""The trainers' shared pieces (avatar3d.train): schedules, mini-batches, row-wise Adam, run log."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.train import FrameBatches, RowAdam, RunLog, Stage, StageOptimizer, cosine_decay, run_stage


def test_cosine_decay_runs_from_one_to_the_floor():
    assert cosine_decay(0, 10, 0.1) == 1.0
    assert cosine_decay(9, 10, 0.1) == pytest.approx(0.1)
    f = [cosine_decay(i, 10, 0.1) for i in range(10)]
    assert all(a > b for a, b in zip(f, f[1:]))
    assert cosine_decay(0, 1, 0.1) == 1.0  # a one-step stage takes its full rate


@pytest.mark.parametrize("n,b", [(5, 16), (16, 16), (37, 8), (100, 16)])
def test_frame_batches_cover_every_frame_once_in_consecutive_runs(n, b):
    batches = FrameBatches(n, b, np.random.default_rng(0)).epoch()
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(n))
    assert all(len(c) <= b and np.all(np.diff(c) == 1) for c in batches)


def test_frame_batches_are_reproducible_from_the_seed_and_shift_between_epochs():
    a = FrameBatches(100, 16, np.random.default_rng(3)).epochs(3)
    b = FrameBatches(100, 16, np.random.default_rng(3)).epochs(3)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    starts = [sorted(int(c[0]) for c in FrameBatches(100, 16, np.random.default_rng(s)).epoch()) for s in range(4)]
    assert len({tuple(x) for x in starts}) > 1


def test_row_adam_moves_only_the_batch_rows_and_descends():
    p = torch.zeros(6, 2)
    opt = RowAdam(p, lr=0.1, total_steps=10)
    idx = torch.tensor([1, 2])
    opt.step(idx, torch.ones(2, 2))
    assert torch.all(p[[0, 3, 4, 5]] == 0) and torch.all(p[1:3] < 0)


def test_stage_optimizer_skips_frozen_parameters_and_decays_rates():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(3)
    opt = StageOptimizer(Stage("s", 5, dict(a=1.0, b=2.0)), dict(a=a, b=b))
    assert len(opt.opt.param_groups) == 1
    opt.begin(4)
    assert opt.opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_run_stage_minimises_a_problem_and_logs_its_losses():
    class Quadratic:
        def __init__(self):
            self.x = torch.full((2,), 3.0, requires_grad=True)

        def parameters(self):
            return dict(x=self.x)

        def loss(self, stage):
            return (self.x - 1).pow(2).sum()

        def constrain(self):
            self.x.clamp_(max=2.5)

    q, log = Quadratic(), RunLog()
    with log.timed("fit"):
        run_stage(q, Stage("fit", 200, dict(x=0.1)), log)
    assert len(log.losses) == 200 and log.losses[-1] < 1e-3 < log.losses[0]
    assert torch.allclose(q.x, torch.ones(2), atol=0.03)
    assert set(log.finish()) == {"fit", "total", "cpu_total"}


def test_run_log_adds_to_a_timing_when_asked():
    log = RunLog()
    with log.timed("a", cpu=True):
        pass
    with log.timed("a", cpu=True, add=True, wall=False):
        sum(range(10000))
    assert log.timings["cpu_a"] >= 0 and set(log.timings) == {"a", "cpu_a"}
