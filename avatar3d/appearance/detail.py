"""Full-resolution albedo and surface detail (displacement + normal maps) from a tracked video, streamed.

The second pass of the appearance stage (issue #13), after :mod:`.fusion` has fixed one light for the
capture at a working resolution: it goes over the frames once, in batches, and keeps per texel only
sufficient statistics (31 float32 numbers, no per-observation storage), so 300 frames into a 2048^2 map
stay within ~2-3 GB.

**Model.** A texel t with albedo ``a`` (3,) and a small detail slope ``g = (dh/dt, dh/db)`` (metres per
metre along its tangent and bitangent), seen in frame f with base (posed mesh) normal ``n`` and tangent
frame ``(T, B)``, shows the linear colour (Lambert, capture light ``L`` (9, 3) radiance SH)::

    c = a * E(n') / pi + spec,     n' = normalize(n - g_t T - g_b B)    (bump mapping)
      ~ a * (s + j . g),           s = v E(n) / pi,   j = -v (dE/dT, dE/dB) / pi

with ``v`` an optional per-texel visibility (self-shadowing) and ``spec`` an optional specular radiance the
caller models (subtracted). ``E`` is a quadratic polynomial of the normal, so its directional derivatives are
exact central differences. The head turns under the fixed light, so the texel's ``(s, j)`` change from frame
to frame and ``g`` is constrained (2 unknowns per texel) where a constant albedo is not enough to explain
the colour's changes. Per texel, in closed form:

1. ``a0 = sum w s c / sum w s^2`` (per channel: fusion's albedo, g = 0);
2. one Gauss-Newton step of the bilinear model from ``(a0, 0)``: a 5x5 system for ``(a, g)`` with the data term
   ``sum_f w |c - a s - a0 j.g|^2`` (``w`` = cos^2 view weight) and a Gaussian prior on the slope,
   ``(noise / slope_prior)^2 |g|^2``; its sums over frames are the statistics kept.

The slopes are then integrated into a height map (:class:`~.heightfield.HeightIntegrator`: screened Poisson,
details wider than ``detail_scale`` are dropped as mesh/light bias), whose central-difference gradient
gives the tangent-space normal map (glTF, as the ground truth's ``tangent_normals``). Confidence per
texel = the slope's data information over data + prior (the part of ``j`` not explained by ``s``, i.e. by the
albedo, counts). Unseen texels: albedo from :class:`~.uvmap.UVFiller`, height flat.

**Measured** (tests/test_appearance_detail.py). With exact shading of a known height on the capture's real
geometry (no images), the normal map's error is 0.30x the flat normal's and the displacement correlates 0.93
with the truth: the model, tangent frames and integration are right. On the path-traced capture (24 frames
at 192^2) the true detail is below the images' resolution (a pixel is ~2.1 mm on the face; pores and 0.45 mm
folds): even the true displacement blurred to 2 mm is only 20% closer to the truth than the flat normal at
256^2, and what the pass measures is dominated by unmodelled effects (self-shadowing in eye sockets and
nostrils, sub-pixel misregistration across brow/lip edges): with a loose prior (``slope_prior`` 0.02) the
normal error is 1.27x the base mesh's, with the default (0.007) 1.00x (true parameters 0.998x, tracked
1.002x). The default is therefore conservative: detail appears where many frames agree on it (higher
resolution input, more head motion), flat elsewhere.

Speed and memory (benchmarks/bench_appearance.py, a 300-frame 512 px track of d3, this shared 2-core Xeon, one
torch thread: with two the thread pool fought other jobs and ran ~3x slower): ~0.28-0.33 s a frame into
1024^2 (K ~280k texels seen per frame); 1024^2 maps in 45 s with the default 120 frames read (light fused on 60
frames included), 114 s reading all 300; peak 1.1 GB. 2048^2 from all 300 frames peaked at 3.2 GB resident
(the statistics: 31 float32 per texel, 0.4 GB).

Shapes: R x R maps (row 0 = top = v 1), M texels inside the UV charts, K texels seen in one frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..models.base import HeadModel
from ..render.lighting import irradiance_basis
from .heightfield import HeightIntegrator, TangentGeometry, tangent_normals
from .texel_stream import FrameTexels, StreamOptions, TexelStream, optional_map, spread, valid_frames
from .uvmap import UVFiller, UVTexels

__all__ = ["DetailOptions", "DetailMaps", "DetailStatistics", "DetailPass", "Specular"]

#: ``specular(world_normals (K, 3), view_dirs (K, 3), texel_ids (K,)) -> (K, 3)`` linear radiance to subtract.
Specular = Callable[[Tensor, Tensor, Tensor], Tensor]
#: Columns of the statistics: per channel the 10 weighted sums of w s s, w s jt, w s jb, w jt jt, w jt jb, w jb jb,
#: w c s, w c jt, w c jb, w c c; then the sum of weights.
_PER_CHANNEL = 10
_COLUMNS = 3 * _PER_CHANNEL + 1


@dataclass(frozen=True)
class DetailOptions:
    """Settings of :class:`DetailPass`.

    ``noise`` std of a colour observation (linear RGB) the slope prior is weighed against; ``slope_prior``
    std of the detail slope (metres per metre; skin detail seen from a phone is a few degrees at most);
    ``detail_scale`` metres, the widest detail integrated into the height; ``coverage_scale`` total view
    weight that gives coverage 1 - 1/e; ``stream`` frame sampling (visibility test, batch size);
    ``max_frames`` frames read at most, spread evenly over the valid ones (None: all): consecutive frames of a
    30 fps clip see the texels under nearly the same normals, and reading is the pass's cost (~0.3-0.6 s a frame
    into 1024^2 on this machine's cores);
    ``edge_contrast``: the slope's confidence is divided by ``1 + (|grad log albedo| x edge_width / edge_contrast)^2``
    (albedo gradient per metre, taken at its maximum within ``edge_width`` metres): across an albedo edge (brows, lips,
    eyelids) a sub-pixel misregistration that changes with the view looks like shading, i.e. like a slope; None: off.
    """

    noise: float = 0.02
    slope_prior: float = 0.007
    detail_scale: float = 0.004
    edge_contrast: Optional[float] = 0.3
    edge_width: float = 0.002
    max_frames: Optional[int] = 120
    coverage_scale: float = 1.0
    stream: StreamOptions = field(default_factory=StreamOptions)


class DetailMaps(NamedTuple):
    """What :meth:`DetailPass.run` returns (R x R, float32, row 0 = top of the UV layout)."""

    albedo: Tensor  #: (R, R, 3) linear diffuse albedo (in the light's scale), unseen texels filled
    coverage: Tensor  #: (R, R) in [0, 1): 1 - exp(-sum of view weights / coverage_scale); 0 = never seen
    displacement: Tensor  #: (R, R) metres along the normal (negative: into the skin), 0 outside the charts
    normal: Tensor  #: (R, R, 3) unit tangent-space normals, glTF convention; (0, 0, 1) outside the charts




def irradiance_quadric(lighting: Tensor) -> Tensor:
    """(3, 4, 4) symmetric ``Q_c`` with ``irradiance_basis(n) @ lighting[:, c] = [n 1] Q_c [n 1]^T`` for any n (not only
    unit ones: the basis is a quadratic polynomial). Fitted exactly on 20 random points."""
    g = torch.Generator().manual_seed(0)
    p = torch.randn(20, 3, generator=g, dtype=torch.float64)
    Y = torch.cat([p, torch.ones(20, 1, dtype=torch.float64)], 1)
    iu, ju = torch.triu_indices(4, 4)
    mono = Y[:, iu] * Y[:, ju]  # (20,10)
    E = irradiance_basis(p) @ lighting.double()  # (20,3)
    coef = torch.linalg.lstsq(mono, E).solution  # (10,3)
    Q = torch.zeros(3, 4, 4, dtype=torch.float64)
    off = (iu != ju).double()
    Q[:, iu, ju] = (coef * (1 - 0.5 * off)[:, None]).T
    Q[:, ju, iu] = (coef * (1 - 0.5 * off)[:, None]).T
    return Q.float()


class DetailStatistics:
    """Per-texel sufficient statistics of the detail model (see the module docstring), accumulated frame by frame.

    State: ``sums`` (M, 31) float32. :meth:`add` folds in one frame's observations; :meth:`solve` gives the albedo,
    slopes and their confidence.
    """

    def __init__(self, num_texels: int, lighting: Tensor, visibility: Optional[Tensor] = None,
                 specular: Optional[Specular] = None):
        self.sums = torch.zeros(num_texels, _COLUMNS, dtype=torch.float32)  # float32: 300 frames of 1e-7 rounding
        quadric = irradiance_quadric(torch.as_tensor(lighting, dtype=torch.float32).reshape(9, 3))  # (3,4,4)
        self.quadric_rows = quadric.permute(1, 0, 2).reshape(4, 12).contiguous()  # [n 1] @ this = (Q_c [n 1]) for c = 0..2
        self.visibility, self.specular = visibility, specular

    def add(self, obs: FrameTexels) -> None:
        """Accumulate the (K,) observations of one frame."""
        if len(obs.texel) == 0:
            return
        c = obs.colour
        if self.specular is not None:
            c = c - self.specular(obs.normal, obs.view, obs.texel)
        K = len(c)
        u = torch.empty(K, 3, 4)  # per channel (s, jt, jb, c)
        self._shading(obs, u)
        u[..., 3] = c
        uw = u * obs.weight[:, None, None]
        # The 10 distinct products, in the statistics' column order, written in place (slices, no gathers or concatenations).
        rows = torch.empty(K, _COLUMNS)
        per = rows[:, :3 * _PER_CHANNEL].view(K, 3, _PER_CHANNEL)
        torch.mul(uw[..., 0:1], u[..., 0:3], out=per[..., 0:3])
        torch.mul(uw[..., 1:2], u[..., 1:3], out=per[..., 3:5])
        torch.mul(uw[..., 2], u[..., 2], out=per[..., 5])
        torch.mul(uw[..., 3:4], u, out=per[..., 6:10])
        rows[:, -1] = obs.weight
        self.sums.index_add_(0, obs.texel, rows)

    def _shading(self, obs: FrameTexels, u: Tensor) -> None:
        """Writes into ``u[..., :3]`` (K, 3, 3), per channel: ``s = v E(n)/pi`` and the slope derivatives
        ``-v dE/dT / pi``, ``-v dE/dB / pi``. ``E(n) = [n 1] Q [n 1]^T`` (a quadric per channel), so
        ``dE/dT = 2 T . (Q [n 1])[:3]``."""
        n = obs.normal
        K = len(n)
        Y = torch.cat([n, torch.ones(K, 1)], 1)  # (K,4)
        QY = (Y @ self.quadric_rows).view(K, 3, 4)
        u[..., 0] = (QY * Y[:, None]).sum(-1)
        grad = QY[..., :3] * (-2.0)
        u[..., 1] = (grad * obs.tangent[:, None]).sum(-1)
        u[..., 2] = (grad * obs.bitangent[:, None]).sum(-1)
        u[..., :3] /= np.pi
        if self.visibility is not None:
            u[..., :3] *= self.visibility[obs.texel][:, None, None]

    @property
    def weight(self) -> Tensor:
        """(M,) total view weight per texel."""
        return self.sums[:, 3 * _PER_CHANNEL]

    def solve(self, noise: float, slope_prior: float, chunk: int = 1 << 18) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Albedo (M, 3), slopes (M, 2) (dh/dt, dh/db), confidence (M,) in [0, 1), seen (M,) bool."""
        mu = (noise / slope_prior) ** 2
        M = len(self.sums)
        albedo, slopes, conf = torch.zeros(M, 3, dtype=torch.float64), torch.zeros(M, 2, dtype=torch.float64), torch.zeros(M, dtype=torch.float64)
        for a in range(0, M, chunk):
            albedo[a:a + chunk], slopes[a:a + chunk], conf[a:a + chunk] = self._solve(self.sums[a:a + chunk], mu)
        seen = self.sums[:, 0] > 0
        return albedo.float(), slopes.float(), conf.float(), seen

    @staticmethod
    def _solve(S: Tensor, mu: float) -> tuple[Tensor, Tensor, Tensor]:
        n = len(S)
        C = S[:, :3 * _PER_CHANNEL].double().view(n, 3, _PER_CHANNEL)  # (n, channel, 10)
        ss, sj = C[..., 0], C[..., 1:3]  # (n,3), (n,3,2)
        jj = torch.stack([C[..., 3], C[..., 4], C[..., 4], C[..., 5]], -1).view(n, 3, 2, 2)
        cs, cj = C[..., 6], C[..., 7:9]
        seen = ss > 1e-12
        a0 = torch.where(seen, cs / ss.clamp(min=1e-12), torch.zeros_like(cs))  # (n,3) albedo with g = 0
        A = torch.zeros(n, 5, 5, dtype=torch.float64)
        A[:, range(3), range(3)] = torch.where(seen, ss, torch.ones_like(ss))
        cross = a0[..., None] * sj  # (n,3,2)
        A[:, :3, 3:] = cross
        A[:, 3:, :3] = cross.transpose(1, 2)
        G = (a0[..., None, None] ** 2 * jj).sum(1)  # (n,2,2)
        A[:, 3:, 3:] = G + mu * torch.eye(2, dtype=torch.float64)
        rhs = torch.cat([cs, (a0[..., None] * cj).sum(1)], 1)
        x = torch.linalg.solve(A, rhs[..., None])[..., 0]
        # The slope's information once the albedo has taken what it can explain (Schur complement of the albedo block).
        schur = G - (cross[..., :, None] * cross[..., None, :] / torch.where(seen, ss, torch.ones_like(ss))[..., None, None]).sum(1)
        info = 0.5 * torch.diagonal(schur, dim1=1, dim2=2).sum(-1).clamp(min=0)
        return x[:, :3].clamp(min=0), x[:, 3:], info / (info + mu)


class DetailPass:
    """Streams a tracked video into full-resolution albedo, coverage, displacement and normal maps.

    Args:
        frames: the tracking directory's frames (``TrackedFrames(dir)``).
        model: its head model (with a UV layout).
        resolution: R, texels per side of the maps.
        lighting: (9, 3) radiance SH of the capture light (bands 0-2; e.g. :func:`~.fusion.fuse_appearance`'s,
            grey-light normalised: the albedo is then in that light's scale).
        specular: optional ``specular(world_normals (K, 3), view_dirs (K, 3), texel_ids (K,)) -> (K, 3)`` linear
            radiance subtracted from every observation (texel ids index :attr:`texels`' M texels).
        visibility: optional (R, R) or (M,) fraction of the light each texel receives (self-shadowing), in [0, 1].
        options: :class:`DetailOptions`.

    After :meth:`run`: ``observed`` (R, R) bool, ``confidence`` (R, R) slope confidence, ``timings`` seconds per stage,
    ``cg_iterations`` of the height integration, ``frames_read``.
    """

    def __init__(self, frames: TrackedFrames, model: HeadModel, resolution: int, lighting: Tensor,
                 specular: Optional[Specular] = None, visibility: Optional[Tensor] = None,
                 options: DetailOptions = DetailOptions()):
        self.frames, self.model, self.opts = frames, model, options
        self.texels = UVTexels(model, resolution)
        self.stats = DetailStatistics(self.texels.count, lighting, optional_map(visibility, self.texels), specular)
        self.timings: dict[str, float] = {}

    def run(self, progress: Optional[Callable[[int, int], None]] = None) -> DetailMaps:
        """Read every valid frame once, then solve, integrate and fill. ``progress(done, total)`` after each frame."""
        t0 = time.perf_counter()
        index = valid_frames(self.frames)
        if self.opts.max_frames is not None:
            index = spread(index, self.opts.max_frames)
        stream = TexelStream(self.frames, self.model, self.texels, self.opts.stream, index)
        self.frames_read = len(index)
        for k, obs in enumerate(stream):
            self.stats.add(obs)
            if progress is not None:
                progress(k + 1, len(stream))
        t1 = time.perf_counter()
        albedo, slopes, conf, seen = self.stats.solve(self.opts.noise, self.opts.slope_prior)
        t2 = time.perf_counter()
        geometry = TangentGeometry(self.model, self.texels)
        metres_per_texel = float(geometry.Ju.norm(dim=-1).median()) / self.texels.resolution
        integrate = HeightIntegrator(geometry, self.opts.detail_scale / metres_per_texel)
        if self.opts.edge_contrast is not None:
            conf = conf / (1 + (self._albedo_edges(albedo, seen, metres_per_texel) / self.opts.edge_contrast) ** 2)
        height = integrate(slopes, conf * seen)
        normal = tangent_normals(height, geometry)
        t3 = time.perf_counter()
        weight = self.stats.weight.float()
        filled, _ = UVFiller(self.texels, self.model)(albedo, weight * seen)
        t4 = time.perf_counter()
        self.timings = {"stream": t1 - t0, "solve": t2 - t1, "integrate": t3 - t2, "fill": t4 - t3}
        self.cg_iterations = integrate.iterations
        img = lambda m: self.texels.to_image(m.float()[:, None])[..., 0]  # noqa: E731
        self.observed, self.confidence, self.slopes = img(seen) > 0, img(conf * seen), slopes
        coverage = 1 - torch.exp(-weight / self.opts.coverage_scale)
        return DetailMaps(filled.clamp(min=0).float(), img(coverage), height, normal)

    def _albedo_edges(self, albedo: Tensor, seen: Tensor, metres_per_texel: float) -> Tensor:
        """(M,) albedo contrast over ``edge_width``: max nearby |grad log luminance| (per metre) x edge_width."""
        tx = self.texels
        lum = (albedo * torch.tensor([0.2126, 0.7152, 0.0722])).sum(-1).clamp(min=1e-3).log() * seen
        img = tx.to_image(lum[:, None])[..., 0].double()
        gy, gx = torch.gradient(img)
        grad = torch.sqrt(gx * gx + gy * gy) / metres_per_texel
        inside = tx.to_image(seen.float()[:, None])[..., 0] > 0
        interior = -torch.nn.functional.max_pool2d(-inside.double()[None, None], 3, 1, 1)[0, 0] > 0.5  # no unseen neighbour
        grad = torch.where(interior, grad, torch.zeros_like(grad))
        k = max(1, int(round(self.opts.edge_width / metres_per_texel)))
        grad = torch.nn.functional.max_pool2d(grad[None, None], 2 * k + 1, 1, k)[0, 0]
        return (grad * self.opts.edge_width).reshape(-1)[tx.index].float()
