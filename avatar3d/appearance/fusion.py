"""Multi-frame fusion of a tracked video into a diffuse albedo UV map and one SH lighting.

The first step of the reflectance capture (issue #13). The head turns under a fixed light, so each
texel is seen under several normals and every frame adds normal directions under the same light.
Model of a pixel, in linear RGB (the same diffuse shading as :func:`avatar3d.render.brdf.shade_diffuse`)::

    colour(texel t, frame f) = g_f * albedo_t * E(n_tf) / pi,     E(n) = irradiance_basis(n) @ L

with ``L`` (9, 3) the radiance SH of the light (bands 0-2, :meth:`EnvironmentMap.sh`'s basis), ``n_tf``
the texel's world (head-frame) normal in frame f, ``g_f`` an optional per-frame exposure gain.

Pipeline (small objects, one job each):

* :class:`TexelObservations` samples every frame at every texel's projected position: visibility by a
  depth test against the rasterized posed mesh (occluded texels count not at all), inside the eroded
  person mask, weight ``cos^2`` of the angle between normal and view ray (texels seen head-on count more,
  grazing ones below ``min_cos`` and back-facing ones not at all). It keeps only the (texel, frame) pairs that count.
* :class:`AlternatingFusion` alternates ``albedo = fused(observed / shading)`` (per texel the weighted
  least-squares ratio ``sum w s c / sum w s^2``) with ``L = least squares of observed vs albedo x E(n)``
  over the visible texels (and the gains, when asked), starting from a uniform white light.
* :class:`UVFiller` fills texels no frame saw (mirror, then smooth inpainting; :mod:`.uvmap`).

**The albedo/light ambiguity.** Scaling a channel of the albedo by ``s_c`` and the light by ``1/s_c``
gives the same images, so images alone cannot separate the light's colour and brightness from the
albedo's. Two priors decide it: (1) *grey light* (a hard constraint): the light's constant band is the
same in every channel and its average irradiance over the sphere is pi (a uniform light of radiance 1),
so albedo = the colour the surface would have under a white light of the capture's mean brightness;
colour casts of the capture light go into the albedo (one global per-channel scale, measured by the
tests); (2) *chromaticity* (soft, weight ``grey_weight``): the directional bands 1-2 are pulled
towards the same shape in every channel, so a coloured albedo gradient is not explained by a
coloured light gradient. The directional part of the light is told apart from slow albedo
gradients by the head turning: the same texel under different normals.

Measured on the path-traced test capture (tests/test_appearance_fusion.py; 24 frames at 192^2, 256^2
maps, about 1-2 s on two cores): albedo PSNR over observed face texels after a per-channel scale
30.5 dB with the true head parameters (the fusion's own error: unmodelled self-shadowing,
interreflection, specular and the normal map's pores), 26.9 dB after ``avatar3d track`` (tracking
misregistration); without the scale 19.9 / 23.2 dB (the grey-light normalisation fixes the overall
brightness by convention, not by measurement). The estimated light reproduces the capture's shading on
the face's cap of normals but is not the environment's SH: the normals one face sees leave much of
the sphere unconstrained. Per-frame gains (``exposure``) trade off against the light's directional
bands as the head turns; shrunk to 1 (``exposure_prior``) they cost ~1 dB on this constant-exposure capture.

Shapes: N frames, M texels inside the UV charts of an R x R map, K kept (texel, frame) observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..geometry import vertex_normals
from ..models.base import HeadModel
from ..render.camera import raster_intrinsics, world_to_clip
from ..render.color import srgb_decode, srgb_encode
from ..render.lighting import SH_K, irradiance_basis
from ..render.mesh import interpolate, rasterize
from .texel_stream import bilinear, valid_frames
from .uvmap import UVFiller, UVTexels

__all__ = ["FusionOptions", "FusionResult", "TexelObservations", "AlternatingFusion", "fuse_appearance", "uv_model", "albedo_psnr"]

#: Constant-band radiance of a uniform light of radiance 1 (average irradiance pi): the grey-light normalisation.
UNIT_DC = 1.0 / SH_K[0]


@dataclass(frozen=True)
class FusionOptions:
    """Settings of :func:`fuse_appearance`.

    ``resolution`` texels per side of the maps; ``iterations`` albedo/light alternations; ``min_cos``
    smallest cosine between normal and view ray that counts; ``depth_tolerance`` metres a texel may lie
    behind the visible surface and still count as seen; ``mask_erode`` pixels the person mask is shrunk by
    (no background at the silhouette); ``grey_weight`` the chromaticity prior on SH bands 1-2, relative to
    the data term; ``exposure`` fit a gain per frame (real phones) or not; ``coverage_scale`` total view
    weight that gives coverage 1 - 1/e; ``batch`` frames posed and rasterized at once.
    """

    resolution: int = 512
    iterations: int = 8
    min_cos: float = 0.2
    depth_tolerance: float = 1.5e-3
    mask_erode: int = 1
    grey_weight: float = 0.1
    exposure: bool = False
    coverage_scale: float = 1.0
    batch: int = 8
    light_region: Optional[str] = "face"
    light_samples: int = 200_000
    exposure_prior: float = 1.0


@dataclass
class FusionResult:
    """What :func:`fuse_appearance` estimates (R x R maps, row 0 at the top of the UV layout: v = 1)."""

    albedo: Tensor  #: (R, R, 3) linear diffuse albedo, unseen texels filled
    coverage: Tensor  #: (R, R) in [0, 1): 1 - exp(-sum of view weights / coverage_scale); 0 = never seen
    observed: Tensor  #: (R, R) bool texels some frame saw
    mirrored: Tensor  #: (R, R) bool unseen texels filled from their left-right counterpart
    charts: Tensor  #: (R, R) bool texels inside a UV triangle
    lighting: Tensor  #: (9, 3) radiance SH (bands 0-2) of the capture light, grey-light normalised
    exposure: Tensor  #: (N,) per-frame gain (ones unless ``exposure``); 0 for frames left out
    residual: float  #: weighted RMS of observed - predicted colour (linear) after the last iteration

    @property
    def albedo_srgb(self) -> Tensor:
        """(R, R, 3) the albedo sRGB-encoded, in [0, 1]."""
        return srgb_encode(self.albedo.clamp(0, 1))


class TexelObservations:
    """The colours of every texel in every frame where it is seen, with their view weights and normals.

    Attributes (K kept pairs): ``texel`` (K,) index into the M chart texels, ``frame`` (K,) frame
    index, ``colour`` (K, 3) linear RGB, ``basis`` (K, 9) :func:`irradiance_basis` of the world normal,
    ``weight`` (K,) view weight ``cos^2``; ``normal`` (K, 3) unit world normal, ``view`` (K, 3) unit world
    direction from the surface to the camera (the specular lobe's inputs); ``num_texels`` M, ``num_frames`` N;
    ``used`` (N,) bool frames read; ``vertices`` (N, V, 3) posed mesh of every frame (zeros where unused).
    """

    def __init__(self, frames: TrackedFrames, model: HeadModel, texels: UVTexels, options: FusionOptions):
        self.num_texels, self.num_frames = texels.count, len(frames)
        self.model, self.texels, self.opts = model, texels, options
        self.faces = model.faces.to(torch.int32).contiguous()
        idx = valid_frames(frames)
        self.used = np.zeros(len(frames), bool)
        self.used[idx] = True
        self.vertices = torch.zeros(len(frames), model.num_vertices, 3)
        parts = [self._batch(frames, idx[s:s + options.batch]) for s in range(0, len(idx), options.batch)]
        self.texel, self.frame, self.colour, self.basis, self.weight, self.normal, self.view = (
            torch.cat([p[k] for p in parts]) for k in range(7))

    def _pose(self, frames: TrackedFrames, idx: np.ndarray) -> Tensor:
        """(B, V, 3) posed vertices (metres, world frame) of frames ``idx``."""
        s = frames.sequence
        f = lambda a: torch.as_tensor(np.asarray(a)[idx], dtype=torch.float32)  # noqa: E731
        shape = torch.as_tensor(s.shape, dtype=torch.float32)[None].expand(len(idx), -1)
        with torch.no_grad():
            return self.model(shape, f(s.expression), f(s.pose), f(s.transl)).vertices.float()

    def _batch(self, frames: TrackedFrames, idx: np.ndarray) -> tuple[Tensor, ...]:
        verts = self._pose(frames, idx)
        self.vertices[torch.as_tensor(idx)] = verts
        normals = vertex_normals(verts, self.model.faces.long())
        P = self.texels.gather(verts)  # (B,M,3)
        Nw = torch.nn.functional.normalize(self.texels.gather(normals), dim=-1)
        out = []
        for b, i in enumerate(idx):
            out.append(self._frame(frames, int(i), verts[b], P[b], Nw[b]))
        return tuple(torch.cat([o[k] for o in out]) for k in range(7))

    def _frame(self, frames: TrackedFrames, i: int, verts: Tensor, P: Tensor, Nw: Tensor) -> tuple[Tensor, ...]:
        image, mask = frames.image(i), frames.mask(i)
        if image is None or mask is None:
            raise BadInputError(f"{frames.directory}: frame {i} ({frames.name(i)}) lacks its image or mask")
        cam = frames.camera(i)
        K, w2c, W, H = cam.K.float(), cam.world_to_cam.float(), cam.width, cam.height
        R, t = w2c[:3, :3], w2c[:3, 3]
        Pc = P @ R.T + t  # (M,3) camera frame
        cos = (Nw @ R.T * -torch.nn.functional.normalize(Pc, dim=-1)).sum(-1)
        cand = torch.nonzero((cos > self.opts.min_cos) & (Pc[:, 2] > 0))[:, 0]  # facing the camera: the depth test runs on these
        Pc, cos = Pc[cand], cos[cand]
        x = K[0, 0] * Pc[:, 0] / Pc[:, 2] + K[0, 2]  # pixel centres at integers
        y = K[1, 1] * Pc[:, 1] / Pc[:, 2] + K[1, 2]
        depth, fg = self._depth(verts, K, w2c, W, H), self._foreground(mask)
        xi, yi = x.round().long(), y.round().long()
        inside = (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
        xi, yi = xi.clamp(0, W - 1), yi.clamp(0, H - 1)
        seen = inside & fg[yi, xi] & ((Pc[:, 2] - depth[yi, xi]).abs() < self.opts.depth_tolerance)
        sel = torch.nonzero(seen)[:, 0]
        keep = cand[sel]
        img = torch.as_tensor(srgb_decode(image.astype(np.float32) / 255.0), dtype=torch.float32)
        colour = bilinear(img, x[sel], y[sel])
        cos = cos[sel]
        view = -torch.nn.functional.normalize(Pc[sel], dim=-1) @ R  # camera frame -> world: R^T d
        return (keep, torch.full_like(keep, i), colour, irradiance_basis(Nw[keep]), cos ** 2, Nw[keep], view)

    def _depth(self, verts: Tensor, K: Tensor, w2c: Tensor, W: int, H: int) -> Tensor:
        """(H, W) camera-frame depth (metres) of the visible surface, +inf on background."""
        pos = world_to_clip(verts[None], raster_intrinsics(K)[None], w2c, W, H)
        rast, _ = rasterize(pos, self.faces, (H, W))
        zc = (verts @ w2c[:3, :3].T + w2c[:3, 3])[:, 2:3]
        d = interpolate(zc[None].contiguous(), rast, self.faces)[0][0, ..., 0]
        return torch.where(rast[0, ..., 3] > 0, d, torch.full_like(d, float("inf")))

    def _foreground(self, mask: np.ndarray) -> Tensor:
        """(H, W) bool person mask, eroded by ``mask_erode`` pixels."""
        m = torch.as_tensor(mask > 127)
        e = self.opts.mask_erode
        if e > 0:
            m = -torch.nn.functional.max_pool2d(-(m.float()[None, None]), 2 * e + 1, 1, e)[0, 0] > 0.5
        return m


class AlternatingFusion:
    """Alternates the albedo (per texel) and the light (one for all frames) on :class:`TexelObservations`.

    State: ``albedo`` (M, 3), ``lighting`` (9, 3), ``gain`` (N,). See the module docstring for the
    model and the priors.
    """

    def __init__(self, obs: TexelObservations, options: FusionOptions, light_texels: Optional[Tensor] = None,
                 lighting: Optional[Tensor] = None):
        self.obs, self.opts = obs, options
        self.fixed_light = lighting is not None
        #: (K,) observations the light and gains are fitted on (texels of ``light_region``)
        for_light = torch.ones(len(obs.texel), dtype=torch.bool) if light_texels is None else light_texels[obs.texel]
        rows = torch.nonzero(for_light)[:, 0]
        self.light_rows = rows[::max(1, -(-len(rows) // options.light_samples))]  #: observations the light/gains are fitted on
        self.lighting = torch.zeros(9, 3, dtype=torch.float64)
        self.lighting[0] = UNIT_DC  # uniform white: E = pi everywhere, so albedo starts as the weighted mean colour
        if lighting is not None:
            self.lighting = torch.as_tensor(lighting, dtype=torch.float64).reshape(9, 3).clone()
        self.gain = torch.ones(obs.num_frames, dtype=torch.float64)
        self.colour = obs.colour.double()
        self.basis = obs.basis.double()
        self.weight = obs.weight.double()
        self.albedo = torch.zeros(obs.num_texels, 3, dtype=torch.float64)
        self.seen = torch.zeros(obs.num_texels, dtype=torch.bool)

    def shading(self) -> Tensor:
        """(K, 3) ``g_f E(n) / pi`` of every observation."""
        return self.gain[self.obs.frame, None] * (self.basis @ self.lighting) / np.pi

    def update_albedo(self) -> None:
        """albedo_t = sum_f w s c / sum_f w s^2 (weighted least squares of c = albedo * s per texel)."""
        s = self.shading().clamp(min=1e-6)
        w = self.weight[:, None]
        num = torch.zeros_like(self.albedo).index_add_(0, self.obs.texel, w * s * self.colour)
        den = torch.zeros_like(self.albedo).index_add_(0, self.obs.texel, w * s * s)
        self.seen = den[:, 0] > 0
        self.albedo = torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))

    def update_lighting(self) -> None:
        """Least squares of c = g A (B @ L) / pi over all observations, with the chromaticity prior, then the grey-light normalisation."""
        r = self.light_rows
        a = self.albedo[self.obs.texel[r]] * self.gain[self.obs.frame[r], None] / np.pi  # (k,3)
        w, basis, colour = self.weight[r], self.basis[r], self.colour[r]
        G = torch.zeros(27, 27, dtype=torch.float64)
        rhs = torch.zeros(27, dtype=torch.float64)
        for c in range(3):
            rows = basis * a[:, c:c + 1]  # (k,9)
            G[c * 9:(c + 1) * 9, c * 9:(c + 1) * 9] = rows.T @ (rows * w[:, None])
            rhs[c * 9:(c + 1) * 9] = rows.T @ (w * colour[:, c])
        # Chromaticity prior on bands 1-2: lam * sum_c |L_c - mean_c L|^2 (a projector, scaled to the data term).
        lam = self.opts.grey_weight * torch.diagonal(G).mean()
        centre = torch.eye(3, dtype=torch.float64) - 1.0 / 3
        band12 = torch.diag(torch.tensor([0.0] + [1.0] * 8, dtype=torch.float64))
        G = G + lam * torch.kron(centre, band12) + 1e-9 * torch.diagonal(G).mean() * torch.eye(27, dtype=torch.float64)
        L = torch.linalg.solve(G, rhs).view(3, 9).T  # (9,3)
        # Grey light: every channel's constant band = UNIT_DC; the per-channel factor moves into the albedo.
        f = UNIT_DC / L[0].clamp(min=1e-9)
        self.lighting = L * f
        self.albedo = self.albedo / f

    def update_gain(self) -> None:
        """Per-frame exposure g_f = sum w c.p / sum w p.p, normalised to geometric mean 1 (the scale is the light's)."""
        r = self.light_rows
        p = self.albedo[self.obs.texel[r]] * (self.basis[r] @ self.lighting) / np.pi
        w, f = self.weight[r, None], self.obs.frame[r]
        N = self.obs.num_frames
        num = torch.zeros(N, dtype=torch.float64).index_add_(0, f, (w * p * self.colour[r]).sum(1))
        den = torch.zeros(N, dtype=torch.float64).index_add_(0, f, (w * p * p).sum(1))
        # Shrunk towards 1 (weight exposure_prior x a mean frame's data): a frame's gain trades off against the
        # light's directional bands as the head turns (measured: unshrunk gains cost 10 dB on the Mitsuba capture).
        mu = self.opts.exposure_prior * den[den > 0].mean()
        g = (num + mu) / (den + mu)
        used = den > 0
        g[used] = g[used] / torch.exp(torch.log(g[used].clamp(min=1e-6)).mean())
        self.gain = g

    def residual(self) -> float:
        """Weighted RMS of observed - predicted colour (linear RGB)."""
        r = self.colour - self.albedo[self.obs.texel] * self.shading()
        return float(torch.sqrt((self.weight[:, None] * r * r).sum() / (3 * self.weight.sum())))

    def run(self) -> None:
        self.update_albedo()
        for _ in range(self.opts.iterations):
            if not self.fixed_light:
                self.update_lighting()
            if self.opts.exposure:
                self.update_gain()
            self.update_albedo()


def uv_model(frames: TrackedFrames, model: Optional[HeadModel] = None) -> HeadModel:
    """``model``, or the head model ``frames`` were tracked with (loaded), checked to have a UV layout.

    Raises:
        BadInputError: the model has no UVs to fuse colour into.
    """
    if model is None:
        from ..models import load_head_model

        model = load_head_model(frames.sequence.model)
    if getattr(model, "uvs", None) is None or getattr(model, "uv_faces", None) is None:
        raise BadInputError(f"head model '{frames.sequence.model}' has no UV layout to fuse colour into")
    return model


def fuse_appearance(frames: TrackedFrames, model: Optional[HeadModel] = None, options: FusionOptions = FusionOptions(),
                    lighting: Optional[Tensor] = None) -> FusionResult:
    """Estimate one SH light and a diffuse albedo UV map from a tracking directory (see the module docstring).

    Args:
        frames: the tracking directory's frames (``TrackedFrames(dir)``: images, masks, cameras, parameters).
        model: its head model; None loads ``frames.sequence.model``.
        options: :class:`FusionOptions`.
        lighting: (9, 3) radiance SH of a known light (kept fixed, not normalised: the albedo then has
            the light's absolute scale); None estimates it.
    Raises:
        BadInputError: no valid frame, a frame without image or mask, a model without UVs.
    """
    model = uv_model(frames, model)
    texels = UVTexels(model, options.resolution)
    obs = TexelObservations(frames, model, texels, options)
    light_texels = None
    if options.light_region is not None:
        light_texels = model.region(options.light_region)[texels.faces].all(1)
    fusion = AlternatingFusion(obs, options, light_texels, lighting)
    fusion.run()
    total = torch.zeros(texels.count, dtype=torch.float64).index_add_(0, obs.texel, obs.weight.double())
    filled, mirrored = UVFiller(texels, model)(fusion.albedo.float(), total.float() * fusion.seen.float())
    Rz = options.resolution
    charts = torch.zeros(Rz * Rz, dtype=torch.bool)
    charts[texels.index] = True
    gain = torch.where(torch.as_tensor(obs.used), fusion.gain, torch.zeros_like(fusion.gain))
    return FusionResult(
        albedo=filled.clamp(min=0).float(),
        coverage=texels.to_image((1 - torch.exp(-total / options.coverage_scale)).float()[:, None])[..., 0],
        observed=texels.to_image(fusion.seen.float()[:, None])[..., 0] > 0,
        mirrored=texels.to_image(mirrored.float()[:, None])[..., 0] > 0,
        charts=charts.view(Rz, Rz),
        lighting=fusion.lighting.float(),
        exposure=gain.float(),
        residual=fusion.residual(),
    )


def albedo_psnr(estimate: np.ndarray, truth: np.ndarray, where: np.ndarray, per_channel_scale: bool = True) -> float:
    """PSNR (dB, peak 1) of linear albedo ``estimate`` vs ``truth`` (H, W, 3) over texels ``where`` (H, W) bool.

    ``per_channel_scale``: first fit one least-squares gain per channel (the albedo/light scale ambiguity).
    """
    e, t = np.asarray(estimate, np.float64)[where], np.asarray(truth, np.float64)[where]
    if per_channel_scale:
        e = e * ((e * t).sum(0) / np.maximum((e * e).sum(0), 1e-12))
    mse = float(((e - t) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))
