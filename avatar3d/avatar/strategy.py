"""Densification of a Gaussian head with the binding kept: gsplat's ``DefaultStrategy`` for bound Gaussians.

The idea is 3DGS's (as gsplat's ``DefaultStrategy`` writes it): over a window of steps, accumulate each
Gaussian's screen-space positional gradient (the norm of d loss / d means2d in NDC units, averaged over
the frames that drew it); where that is high the Gaussian under-fits its region and grows, by **cloning**
(small ones: a copy in place) or **splitting** (large ones: two smaller ones sampled inside it); nearly
transparent or oversized ones are **pruned**. Here every Gaussian lives in its parent triangle's frame
(:mod:`.binding`), so the new ones *inherit the parent triangle* and all the operations act on the
local fields (a split samples the new offsets from the local Gaussian, in triangle units); the size tests
use the Gaussians' world sizes at the last rendered pose.

Explicit state, as in gsplat: :class:`DensifyStrategy` holds only its options; the accumulators are a
dict of tensors (``grad2d`` (N,), ``count`` (N,)) that the trainer keeps and checkpoints; the per-field
Adam optimisers (one per field name, as gsplat's) are updated in place so their moments follow the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from .model import GaussianHead

__all__ = ["DensifyOptions", "DensifyStrategy", "duplicate", "split", "remove", "reset_opacity"]


@dataclass
class DensifyOptions:
    """When and how to densify (steps are optimiser steps; sizes in metres).

    Attributes:
        refine_start, refine_stop, refine_every: densify every ``refine_every`` steps in (start, stop).
        grow_grad2d: mean screen-space gradient (NDC units) above which a Gaussian grows (gsplat: 2e-4).
        grow_scale_m: a growing Gaussian larger than this (largest world standard deviation) splits, else clones.
        prune_opacity: Gaussians below this opacity are removed.
        prune_scale_m: Gaussians larger than this are removed (after the first opacity reset).
        reset_every: every so many steps opacities are capped at twice ``prune_opacity`` (0: never).
        max_gaussians: no growth beyond this many (CPU budget); the highest gradients grow first.
    """

    refine_start: int = 100
    refine_stop: int = 10_000
    refine_every: int = 100
    grow_grad2d: float = 2e-4
    grow_scale_m: float = 2e-3
    prune_opacity: float = 5e-3
    prune_scale_m: float = 0.03
    reset_every: int = 0
    max_gaussians: int = 100_000


Optimizers = dict[str, torch.optim.Optimizer]


def _apply(model: GaussianHead, optimizers: Optimizers, rows: Callable[[str, Tensor], Tensor],
           new_state: Callable[[Tensor], Tensor], parent: Tensor) -> None:
    """Replace every per-Gaussian field by ``rows(name, old)`` and each Adam moment by ``new_state(old)``."""
    new = {k: rows(k, p.detach()) for k, p in model.params.items()}
    olds = dict(model.params)
    params = model.set_fields(new, parent)
    for k, p in params.items():
        opt = optimizers.get(k)
        if opt is None:
            continue
        st = opt.state.pop(olds[k], None)
        for group in opt.param_groups:
            group["params"] = [p if q is olds[k] else q for q in group["params"]]
        if st:
            opt.state[p] = {s: (v if s == "step" else new_state(v)) for s, v in st.items()}


def duplicate(model: GaussianHead, optimizers: Optimizers, mask: Tensor) -> None:
    """Append a copy of the Gaussians ``mask`` (N,) bool (same parent triangle); the copies' Adam moments start at 0."""
    sel = torch.nonzero(mask)[:, 0]
    _apply(model, optimizers, lambda k, p: torch.cat([p, p[sel]]),
           lambda v: torch.cat([v, v.new_zeros((len(sel),) + v.shape[1:])]), torch.cat([model.parent, model.parent[sel]]))


def split(model: GaussianHead, optimizers: Optimizers, mask: Tensor, generator: Optional[torch.Generator] = None,
          shrink: float = 1.6) -> None:
    """Replace each Gaussian of ``mask`` by two, their means drawn from it (in its triangle's frame), scales / ``shrink``.

    The two keep the parent triangle and every other field (colour, opacity, blendshapes).
    """
    from ..geometry import quaternion_to_matrix

    sel = torch.nonzero(mask)[:, 0]
    keep = torch.nonzero(~mask)[:, 0]
    p = model.params
    R = quaternion_to_matrix(p["rotation"].detach()[sel])  # (M, 3, 3) local axes in the triangle frame
    sd = torch.exp(p["log_scale"].detach()[sel])  # (M, 3) triangle units
    z = torch.randn((2, len(sel), 3), generator=generator, dtype=sd.dtype).to(sd.device)
    samples = (R[None] @ (sd[None] * z)[..., None])[..., 0]  # (2, M, 3)

    def rows(k: str, v: Tensor) -> Tensor:
        if k == "offset":
            new = (v[sel][None] + samples).reshape(-1, 3)
        elif k == "log_scale":
            new = (v[sel] - torch.log(torch.tensor(shrink))).repeat(2, 1)
        else:
            new = v[sel].repeat((2,) + (1,) * (v.ndim - 1))
        return torch.cat([v[keep], new])

    parent = torch.cat([model.parent[keep], model.parent[sel].repeat(2)])
    _apply(model, optimizers, rows, lambda v: torch.cat([v[keep], v.new_zeros((2 * len(sel),) + v.shape[1:])]), parent)


def remove(model: GaussianHead, optimizers: Optimizers, mask: Tensor) -> None:
    """Delete the Gaussians of ``mask`` (N,) bool."""
    keep = torch.nonzero(~mask)[:, 0]
    _apply(model, optimizers, lambda k, p: p[keep], lambda v: v[keep], model.parent[keep])


def reset_opacity(model: GaussianHead, optimizers: Optimizers, value: float) -> None:
    """Cap every opacity at ``value`` (the field stays a logit) and clear its Adam moments."""
    with torch.no_grad():
        p = model.params["opacity"]
        p.copy_(torch.minimum(p, torch.logit(torch.tensor(value))))
    opt = optimizers.get("opacity")
    if opt is not None:
        for st in opt.state.values():
            for k, v in st.items():
                if k != "step":
                    v.zero_()


class DensifyStrategy:
    """Clone / split / prune on a schedule (see the module docstring); ``state`` dicts are the caller's.

    Use per step: :meth:`step_pre_backward` on the frames' projected means (so their gradients are kept),
    backward, :meth:`step_post_backward` (accumulates, and densifies when the schedule says), then the
    optimiser step.
    """

    def __init__(self, options: DensifyOptions = DensifyOptions()):
        self.options = options

    def initial_state(self, n: int) -> dict[str, Tensor]:
        """Zeroed accumulators for ``n`` Gaussians."""
        return {"grad2d": torch.zeros(n), "count": torch.zeros(n)}

    @staticmethod
    def step_pre_backward(means2d: Sequence[Tensor]) -> None:
        """Keep the gradients of the (1, N, 2) projected means of each rendered frame."""
        for m in means2d:
            if m.requires_grad:
                m.retain_grad()

    def step_post_backward(self, model: GaussianHead, optimizers: Optimizers, state: dict[str, Tensor], step: int,
                           means2d: Sequence[Tensor], radii: Sequence[Tensor], width: int, height: int, world_scale: Tensor,
                           generator: Optional[torch.Generator] = None) -> dict[str, int]:
        """Accumulate this step's gradients; at a refinement step densify and prune.

        Args:
            step: the optimiser step about to be taken (0-based); means2d, radii: per frame (1, N, 2) (this
            step's renders); width, height: their size; world_scale: (N,) largest world standard deviation
            of each Gaussian at a rendered pose (metres); generator: the split's randomness.
        Returns:
            ``{"cloned", "split", "pruned"}`` counts (zeros when nothing happened).
        """
        o = self.options
        report = {"cloned": 0, "split": 0, "pruned": 0}
        if step >= o.refine_stop:
            return report
        self._accumulate(state, means2d, radii, width, height)
        if step > o.refine_start and step % o.refine_every == 0:
            # prune first (gsplat grows first): the sizes and accumulators then index the same rows as the growth
            drop = self._prune_mask(model, step, world_scale)
            keep = ~drop
            remove(model, optimizers, drop)
            report["pruned"] = int(drop.sum())
            state["grad2d"], state["count"] = state["grad2d"][keep], state["count"][keep]
            report.update(self._grow(model, optimizers, state, world_scale[keep], generator))
            state.update(self.initial_state(model.num_gaussians))
        if o.reset_every > 0 and step > 0 and step % o.reset_every == 0:
            reset_opacity(model, optimizers, 2 * o.prune_opacity)
        return report

    def _accumulate(self, state: dict[str, Tensor], means2d: Sequence[Tensor], radii: Sequence[Tensor], width: int, height: int) -> None:
        for m, r in zip(means2d, radii):
            if m.grad is None:
                continue
            g = m.grad[0].detach().clone()
            g[:, 0] *= width / 2.0  # pixels -> NDC units, as gsplat measures the threshold
            g[:, 1] *= height / 2.0
            seen = (r[0] > 0).all(-1)
            state["grad2d"][seen] += g[seen].norm(dim=-1).to(state["grad2d"])
            state["count"][seen] += 1

    def _grow(self, model: GaussianHead, optimizers: Optimizers, state: dict[str, Tensor], world_scale: Tensor,
              generator: Optional[torch.Generator]) -> dict[str, int]:
        o = self.options
        mean_grad = state["grad2d"] / state["count"].clamp_min(1)
        high = mean_grad > o.grow_grad2d
        room = max(0, o.max_gaussians - model.num_gaussians)
        if int(high.sum()) > room:  # the budget goes to the highest gradients
            top = torch.topk(torch.where(high, mean_grad, torch.zeros_like(mean_grad)), room).indices
            high = torch.zeros_like(high)
            high[top] = True
        small = world_scale <= o.grow_scale_m
        clone, spl = high & small, high & ~small
        n = model.num_gaussians
        duplicate(model, optimizers, clone)
        spl = torch.cat([spl, torch.zeros(model.num_gaussians - n, dtype=torch.bool)])  # the clones are not split
        split(model, optimizers, spl, generator)
        return {"cloned": int(clone.sum()), "split": int(spl.sum())}

    def _prune_mask(self, model: GaussianHead, step: int, world_scale: Tensor) -> Tensor:
        """(N,) bool: nearly transparent Gaussians, and (after the first opacity reset) oversized ones."""
        o = self.options
        drop = torch.sigmoid(model.params["opacity"].detach()) < o.prune_opacity
        if o.reset_every > 0 and step > o.reset_every:
            drop |= world_scale > o.prune_scale_m
        return drop
