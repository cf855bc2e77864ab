"""The landmark fit's priors and temporal smoothness, with a hand-written gradient.

:func:`regularizer` is the sum of the fit's non-landmark terms (:class:`~avatar3d.tracking.fitting.FitConfig`
weights): a prior on the focal change, Gaussian priors on identity, expression (and its L1), jaw and eyes,
squared second differences along the frames of head rotation, translation, jaw, eyes and expression (robust
for the fast ones, the blinks), and the "every expression returns to rest" prior on each coefficient's soft
minimum over the frames. :func:`reference_regularizer` is the same sum through autograd (what the tests compare
with). Why a hand-written gradient: the terms are many tiny tensors (N x 3, N x 51), so through autograd they
cost ~100 graph nodes per iteration, a third of the fit's backward pass, for almost no arithmetic; here the
value and every gradient are a few dozen operations in one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["PriorWeights", "Unknowns", "regularizer", "reference_regularizer", "smooth2", "smooth2_robust", "soft_min_frames"]


@dataclass(frozen=True)
class PriorWeights:
    """Weights of the terms (``FitConfig`` fields of the same names) and the per-problem constants.

    ``expr_prior`` (E,) scales the expression magnitude priors per coefficient; coefficients with a scale
    below 1 (the blinks) get the robust smoothness of width ``smooth_expr_delta``. ``rest`` turns the
    resting-face prior on (one identity, soft minimum of width ``expr_rest_tau``)."""

    w_focal: float
    w_smooth: float
    w_shape: float
    w_expr: float
    w_expr_l1: float
    w_jaw: float
    w_eyes: float
    w_smooth_expr: float
    smooth_expr_delta: float
    w_expr_rest: float
    expr_rest_tau: float
    expr_prior: Tensor  #: (E,)
    shape_std: Tensor  #: (S,)
    vmask: Tensor  #: (N,) 1 on frames with a detection
    rest: bool


@dataclass
class Unknowns:
    """The tensors the terms see: ``log_f`` (), ``rot`` (N, 3), ``tr`` (N, 3) translation in inter-ocular units,
    ``shape`` (G, S), and, outside the rigid stage, ``expr`` (N, E), ``jaw`` (N, 3), ``eyes`` (N, 6)."""

    log_f: Tensor
    rot: Tensor
    tr: Tensor
    shape: Tensor
    expr: Optional[Tensor] = None
    jaw: Optional[Tensor] = None
    eyes: Optional[Tensor] = None


def smooth2(x: Tensor) -> Tensor:
    """Mean squared second difference along frames of (N, ...) x (0 for N < 3)."""
    if x.shape[0] < 3:
        return x.new_zeros(())
    return ((x[2:] - 2 * x[1:-1] + x[:-2]) ** 2).sum(-1).mean()


def smooth2_robust(x: Tensor, delta: float) -> Tensor:
    """Like :func:`smooth2` (equal for second differences much smaller than ``delta``), linear beyond ``delta``."""
    if x.shape[0] < 3:
        return x.new_zeros(())
    d2 = (x[2:] - 2 * x[1:-1] + x[:-2]) ** 2
    return (2 * delta**2 * (torch.sqrt(1 + d2 / delta**2) - 1)).sum(-1).mean()


def soft_min_frames(x: Tensor, mask: Tensor, tau: float) -> Tensor:
    """(E,) soft minimum over the frames of (N, E) ``x`` where ``mask`` (N,) is 1 (a smooth min, within ``tau``)."""
    big = (1 - mask)[:, None] * 1e3  # frames without a detection do not count
    n = mask.sum().clamp_min(1)
    return -tau * (torch.logsumexp(-(x + big) / tau, 0) - torch.log(n))


def reference_regularizer(w: PriorWeights, u: Unknowns) -> Tensor:
    """The terms through autograd (module docstring)."""
    reg = w.w_focal * u.log_f**2
    reg = reg + w.w_smooth * (smooth2(u.rot) + smooth2(u.tr))
    reg = reg + w.w_shape * ((u.shape / w.shape_std) ** 2).sum()  # (per group)
    if u.expr is None:
        return reg
    expr, jaw, eyes, pw = u.expr, u.jaw, u.eyes, w.expr_prior
    reg = reg + w.w_expr * (expr**2 @ pw).mean() + w.w_expr_l1 * (expr.abs() @ pw).mean()
    reg = reg + w.w_jaw * (jaw**2).sum(-1).mean() + w.w_eyes * (eyes**2).sum(-1).mean()
    # Blinks are the fast events (one or two frames at 10 fps): robust smoothness for them, the
    # squared one for the rest (robust everywhere let mouthSmileLeft jitter: rendered truth r 0.90 -> 0.75).
    fast = pw < 1
    smooth = smooth2_robust(expr[:, fast], w.smooth_expr_delta) + smooth2(expr[:, ~fast])
    reg = reg + w.w_smooth_expr * smooth + w.w_smooth * (smooth2(jaw) + 0.1 * smooth2(eyes))
    if w.rest and w.w_expr_rest > 0:
        rest = soft_min_frames(expr, w.vmask, w.expr_rest_tau).clamp_min(0)
        reg = reg + w.w_expr_rest * (rest**2).sum()
    return reg


def _second_diff(x: Tensor) -> Tensor:
    """(N - 2, ...) second differences along the frames."""
    return x[2:] - 2 * x[1:-1] + x[:-2]


def _pull_back(d: Tensor, n: int) -> Tensor:
    """(N, ...) gradient of ``sum(d * second_diff(x))`` with respect to x, for (N - 2, ...) ``d``."""
    g = d.new_zeros((n,) + d.shape[1:])
    g[:-2] += d
    g[1:-1] -= 2 * d
    g[2:] += d
    return g


def _smooth_term(x: Tensor, weight: float) -> tuple[float, Optional[Tensor]]:
    """``weight * smooth2(x)`` and its gradient (None when it is zero)."""
    if weight == 0 or x.shape[0] < 3:
        return 0.0, None
    d = _second_diff(x)
    m = x.shape[0] - 2
    return weight * float((d * d).sum()) / m, _pull_back(d * (2 * weight / m), x.shape[0])


def _robust_smooth_term(x: Tensor, weight: float, delta: float) -> tuple[float, Optional[Tensor]]:
    """``weight * smooth2_robust(x, delta)`` and its gradient (None when it is zero)."""
    if weight == 0 or x.shape[0] < 3 or x.shape[1] == 0:
        return 0.0, None
    d = _second_diff(x)
    root = torch.sqrt(1 + d * d / delta**2)
    m = x.shape[0] - 2
    value = weight * float((2 * delta**2 * (root - 1)).sum()) / m
    return value, _pull_back(d / root * (2 * weight / m), x.shape[0])


def _expression_terms(w: PriorWeights, expr: Tensor) -> tuple[float, Tensor]:
    """Value and (N, E) gradient of the expression magnitude priors, smoothness and resting-face prior."""
    N = expr.shape[0]
    pw = w.expr_prior
    value = w.w_expr * float((expr * expr).sum(0) @ pw) / N + w.w_expr_l1 * float(expr.abs().sum(0) @ pw) / N
    g = expr * (pw * (2 * w.w_expr / N)) + torch.sign(expr) * (pw * (w.w_expr_l1 / N))
    fast = pw < 1
    v_fast, g_fast = _robust_smooth_term(expr[:, fast], w.w_smooth_expr, w.smooth_expr_delta)
    v_slow, g_slow = _smooth_term(expr[:, ~fast], w.w_smooth_expr)
    value += v_fast + v_slow
    if g_fast is not None:
        g[:, fast] += g_fast
    if g_slow is not None:
        g[:, ~fast] += g_slow
    if w.rest and w.w_expr_rest > 0:
        big = (1 - w.vmask)[:, None] * 1e3
        z = -(expr + big) / w.expr_rest_tau
        lse = torch.logsumexp(z, 0)
        rest = (-w.expr_rest_tau * (lse - torch.log(w.vmask.sum().clamp_min(1)))).clamp_min(0)
        value += w.w_expr_rest * float((rest * rest).sum())
        g += torch.exp(z - lse) * (2 * w.w_expr_rest * rest)  # d softmin / d x is the softmax over the frames
    return value, g


def _terms(w: PriorWeights, u: Unknowns) -> tuple[float, dict[str, Optional[Tensor]]]:
    """The regularizer's value and its gradient for each unknown."""
    grads: dict[str, Optional[Tensor]] = {}
    value = w.w_focal * float(u.log_f) ** 2
    grads["log_f"] = 2 * w.w_focal * u.log_f
    value_rot, grads["rot"] = _smooth_term(u.rot, w.w_smooth)
    value_tr, grads["tr"] = _smooth_term(u.tr, w.w_smooth)
    inv_var = w.shape_std.reciprocal() ** 2
    value += value_rot + value_tr + w.w_shape * float((u.shape * u.shape * inv_var).sum())
    grads["shape"] = u.shape * (inv_var * (2 * w.w_shape))
    if u.expr is not None:
        value_expr, grads["expr"] = _expression_terms(w, u.expr)
        N = u.expr.shape[0]
        value_jaw, g_jaw = _smooth_term(u.jaw, w.w_smooth)
        value_eyes, g_eyes = _smooth_term(u.eyes, 0.1 * w.w_smooth)
        value += value_expr + value_jaw + value_eyes
        value += w.w_jaw * float((u.jaw * u.jaw).sum()) / N + w.w_eyes * float((u.eyes * u.eyes).sum()) / N
        grads["jaw"] = u.jaw * (2 * w.w_jaw / N) + (g_jaw if g_jaw is not None else 0)
        grads["eyes"] = u.eyes * (2 * w.w_eyes / N) + (g_eyes if g_eyes is not None else 0)
    return value, grads


_ORDER = ("log_f", "rot", "tr", "shape", "expr", "jaw", "eyes")


class _Regularizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: PriorWeights, *tensors: Tensor) -> Tensor:
        u = Unknowns(*tensors)
        value, grads = _terms(w, u)
        ctx.grads = [grads.get(k) for k, t in zip(_ORDER, tensors) if t is not None]
        ctx.present = [t is not None for t in tensors]
        return tensors[0].new_tensor(value)

    @staticmethod
    def backward(ctx, g: Tensor):
        it = iter(ctx.grads)
        out = [None]  # (the weights)
        for present, need in zip(ctx.present, ctx.needs_input_grad[1:]):
            gr = next(it) if present else None
            out.append(gr * g if (present and need and gr is not None) else None)
        return tuple(out)


def regularizer(w: PriorWeights, u: Unknowns) -> Tensor:
    """The terms (module docstring) as one autograd node: equal to :func:`reference_regularizer` (value and gradients)."""
    return _Regularizer.apply(w, u.log_f, u.rot, u.tr, u.shape, u.expr, u.jaw, u.eyes)
