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

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

__all__ = ["PriorWeights", "Unknowns", "regularizer", "reference_regularizer", "smooth2", "smooth2_robust", "soft_min_frames"]


@dataclass
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
    cache: dict = field(default_factory=dict, repr=False)  #: per-column constants (:func:`_columns`)


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


def _pull_back(d: Tensor, n: int) -> Tensor:
    """(N, K) gradient of ``sum(d * second_diff(x))`` with respect to (N, K) x, for (N - 2, K) ``d``."""
    g = d.new_zeros((n, d.shape[1]))
    g[:-2] += d
    g[1:-1] -= 2 * d
    g[2:] += d
    return g


def _columns(w: PriorWeights, widths: tuple[int, ...], rigid: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-column constants of the unknowns side by side (rot, tr[, jaw, eyes, expr]): smoothness weight, robust
    (0/1), quadratic and L1 magnitude weights (the latter two per frame: divided by N by the caller)."""
    key = (widths, rigid)
    if key not in w.cache:
        E = widths[4] if not rigid else 0
        smooth = [w.w_smooth] * 6 + ([] if rigid else [w.w_smooth] * 3 + [0.1 * w.w_smooth] * 6)
        quad = [0.0] * 6 + ([] if rigid else [w.w_jaw] * 3 + [w.w_eyes] * 6)
        n = len(smooth)
        sm, q, l1, robust = (torch.zeros(n + E, dtype=torch.float64) for _ in range(4))  # cast to the unknowns' type by the caller
        sm[:n], q[:n] = torch.tensor(smooth, dtype=torch.float64), torch.tensor(quad, dtype=torch.float64)
        if E:
            pw = w.expr_prior.to(sm.dtype)
            sm[n:], q[n:], l1[n:], robust[n:] = w.w_smooth_expr, w.w_expr * pw, w.w_expr_l1 * pw, (pw < 1).to(sm.dtype)
        w.cache[key] = (sm, robust, q, l1)
    return w.cache[key]


def _terms(w: PriorWeights, u: Unknowns) -> tuple[Tensor, list[Optional[Tensor]]]:
    """The regularizer's value and its gradient for each unknown (in the order of :class:`Unknowns`).

    The per-frame unknowns sit side by side in one (N, K) matrix, so each kind of term (smoothness, robust
    smoothness, quadratic and L1 priors) is a few operations on all of them at once."""
    rigid = u.expr is None
    parts = [u.rot, u.tr] if rigid else [u.rot, u.tr, u.jaw, u.eyes, u.expr]
    widths = tuple(int(x.shape[1]) for x in parts)
    X = torch.cat(parts, 1).to(u.rot.dtype)  # (N, K)
    sm, robust, q, l1 = (c.to(X.dtype) for c in _columns(w, widths, rigid))
    N = X.shape[0]
    value = w.w_focal * u.log_f**2 + w.w_shape * (u.shape * u.shape / w.shape_std**2).sum()
    G = X * (2 * q / N)
    value = value + ((X * X).sum(0) @ q) / N
    if not rigid and w.w_expr_l1 != 0:
        value = value + (X.abs().sum(0) @ l1) / N
        G = G + torch.sign(X) * (l1 / N)
    if N >= 3:
        d = X[2:] - 2 * X[1:-1] + X[:-2]
        m = N - 2
        if rigid or not bool(robust.any()):
            value = value + ((d * d).sum(0) @ sm) / m
            G = G + _pull_back(d * (2 * sm / m), N)
        else:
            delta2 = w.smooth_expr_delta**2
            root = torch.sqrt(1 + d * d / delta2)
            per = torch.where(robust > 0, 2 * delta2 * (root - 1), d * d)
            slope = torch.where(robust > 0, d / root, d)  # half the derivative of ``per``
            value = value + (per.sum(0) @ sm) / m
            G = G + _pull_back(slope * (2 * sm / m), N)
    grads = list(torch.split(G, widths, 1))
    if not rigid and w.rest and w.w_expr_rest > 0:
        expr = u.expr
        z = -(expr + (1 - w.vmask)[:, None] * 1e3) / w.expr_rest_tau  # frames without a detection do not count
        lse = torch.logsumexp(z, 0)
        rest = (-w.expr_rest_tau * (lse - torch.log(w.vmask.sum().clamp_min(1)))).clamp_min(0)
        value = value + w.w_expr_rest * (rest * rest).sum()
        grads[4] = grads[4] + torch.exp(z - lse) * (2 * w.w_expr_rest * rest)  # d softmin / d x: the softmax over the frames
    g_shape = u.shape * (2 * w.w_shape / w.shape_std**2)
    if rigid:
        return value, [2 * w.w_focal * u.log_f, grads[0], grads[1], g_shape]
    return value, [2 * w.w_focal * u.log_f, grads[0], grads[1], g_shape, grads[4], grads[2], grads[3]]


class _Regularizer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: PriorWeights, *tensors: Tensor) -> Tensor:
        value, grads = _terms(w, Unknowns(*tensors))
        ctx.grads = grads
        return value

    @staticmethod
    def backward(ctx, g: Tensor):
        grads = ctx.grads + [None] * (len(ctx.needs_input_grad) - 1 - len(ctx.grads))
        return (None,) + tuple(gr * g if need else None for gr, need in zip(grads, ctx.needs_input_grad[1:]))


def regularizer(w: PriorWeights, u: Unknowns) -> Tensor:
    """The terms (module docstring) as one autograd node: equal to :func:`reference_regularizer` (value and gradients)."""
    return _Regularizer.apply(w, u.log_f, u.rot, u.tr, u.shape, u.expr, u.jaw, u.eyes)
