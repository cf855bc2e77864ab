"""Reflectance from a tracked video: environment light, shadow-free albedo, specular and roughness.

The second step of the reflectance capture (issue #13), after :mod:`.fusion` (whose observations it
reuses). Model of a pixel, linear RGB (the BRDF of :mod:`avatar3d.render.brdf`)::

    colour(t, f) = albedo_t / pi * sum_w T_tf[w] L_w  +  ao_tf * Lpre(r_tf, rough_t) * (f0_t scale + bias)

* ``L`` (W, 3): the capture's environment on a low-resolution equirectangular grid (``env_height`` x
  2 ``env_height`` pixels, :func:`.visibility.env_grid`), the light of the whole capture;
* ``T_tf[w] = vis max(0, n.w) dOmega_w``: the texel's light transfer in frame f with self-shadowing
  (:class:`.visibility.LightTransfer`: the head's shadow maps, turned with the head), so the capture
  light's shadows go into the shading, not the albedo;
* the specular lobe by the split sum (Karis) of the current ``L`` (:class:`~avatar3d.render.brdf.PrefilteredEnvironment`
  at the reflection ``r_tf`` of the view direction), times the texel's ambient occlusion ``ao`` (specular
  occlusion); ``f0 = 0.08 specular``, perceptual roughness ``rough``.

:class:`ReflectanceFit` alternates (``iterations`` rounds): subtract the specular of the current
environment and materials; fit ``L`` by least squares over a subsample of the observations (rows
``albedo/pi T``) plus **background pixels** (the environment seen directly behind the head: rows that
pick one grid pixel; clipped pixels left out) with a smoothness prior on the sphere and a weak grey
(chromaticity) prior, ``L >= 0`` by an active set; the per-texel albedo (weighted least squares of
``colour - specular`` on ``T L / pi``); then the materials: per region (cells of a ``cells`` x ``cells``
grid over the UV layout, face texels only) the roughness on a grid of candidates and f0 in closed form,
each with the skin prior as a penalty (roughness :data:`~.maps.SKIN_ROUGHNESS` +- ``roughness_sigma``,
f0 0.028 +- ``f0_sigma``). The background pixels fix the light's absolute scale and colour where
they see it, which the images of the head alone cannot (the albedo/light ambiguity of :mod:`.fusion`);
without them (``background=False``) the grey-light normalisation of :mod:`.fusion` applies.

**Measured** on the path-traced test capture with its true parameters (tests/test_appearance_reflectance.py,
24 frames at 192^2, 128^2 maps, 15 s on two idle cores, 1-2 min on busy ones), relighting PSNR over face pixels of our
maps shaded by :func:`avatar3d.render.pbr.render_pbr` under three held-out environments against Mitsuba
(64 spp, 2x2 averaged):

=====================================  ====================  =========  ==========  =========================
fit                                    studio@120 / sunset    overcast   albedo      roughness / specular MAE
=====================================  ====================  =========  ==========  =========================
light estimated (default)              27.3 / 25.6 dB         28.7 dB    29.1 dB     0.059 / 0.023 (priors:
                                                                                     0.044 / 0.021)
the capture's light known              33.6 / 32.6 dB         38.1 dB    28.2 dB     0.040 / 0.024
true maps (no normal map), ceiling     31.8 / 29.8 dB         34.8 dB    --          --
=====================================  ====================  =========  ==========  =========================

(albedo PSNR after one per-channel scale.) The estimated light is the weak link: its face-facing part
comes out ~15-20 % too dim (the albedo correspondingly bright: 1.15-1.24x the truth per channel, 1.05x
with the light known). **Why (measured)**: not the forward model (the true maps through our renderer are only
4-6 % darker than Mitsuba's path trace of them, red the most: interreflection and the principled BSDF's diffuse)
but the fit's scale. The background probe sees the environment behind the head only (rows 5-10, longitudes
beyond +-160 degrees on the test capture); the front, which lights the face, is tied to it only through the
few texels that see both, so along the front's albedo/light scale the objective is nearly flat (0.06 % over
15 %) and the alternation leaves the scale where fusion's first albedo put it (fusion's grey-light convention,
mean radiance 1): started from the true albedo the same fit stays at albedo gains 0.99, started from fusion's
it stays at 0.83-0.85 and creeps +0.4 % a round. Letting the objective choose (a line search along the
update, or along the unseen front's level, with each texel's albedo eliminated) moved the scale but not to the
truth: along the front's level the objective falls monotonically (model errors, not the data, decide it:
gains went to 1.34 and relighting lost 6 dB); along the updates it stopped at gains 1.05 (relit raw
28.3 / 26.6 / 31.0 dB) but the albedo score fell to 27.4 dB, below its 28 dB target. So the front's level is
not observable from this capture with this model, and it stays a convention. The per-region roughness moves little from the prior: on
this capture the prior alone is already within 0.044 of the truth, and the per-region fit under the
estimated light does worse (0.059; under the true light better, 0.040).

Shapes: K observations, M texels, W environment pixels, N frames, V vertices, C cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..render.brdf import PrefilteredEnvironment, lut_lookup, reflect, specular_to_f0, split_sum_lut
from ..render.color import srgb_decode
from ..render.lighting import EnvironmentMap
from .fusion import TexelObservations
from .maps import SKIN_ROUGHNESS, SKIN_SPECULAR
from .uvmap import UVTexels
from .visibility import LightTransfer

__all__ = ["ReflectanceOptions", "ReflectanceFit", "BackgroundRays", "grid_environment"]


@dataclass(frozen=True)
class ReflectanceOptions:
    """Settings of :class:`ReflectanceFit` (see the module docstring).

    ``env_height`` rows of the environment grid; ``iterations`` rounds (materials in the last ``material_iterations``); ``light_samples`` / ``material_samples``
    observations the light / the materials are fitted on; ``smooth_weight`` / ``grey_weight`` the environment's smoothness and chromaticity
    priors relative to the data; ``background`` use background pixels (``background_per_frame`` each,
    ``background_weight`` relative to a face observation, outside the person mask dilated ``mask_dilate`` px; off by
    default: the background is a light probe only when it is the distant environment, as in a path-traced capture;
    a real room's wall behind the person is near, and its brightness put into the environment behind the head
    gives bright grazing specular rims: on d3 the re-render error rose from 8.7 to 15.5 grey levels with it);
    ``cells`` material grid cells per UV side; ``roughness_grid`` candidates; ``roughness_sigma`` / ``f0_sigma``
    the priors' widths; ``min_cell_obs`` observations a cell needs to leave its prior; ``effective_obs`` how many
    independent samples a cell's data count as against the priors; ``shadows`` self-shadowing.
    """

    env_height: int = 16
    iterations: int = 6
    material_iterations: int = 2
    light_samples: int = 20_000
    material_samples: int = 40_000
    smooth_weight: float = 0.02
    grey_weight: float = 1.0
    background: bool = False
    specular_in_light: bool = False
    background_per_frame: int = 400
    background_weight: float = 1.0
    mask_dilate: int = 4
    cells: int = 8
    roughness_grid: tuple[float, ...] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
    roughness_sigma: float = 0.1
    f0_sigma: float = 0.01
    min_cell_obs: int = 200
    effective_obs: float = 30.0
    shadows: bool = True


def grid_environment(radiance: Tensor, height: int) -> EnvironmentMap:
    """The (W, 3) grid radiance as an :class:`EnvironmentMap` (``height`` x 2 ``height``)."""
    return EnvironmentMap(radiance.detach().float().clamp(min=0).reshape(height, 2 * height, 3).numpy().copy())


class BackgroundRays:
    """Background pixels of the frames (outside the dilated person mask, not clipped): their world ray
    directions ``dirs`` (B, 3) and linear colours ``colour`` (B, 3), ``per_frame`` a frame."""

    def __init__(self, frames: TrackedFrames, used: np.ndarray, per_frame: int, dilate: int, seed: int = 0):
        g = np.random.default_rng(seed)
        dirs, cols = [], []
        for i in np.nonzero(used)[0]:
            image, mask = frames.image(int(i)), frames.mask(int(i))
            m = torch.as_tensor(mask > 127).float()[None, None]
            m = torch.nn.functional.max_pool2d(m, 2 * dilate + 1, 1, dilate)[0, 0].numpy() > 0.5
            img = srgb_decode(image.astype(np.float32) / 255.0)
            ok = (~m) & (image.max(-1) < 250)
            ys, xs = np.nonzero(ok)
            if len(ys) == 0:
                continue
            pick = g.choice(len(ys), min(per_frame, len(ys)), replace=False)
            ys, xs = ys[pick], xs[pick]
            cam = frames.camera(int(i))
            K, w2c = cam.K.double().numpy(), cam.world_to_cam.double().numpy()
            d = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64) @ np.linalg.inv(K).T @ w2c[:3, :3]
            dirs.append(d / np.linalg.norm(d, axis=-1, keepdims=True))
            cols.append(img[ys, xs])
        self.dirs = torch.as_tensor(np.concatenate(dirs) if dirs else np.zeros((0, 3)), dtype=torch.float32)
        self.colour = torch.as_tensor(np.concatenate(cols) if cols else np.zeros((0, 3)), dtype=torch.float64)


class ReflectanceFit:
    """Environment, albedo and per-region specular/roughness on :class:`TexelObservations` (module docstring).

    ``light`` (W, 3): a known environment on the grid, kept fixed (None: estimated).
    State: ``light`` (W, 3) grid radiance, ``albedo`` (M, 3), ``roughness`` (M,), ``specular`` (M,) intensity,
    ``cell_roughness`` / ``cell_specular`` (C,) the fitted regions (NaN: prior), ``cell_count`` (C,) observations.
    """

    def __init__(self, obs: TexelObservations, texels: UVTexels, transfer: LightTransfer, options: ReflectanceOptions,
                 fit_texels: Tensor, background: Optional[BackgroundRays] = None, albedo: Optional[Tensor] = None,
                 light: Optional[Tensor] = None):
        self.obs, self.tx, self.lt, self.opts = obs, texels, transfer, options
        self.bg = background
        M, W = texels.count, len(transfer.dirs)
        self.colour, self.weight = obs.colour.double(), obs.weight.double()
        self.light = torch.full((W, 3), 0.5, dtype=torch.float64) if light is None else light.double().clone()
        self.fixed_light = light is not None
        self.albedo = albedo.double().clone() if albedo is not None else torch.full((M, 3), 0.5, dtype=torch.float64)
        self.roughness = torch.full((M,), SKIN_ROUGHNESS, dtype=torch.float64)
        self.specular = torch.full((M,), SKIN_SPECULAR, dtype=torch.float64)
        self.fit_texels = fit_texels
        rows = torch.nonzero(fit_texels[obs.texel])[:, 0]
        self.light_rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:options.light_samples]].sort()[0]
        R, c = texels.resolution, options.cells
        r, col = texels.index // R, texels.index % R
        self.cell = (r * c // R) * c + col * c // R  # (M,) cell of each texel
        self.lut = split_sum_lut()
        self.seen = torch.zeros(M, dtype=torch.bool)
        self._frame_data()

    # ------------------------------------------------------------------ per frame: transfer and occlusion
    def _frame_data(self) -> None:
        """Per observation its texel's ambient occlusion ``ao`` (K,), and the light rows' transfer ``T`` (k, W)."""
        obs, tx = self.obs, self.tx
        K, W = len(obs.texel), len(self.lt.dirs)
        self.ao = torch.ones(K, dtype=torch.float64)
        self.T_rows = torch.zeros(len(self.light_rows), W, dtype=torch.float64)
        self._T_frames: dict[int, Tensor] = {}
        self._groups: dict[int, Tensor] = {}
        order = torch.argsort(obs.frame)
        bounds = torch.searchsorted(obs.frame[order], torch.arange(obs.num_frames + 1))
        in_light = torch.zeros(K, dtype=torch.long) - 1
        in_light[self.light_rows] = torch.arange(len(self.light_rows))
        for f in range(obs.num_frames):
            sel = order[bounds[f]:bounds[f + 1]]
            if len(sel) == 0:
                continue
            T = self.lt.transfer(obs.vertices[f], occlusion=self.opts.shadows)  # (V, W)
            self._T_frames[f], self._groups[f] = T.to(torch.float32), sel
            free = self.lt.transfer(obs.vertices[f], occlusion=False).sum(1)
            ao_v = (T.sum(1) / free.clamp(min=1e-9)).clamp(0, 1)
            faces, bary = tx.faces[obs.texel[sel]], tx.bary[obs.texel[sel]]
            self.ao[sel] = (ao_v[faces] * bary).sum(1).double()
            lr = in_light[sel]
            keep = lr >= 0
            if keep.any():
                self.T_rows[lr[keep]] = torch.einsum("kjw,kj->kw", T[faces[keep]], bary[keep]).double()

    def irradiance(self) -> Tensor:
        """(K, 3) irradiance ``T L`` of every observation (per frame: vertex irradiance, interpolated)."""
        obs, tx = self.obs, self.tx
        E = torch.zeros(len(obs.texel), 3, dtype=torch.float64)
        L = self.light.float()
        for f, T in self._T_frames.items():
            sel = self._groups[f]
            Ev = T @ L  # (V, 3)
            E[sel] = (Ev[tx.faces[obs.texel[sel]]] * tx.bary[obs.texel[sel], :, None]).sum(1).double()
        return E

    # ------------------------------------------------------------------ specular
    def prefiltered(self) -> PrefilteredEnvironment:
        """The current environment's GGX prefiltered stack (small: the grid's resolution)."""
        h = self.opts.env_height
        return PrefilteredEnvironment.from_environment(grid_environment(self.light, h), width=2 * h)

    def _lobe(self, pre: PrefilteredEnvironment, rows: Tensor, roughness: Tensor) -> tuple[Tensor, Tensor]:
        """Per observation ``rows`` the occluded prefiltered radiance (k, 3) and the split sum's (scale, bias) (k, 2)."""
        n, v = self.obs.normal[rows], self.obs.view[rows]
        r = roughness.float()[:, None]
        nov = (n * v).sum(-1, keepdim=True).clamp(1e-4, 1)
        rad = pre.radiance(reflect(v, n), r) * self.ao[rows, None].float()
        return rad.double(), lut_lookup(self.lut, r, nov).double()

    def specular_radiance(self, pre: PrefilteredEnvironment) -> Tensor:
        """(K, 3) specular radiance of every observation with the current materials."""
        rows = torch.arange(len(self.obs.texel))
        t = self.obs.texel
        rad, sb = self._lobe(pre, rows, self.roughness[t])
        f0 = specular_to_f0(self.specular[t])[:, None]
        return rad * (f0 * sb[:, :1] + sb[:, 1:])

    # ------------------------------------------------------------------ the light
    def _smoothness(self) -> Tensor:
        """(W, W) graph Laplacian of the equirectangular grid (longitude wraps; neighbours in rows and columns)."""
        h = self.opts.env_height
        w = 2 * h
        idx = torch.arange(h * w).view(h, w)
        pairs = [torch.stack([idx.reshape(-1), idx.roll(-1, 1).reshape(-1)], 1), torch.stack([idx[:-1].reshape(-1), idx[1:].reshape(-1)], 1)]
        p = torch.cat(pairs)
        Lap = torch.zeros(h * w, h * w, dtype=torch.float64)
        Lap[p[:, 0], p[:, 0]] += 1
        Lap[p[:, 1], p[:, 1]] += 1
        Lap[p[:, 0], p[:, 1]] -= 1
        Lap[p[:, 1], p[:, 0]] -= 1
        return Lap

    def update_light(self, spec: Tensor) -> None:
        """Least squares of ``colour - spec = albedo/pi T L`` (+ background rows) with the priors; ``L >= 0``
        (nothing when the light was given)."""
        if self.fixed_light:
            return
        r = self.light_rows
        W = self.T_rows.shape[1]
        a = self.albedo[self.obs.texel[r]] / np.pi  # (k, 3)
        w = self.weight[r]
        if self.opts.specular_in_light:
            # The specular lobe is linear in the light too: with f0 held near skin's by its prior, the highlights
            # carry the light's absolute scale, which the diffuse term shares with the albedo.
            y, S = self.colour[r], self._specular_rows(r)
        else:
            y, S = self.colour[r] - spec[r], 0.0
        G = torch.zeros(3 * W, 3 * W, dtype=torch.float64)
        rhs = torch.zeros(3 * W, dtype=torch.float64)
        for c in range(3):
            A = self.T_rows * a[:, c:c + 1] + S
            G[c * W:(c + 1) * W, c * W:(c + 1) * W] = A.T @ (A * w[:, None])
            rhs[c * W:(c + 1) * W] = A.T @ (w * y[:, c])
        scale = torch.diagonal(G).mean()
        if self.bg is not None and len(self.bg.dirs):
            pick = (self.bg.dirs.double() @ self.lt.dirs.double().T).argmax(1)  # nearest grid pixel
            bw = self.opts.background_weight * float(w.mean())
            for c in range(3):
                cnt = torch.zeros(W, dtype=torch.float64).index_add_(0, pick, torch.full((len(pick),), bw, dtype=torch.float64))
                G[c * W + torch.arange(W), c * W + torch.arange(W)] += cnt
                rhs[c * W:(c + 1) * W] += torch.zeros(W, dtype=torch.float64).index_add_(0, pick, bw * self.bg.colour[:, c])
        Lap = self._smoothness()
        centre = torch.eye(3, dtype=torch.float64) - 1.0 / 3
        G = G + self.opts.smooth_weight * scale * torch.kron(torch.eye(3, dtype=torch.float64), Lap)
        G = G + self.opts.grey_weight * scale * torch.kron(centre, torch.eye(W, dtype=torch.float64))
        G = G + 1e-6 * scale * torch.eye(3 * W, dtype=torch.float64)
        free = torch.ones(3 * W, dtype=torch.bool)
        for _ in range(6):  # active set: pixels that come out negative are fixed at 0 and the rest refitted
            x = torch.zeros(3 * W, dtype=torch.float64)
            idx = torch.nonzero(free)[:, 0]
            x[idx] = torch.linalg.solve(G[idx][:, idx], rhs[idx])
            if (x >= -1e-9).all():
                break
            free &= x > 0
        L = x.clamp(min=0).view(3, W).T
        if self.bg is None:  # grey-light normalisation (fusion's convention): mean radiance 1
            L = L / (L * self.lt.area[:, None].double()).sum(0).clamp(min=1e-9) * 4 * np.pi
        self.light = L

    def _specular_rows(self, rows: Tensor) -> Tensor:
        """(k, W) specular radiance per unit radiance of each grid pixel: ``f_spec(n, v, w) T[w]`` (T holds the
        visibility, the cosine and the solid angle) with the current materials."""
        from ..render.brdf import brdf

        t = self.obs.texel[rows]
        n, v = self.obs.normal[rows].double()[:, None], self.obs.view[rows].double()[:, None]
        rough, f0 = self.roughness[t][:, None, None], specular_to_f0(self.specular[t])[:, None, None]
        out = torch.zeros_like(self.T_rows)
        for i in range(0, len(rows), 4096):
            sl = slice(i, i + 4096)
            _, fs = brdf(n[sl], v[sl], self.lt.dirs.double()[None], torch.zeros(1, 1, 3, dtype=torch.float64), rough[sl], f0[sl])
            out[sl] = fs[..., 0] * self.T_rows[sl]
        return out

    # ------------------------------------------------------------------ albedo
    def update_albedo(self, spec: Tensor) -> None:
        """albedo_t = sum w s (c - spec) / sum w s^2, s = irradiance / pi."""
        s = (self.irradiance() / np.pi).clamp(min=1e-6)
        w = self.weight[:, None]
        num = torch.zeros_like(self.albedo).index_add_(0, self.obs.texel, w * s * (self.colour - spec))
        den = torch.zeros_like(self.albedo).index_add_(0, self.obs.texel, w * s * s)
        self.seen = den[:, 0] > 0
        self.albedo = torch.where(den > 0, num / den.clamp(min=1e-12), self.albedo).clamp(0, 1)

    # ------------------------------------------------------------------ materials per cell
    def update_materials(self, pre: PrefilteredEnvironment) -> None:
        """Per cell (face texels with >= ``min_cell_obs`` observations): roughness from the candidate grid and f0 in
        closed form, each against its skin prior; other texels keep the priors."""
        o = self.opts
        t = self.obs.texel
        fit = self.fit_texels[t]
        C = o.cells * o.cells
        y = self.colour - self.albedo[t] * self.irradiance() / np.pi  # (K, 3) what the specular must explain
        cell = self.cell[t]
        rows = torch.nonzero(fit)[:, 0]
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(1))[:o.material_samples]].sort()[0]
        count = torch.zeros(C, dtype=torch.long).index_add_(0, cell[rows], torch.ones_like(rows))
        f0p, f0s = specular_to_f0(SKIN_SPECULAR), o.f0_sigma
        best_err = torch.full((C,), float("inf"), dtype=torch.float64)
        best_r = torch.full((C,), SKIN_ROUGHNESS, dtype=torch.float64)
        best_f0 = torch.full((C,), f0p, dtype=torch.float64)
        w = self.weight[rows]
        noise = float((w[:, None] * y[rows] ** 2).sum() / w.sum() / 3)  # residual scale: sets the priors' weight
        for rough in o.roughness_grid:
            rad, sb = self._lobe(pre, rows, torch.full((len(rows),), rough, dtype=torch.float64))
            A, B = rad * sb[:, :1], rad * sb[:, 1:]  # spec = f0 A + B
            yy = y[rows] - B
            cr = cell[rows]
            AA = torch.zeros(C, dtype=torch.float64).index_add_(0, cr, w * (A * A).sum(1))
            Ay = torch.zeros(C, dtype=torch.float64).index_add_(0, cr, w * (A * yy).sum(1))
            yy2 = torch.zeros(C, dtype=torch.float64).index_add_(0, cr, w * (yy * yy).sum(1))
            wsum = torch.zeros(C, dtype=torch.float64).index_add_(0, cr, w).clamp(min=1e-12)
            # Data in units of the residual's variance, counted as ``effective_obs`` independent samples a cell (the
            # residuals are mostly model error, correlated within a cell), against the skin priors.
            k = o.effective_obs / (3 * noise * wsum)
            lam = 1.0 / f0s**2
            f0 = ((k * Ay + lam * f0p) / (k * AA + lam)).clamp(0.0, 0.08)
            err = k * (yy2 - 2 * f0 * Ay + f0 * f0 * AA) + lam * (f0 - f0p) ** 2 + ((rough - SKIN_ROUGHNESS) / o.roughness_sigma) ** 2
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_r = torch.where(better, torch.full_like(best_r, rough), best_r)
            best_f0 = torch.where(better, f0, best_f0)
        ok = count >= o.min_cell_obs
        self.cell_count = count
        self.cell_roughness = torch.where(ok, best_r, torch.full_like(best_r, float("nan")))
        self.cell_specular = torch.where(ok, best_f0 / specular_to_f0(1.0), torch.full_like(best_f0, float("nan")))
        self.roughness = self._per_texel(torch.where(ok, best_r, torch.full_like(best_r, SKIN_ROUGHNESS)))
        self.specular = self._per_texel(torch.where(ok, self.cell_specular, torch.full_like(best_f0, SKIN_SPECULAR)))
        keep = self.fit_texels
        self.roughness = torch.where(keep, self.roughness, torch.full_like(self.roughness, SKIN_ROUGHNESS))
        self.specular = torch.where(keep, self.specular, torch.full_like(self.specular, SKIN_SPECULAR))

    def _per_texel(self, cells: Tensor) -> Tensor:
        """(M,) texel values bilinearly interpolated between the centres of the (C,) cells (no blocky cell edges)."""
        c, R = self.opts.cells, self.tx.resolution
        grid = cells.view(1, 1, c, c).double()
        row, col = (self.tx.index // R).double(), (self.tx.index % R).double()
        xy = torch.stack([(col + 0.5) / R * 2 - 1, (row + 0.5) / R * 2 - 1], -1).view(1, 1, -1, 2)
        return torch.nn.functional.grid_sample(grid, xy, mode="bilinear", padding_mode="border", align_corners=False)[0, 0, 0]

    def residual(self, spec: Tensor) -> float:
        """Weighted RMS of observed - predicted colour (linear)."""
        r = self.colour - self.albedo[self.obs.texel] * self.irradiance() / np.pi - spec
        return float(torch.sqrt((self.weight[:, None] * r * r).sum() / (3 * self.weight.sum())))

    def run(self, materials: bool = True, progress=None) -> None:
        """``iterations`` rounds of light, albedo (and materials) with the specular subtracted (module docstring)."""
        spec = torch.zeros_like(self.colour)
        self.update_light(spec)
        self.update_albedo(spec)
        for it in range(self.opts.iterations):
            spec = self.specular_radiance(self.prefiltered())
            self.update_light(spec)
            self.update_albedo(spec)
            pre = self.prefiltered()
            if materials and it >= self.opts.iterations - self.opts.material_iterations:
                self.update_materials(pre)
            spec = self.specular_radiance(pre)
            self.update_albedo(spec)
            if progress is not None:
                progress(it + 1, self.opts.iterations)
        self.final_residual = self.residual(spec)
