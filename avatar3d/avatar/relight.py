"""The relightable appearance of a Gaussian head: albedo, roughness, specular and a normal per Gaussian, under a light.

:class:`PBRAppearance` (name ``"pbr"``) plugs into the avatar's appearance slot (:mod:`.appearance`). Per Gaussian
(fields, all trained): ``albedo`` (N, 3) logits of the linear diffuse albedo, ``roughness`` (N, 1) and ``specular``
(N, 1) logits of the perceptual roughness and the specular intensity (f0 = 0.08 specular, :mod:`avatar3d.render.brdf`),
``expr_albedo`` (N, K, 3) linear albedo change per unit of each driving expression coefficient (a mouth opening shows
its inside), ``residual`` (N, 3) a small display-colour residual for what the model cannot explain (kept small by its
regulariser; switched off when relit), and ``albedo_prior`` (N, 3) the appearance maps' albedo (not trained). The
normal is the Gaussian's shortest axis (:meth:`~.appearance.ShadingInputs.normals`; a Gaussian that is not flat
leans to its triangle's normal), held to its triangle's normal early in training by the ``normal`` regulariser (the
trainer lets its weight fall to a tenth over the first half of the run: measured, without that floor a few Gaussians
whose shortest axis turned sideways lit up as white specks under a new light).

**Shading** (linear RGB, the shared :mod:`avatar3d.render.brdf`), then sRGB-encoded like the training images::

    colour = srgb( albedo / pi * E(n) * shadow  +  specular_split_sum(n, v, roughness, f0) * ao )  [+ residual]

``E`` the SH irradiance of the light (bands 0-2), the specular the split sum (GGX prefiltered environment times
the pre-integrated BRDF table); ``shadow`` and ``ao`` the self-shadowing of :mod:`.visibility` (precomputed
once from the rest mesh, carried by the parent triangle).

**The capture's light** (:class:`CaptureLight`) is one environment for the whole capture, trained jointly: a
16 x 32 equirectangular map (log radiance), whose SH and GGX-prefiltered stack are linear maps of it (precomputed
matrices), so both lobes see the same differentiable light. It starts from the appearance stage's estimate
(``TRACK_DIR/appearance/environment.hdr``) when there is one, else uniform grey.

**What stays ambiguous, and how it is resolved.** Images fix only the product albedo x light: any per-channel
gain ``g`` (3 numbers) taken from the light and given to the albedo renders the same frames. The light's
solid-angle mean radiance per channel is therefore held fixed (a hard constraint, not a penalty) at the starting
light's (the appearance stage's estimate: its colour and level; without one, grey of unit radiance), so the albedo
carries the whole gain. Relit under another environment the avatar is then as bright as that starting estimate was
right: with a grey start the albedo absorbs the capture's exposure. The scores report albedo after one
per-channel gain for that reason. Priors against the rest of the ambiguity (light vs albedo shading): the appearance
maps' albedo (``albedo_prior``), skin roughness 0.5 and specular 0.35 (``roughness_prior``, ``specular_prior``), a
light of one colour (``light_grey``: each texel's chromaticity near the mean's) and smooth (``light_smooth``), and
near the appearance stage's estimate when there is one (``light_prior``): without it, measured on the path-traced
capture, the light drifts towards the directions the camera never sees lit (the back) and the albedo brightens to
make up for it.

:meth:`PBRAppearance.set_environment` (an :class:`~avatar3d.render.lighting.EnvironmentMap`, turned by whoever built
it) lights later frames with it (prefiltered once: about a second), residual off; None returns to the capture's light.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import BadInputError
from ..render.brdf import PrefilteredEnvironment, irradiance, shade_specular, specular_to_f0, split_sum_lut
from ..render.color import srgb_decode, srgb_encode
from ..render.lighting import EnvironmentMap, equirect_directions, sh_basis, sh_rotation_y
from .appearance import Appearance, ShadingInputs, SHAppearance
from .visibility import SHTransfer

__all__ = ["PBRAppearance", "CaptureLight", "FixedLight", "capture_light_estimate", "make_appearance", "APPEARANCES", "SKIN_ROUGHNESS", "SKIN_SPECULAR", "LIGHT_HEIGHT"]

#: Skin priors (the appearance stage's: :mod:`avatar3d.appearance.maps`).
SKIN_ROUGHNESS = 0.5
SKIN_SPECULAR = 0.35
#: Rows of the trained capture light (twice as many columns): ~11 degree texels, finer than skin's specular lobe.
LIGHT_HEIGHT = 16
#: Narrowest GGX alpha of the trained light's prefiltering: a lobe under a texel is the texel itself.
_MIN_ALPHA = 0.08


def _grid(height: int) -> tuple[Tensor, Tensor]:
    """Directions (W, 3) and solid angles (W,) of the equirectangular grid ``height`` x ``2 height``."""
    dirs = equirect_directions(height, 2 * height).reshape(-1, 3)
    area = EnvironmentMap(np.zeros((height, 2 * height, 3), np.float32)).solid_angles().reshape(-1)
    return torch.as_tensor(dirs, dtype=torch.float32), torch.as_tensor(area, dtype=torch.float32)


def _on_grid(env: EnvironmentMap, height: int) -> Tensor:
    """(W, 3) radiance of ``env`` on the grid: solid-angle box average when the sizes divide, else bilinear."""
    H, W = env.shape
    if H % height == 0 and W % (2 * height) == 0 and W == 2 * H:
        f = H // height
        w = env.solid_angles()
        flux = (env.pixels.astype(np.float64) * w[..., None]).reshape(height, f, 2 * height, f, 3).sum((1, 3))
        area = w.reshape(height, f, 2 * height, f).sum((1, 3))
        return torch.as_tensor((flux / area[..., None]).reshape(-1, 3), dtype=torch.float32)
    return torch.as_tensor(env.sample(equirect_directions(height, 2 * height).reshape(-1, 3)), dtype=torch.float32)


def _prefilter_matrices(dirs: Tensor, area: Tensor, levels: Tensor) -> Tensor:
    """(L, W, W) row-normalised GGX lobe weights ``D(h) (r.l) dOmega`` (split sum, n = v = r) between grid
    directions, one matrix per perceptual roughness level (level 0: the identity)."""
    c = dirs @ dirs.T  # (W, W) cos between output r and input l
    nh2 = ((1 + c) / 2).clamp(0, 1)
    out = []
    for r in levels.tolist():
        if r <= 0:
            out.append(torch.eye(len(dirs)))
            continue
        a2 = max(r * r, _MIN_ALPHA) ** 2
        w = a2 / (torch.pi * (nh2 * (a2 - 1) + 1) ** 2) * c.clamp(min=0) * area[None]
        out.append(w / w.sum(1, keepdim=True))
    return torch.stack(out)


class FixedLight:
    """A given environment, prefiltered once: ``sh`` (9, 3) radiance SH and ``prefiltered`` its GGX stack
    (:meth:`prefilter`); :meth:`rotated` turns both about +Y without prefiltering again."""

    def __init__(self, sh: Tensor, prefiltered: PrefilteredEnvironment):
        self.sh = sh
        self.prefiltered = prefiltered

    @classmethod
    def prefilter(cls, env: EnvironmentMap, width: int = 64) -> "FixedLight":
        """``env``'s SH and its GGX stack at ``width`` pixels (about a second: the costly part)."""
        return cls(torch.as_tensor(env.sh(), dtype=torch.float32), PrefilteredEnvironment.from_environment(env, width=width))

    def rotated(self, degrees: float) -> "FixedLight":
        """This light turned ``degrees`` about +Y (:func:`~avatar3d.render.lighting.rotate_environment`'s sense): the SH
        by its exact rotation, the prefiltered stack by turning its lookups (sub-millisecond)."""
        turn = torch.as_tensor(sh_rotation_y(degrees), dtype=torch.float32)
        return FixedLight(turn @ self.sh, self.prefiltered.rotated(degrees))

    def lighting(self) -> tuple[Tensor, PrefilteredEnvironment]:
        return self.sh, self.prefiltered

    @classmethod
    def of(cls, env: EnvironmentMap) -> "FixedLight":
        """The light of ``env``: a turned map (:attr:`EnvironmentMap.turned`) is its source's light turned (the last
        source known by identity: maps are not changed in place once made); a map's prefiltering is kept for the last
        few maps by pixels (switching back and forth between maps, a rotating light, or several avatars under one map
        prefilter each map once)."""
        import hashlib

        if env.turned is not None:
            source, degrees = env.turned
            held = _TURNED_SOURCE.get("last")
            if held is None or held[0] is not source:  # by identity: hashing a 2k map's pixels every frame costs ~25 ms
                _TURNED_SOURCE["last"] = held = (source, cls.of(source))
            return held[1].rotated(degrees)
        key = hashlib.sha1(np.ascontiguousarray(env.pixels, np.float32).tobytes()).hexdigest()
        if key not in _LIGHTS:
            _LIGHTS[key] = cls.prefilter(env)
            while len(_LIGHTS) > 4:
                _LIGHTS.pop(next(iter(_LIGHTS)))
        return _LIGHTS[key]


_LIGHTS: dict[str, FixedLight] = {}  # FixedLight.of's maps by pixels (insertion order: oldest first)
_TURNED_SOURCE: dict[str, tuple[EnvironmentMap, FixedLight]] = {}  # the last turned maps' source (held, so its id stays its own) and light


class CaptureLight:
    """The capture's light, trained: a ``LIGHT_HEIGHT`` x ``2 LIGHT_HEIGHT`` map of log radiance whose per-channel
    solid-angle mean is held at ``mean`` (see the module docstring).

    Args: start: the environment to start from (None: uniform grey of radiance 1).
    Attributes: ``log_radiance`` (W, 3) Parameter; ``mean`` (3,) the fixed mean radiance; ``start`` (W, 3) the
    starting log radiance when one was given (the ``light_prior`` regulariser holds the light near it), else None.
    """

    def __init__(self, start: Optional[EnvironmentMap] = None, height: int = LIGHT_HEIGHT):
        self.dirs, self.area = _grid(height)
        self.height = height
        rad = _on_grid(start, height).clamp(min=1e-4) if start is not None else torch.ones(len(self.dirs), 3)
        self.mean = self._mean(rad)
        self.log_radiance = nn.Parameter(torch.log(rad / self.mean))
        self.start = self.log_radiance.detach().clone() if start is not None else None
        self.to_sh = (sh_basis(self.dirs, 3) * self.area[:, None]).T.contiguous()  # (9, W)
        self.levels = torch.tensor(PrefilteredEnvironment.DEFAULT_LEVELS, dtype=torch.float32)
        self.prefilter = _prefilter_matrices(self.dirs, self.area, self.levels)  # (L, W, W)

    def _mean(self, rad: Tensor) -> Tensor:
        return (rad * self.area[:, None]).sum(0) / self.area.sum()

    def radiance(self) -> Tensor:
        """(W, 3) linear radiance, its mean per channel exactly :attr:`mean`."""
        r = torch.exp(self.log_radiance)
        return r * (self.mean / self._mean(r))

    def lighting(self) -> tuple[Tensor, PrefilteredEnvironment]:
        """(9, 3) radiance SH and the GGX prefiltered stack of the light (differentiable in it)."""
        r = self.radiance()
        maps = (self.prefilter @ r).view(len(self.levels), self.height, 2 * self.height, 3)
        return self.to_sh @ r, PrefilteredEnvironment(self.levels, maps)

    def environment(self) -> EnvironmentMap:
        """The light as an environment map (``height`` x ``2 height``, linear RGB)."""
        with torch.no_grad():
            return EnvironmentMap(self.radiance().view(self.height, 2 * self.height, 3).numpy().astype(np.float32))


def _logit(p: Tensor) -> Tensor:
    return torch.logit(p.clamp(1e-3, 1 - 1e-3))


class PBRAppearance(Appearance):
    """Albedo, roughness, specular and normals per Gaussian under one trained capture light (module docstring).

    Args:
        capture: the starting capture light (the appearance stage's ``environment.hdr``), None: grey.
        albedo_prior: the starting colours given to :meth:`fields` are the appearance maps' albedo (sRGB-encoded):
            they become the albedo and its prior; otherwise they are display colours under the capture light.
        shadows: precompute the head's self-shadowing (:mod:`.visibility`) when bound to an avatar.
    """

    name = "pbr"
    relightable = True
    learning_rates = {"albedo": 2e-2, "roughness": 1e-2, "specular": 1e-2, "expr_albedo": 1e-3, "residual": 1e-3,
                      "albedo_prior": 0.0, "light": 5e-3}

    def __init__(self, capture: Optional[EnvironmentMap] = None, albedo_prior: bool = False, shadows: bool = True):
        self.light = CaptureLight(capture)
        self.albedo_prior = bool(albedo_prior)
        self.shadows = shadows
        self.transfer: Optional[SHTransfer] = None
        self.relit: Optional[FixedLight] = None
        self.lut = split_sum_lut()

    # ------------------------------------------------------------------ the slot's bookkeeping
    def bind(self, head_model, shape: Tensor) -> None:
        if self.shadows and self.transfer is None:
            with torch.no_grad():
                rest = head_model(torch.as_tensor(shape, dtype=torch.float32).reshape(1, -1)).vertices[0]
            self.transfer = SHTransfer.compute(rest, head_model.faces)

    def parameters(self) -> dict[str, nn.Parameter]:
        return {"light": self.light.log_radiance}

    def state(self) -> dict[str, Tensor]:
        out = {"light": self.light.log_radiance.detach().clone(), "light_mean": self.light.mean.clone(),
               "albedo_prior_on": torch.tensor(self.albedo_prior)}
        if self.light.start is not None:
            out["light_start"] = self.light.start.clone()
        if self.transfer is not None:
            out.update({f"transfer.{k}": v.clone() for k, v in self.transfer.state().items()})
        return out

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        with torch.no_grad():
            if "light_mean" in state:
                self.light.mean = state["light_mean"].float().clone()
            if "light" in state:
                self.light.log_radiance.copy_(state["light"])
            if "light_start" in state:
                self.light.start = state["light_start"].float().clone()
        self.albedo_prior = bool(state.get("albedo_prior_on", self.albedo_prior))
        tr = {k[len("transfer."):]: v for k, v in state.items() if k.startswith("transfer.")}
        if tr:
            self.transfer = SHTransfer.from_state(tr)

    def set_environment(self, environment: Optional[EnvironmentMap]) -> None:
        self.relit = None if environment is None else FixedLight.of(environment)

    def capture_environment(self) -> EnvironmentMap:
        """The trained capture light (:meth:`CaptureLight.environment`)."""
        return self.light.environment()

    # ------------------------------------------------------------------ fields
    def _albedo_of(self, colours: Tensor) -> Tensor:
        """Linear albedo (N, 3) for starting colours (N, 3) (see the class docstring): display colours are divided
        by the light's diffuse gain ``E / pi`` towards the face's front (+Z; the capture looks at the face)."""
        lin = srgb_decode(colours.float().clamp(0, 1))
        return lin if self.albedo_prior else lin / self.front_gain().to(lin)

    def front_gain(self) -> Tensor:
        """(3,) ``E(+Z) / pi``: what the capture light's diffuse lobe multiplies an albedo by on a surface facing +Z."""
        with torch.no_grad():
            sh = self.light.lighting()[0]
            return (irradiance(torch.tensor([[0.0, 0.0, 1.0]]), sh)[0] / torch.pi).clamp(min=1e-3)

    def fields(self, colours: Tensor, num_expression: int) -> dict[str, Tensor]:
        N = colours.shape[0]
        albedo = self._albedo_of(colours).clamp(0.01, 0.95)
        return {"albedo": _logit(albedo), "roughness": colours.new_full((N, 1), float(_logit(torch.tensor(SKIN_ROUGHNESS)))),
                "specular": colours.new_full((N, 1), float(_logit(torch.tensor(SKIN_SPECULAR)))),
                "expr_albedo": colours.new_zeros(N, num_expression, 3), "residual": colours.new_zeros(N, 3),
                "albedo_prior": albedo.clone()}

    def albedo(self, params: Mapping[str, Tensor], expression: Optional[Tensor] = None) -> Tensor:
        """Linear albedo: (N, 3), or (B, N, 3) at expressions (B, K)."""
        a = torch.sigmoid(params["albedo"])
        if expression is None:
            return a
        # (B, 1, 1, K) @ (N, K, 3): one small product per Gaussian, ~7x faster on the CPU than einsum's transposing copy.
        change = (expression[:, None, None, :].to(a) @ params["expr_albedo"][None]).squeeze(-2)
        return (a[None] + change).clamp(0, 1)

    def base_colour(self, params: Mapping[str, Tensor]) -> Tensor:
        return srgb_encode(self.albedo(params) * self.front_gain().to(params["albedo"])).clamp(0, 1)

    def set_base_colour(self, params: Mapping[str, Tensor], colours: Tensor, where: Tensor) -> None:
        if self.albedo_prior:  # the appearance maps' shadow-free albedo beats shaded frame colours
            return
        with torch.no_grad():
            albedo = self._albedo_of(colours[where].to(params["albedo"])).clamp(0.01, 0.95)
            params["albedo"][where] = _logit(albedo)
            params["albedo_prior"][where] = albedo

    # ------------------------------------------------------------------ shading
    def lighting(self) -> tuple[Tensor, PrefilteredEnvironment]:
        """(9, 3) radiance SH and prefiltered stack of the light in use (the set environment, else the capture's)."""
        return self.relit.lighting() if self.relit is not None else self.light.lighting()

    def colours(self, params: Mapping[str, Tensor], expression: Tensor, inputs: ShadingInputs) -> Tensor:
        sh, pre = self.lighting()
        n = inputs.normals()
        view = -inputs.view_dirs  # surface -> camera
        albedo = self.albedo(params, expression)
        diffuse = albedo / torch.pi * irradiance(n, sh).clamp(min=0)
        rough = torch.sigmoid(params["roughness"])[None]
        f0 = specular_to_f0(torch.sigmoid(params["specular"]))[None]
        spec = shade_specular(n, view, rough, f0, pre, self.lut)
        if self.transfer is not None:
            diffuse = diffuse * self.transfer.shadow(inputs.vertices, sh)[:, inputs.parent]
            spec = spec * self.transfer.ambient().to(spec)[inputs.parent, None]
        rgb = srgb_encode(diffuse + spec)
        if self.relit is None:
            rgb = rgb + params["residual"][None]
        return rgb.clamp_min(0.0)

    # ------------------------------------------------------------------ priors
    def regulariser(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        out = {"residual": params["residual"].square().mean(), "expr_colour": params["expr_albedo"].square().mean(),
               "roughness_prior": (torch.sigmoid(params["roughness"]) - SKIN_ROUGHNESS).square().mean(),
               "specular_prior": (torch.sigmoid(params["specular"]) - SKIN_SPECULAR).square().mean(),
               "normal": _normal_tie(params)}
        if self.albedo_prior:
            out["albedo_prior"] = (torch.sigmoid(params["albedo"]) - params["albedo_prior"].detach()).abs().mean()
        r = self.light.radiance()
        chroma = r / r.mean(-1, keepdim=True).clamp(min=1e-6) - self.light.mean / self.light.mean.mean()
        out["light_grey"] = chroma.square().mean()
        if self.light.start is not None:  # the appearance stage saw the whole head under it: stay near its estimate
            out["light_prior"] = (self.light.log_radiance - self.light.start).square().mean()
        g = self.light.log_radiance.view(self.light.height, 2 * self.light.height, 3)
        out["light_smooth"] = (g[1:] - g[:-1]).square().mean() + (g.roll(1, 1) - g).square().mean()
        return out


def _normal_tie(params: Mapping[str, Tensor]) -> Tensor:
    """Mean ``1 - cos^2`` between each Gaussian's shortest axis and its triangle's normal (local +z)."""
    from ..geometry import quaternion_to_matrix

    R = quaternion_to_matrix(params["rotation"])  # (N, 3, 3) in the triangle's frame
    axis = params["log_scale"].detach().argmin(-1)
    z = torch.gather(R[:, 2], 1, axis[:, None])[:, 0]  # z component of the shortest axis
    return (1 - z * z).mean()


def capture_light_estimate(track_dir) -> Optional[EnvironmentMap]:
    """The appearance stage's estimate of the capture light (``TRACK_DIR/appearance/environment.hdr``), None if absent
    or unreadable (then a relightable avatar starts from grey)."""
    from pathlib import Path

    path = Path(track_dir) / "appearance" / "environment.hdr"
    try:
        return EnvironmentMap.read(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


#: the appearances an avatar file may name (:func:`make_appearance`)
APPEARANCES = ("sh1", "pbr")


def make_appearance(name: str, path=None, capture=None, albedo_prior: bool = False) -> Appearance:
    """An appearance of the kind ``name`` (:data:`APPEARANCES`), e.g. for an avatar file ``path`` to fill; ``capture``
    (an environment map) and ``albedo_prior``: a relightable one's start (:class:`~avatar3d.avatar.relight.PBRAppearance`).
    One sentence (:class:`BadInputError`) for a name this version does not know."""
    if name == "sh1":
        return SHAppearance()
    if name == "pbr":
        return PBRAppearance(capture, albedo_prior)
    raise BadInputError(f"{path or 'this avatar'} has the appearance {name!r}, which this version cannot read "
                        f"(it reads {', '.join(APPEARANCES)}); update avatar3d or train the avatar again")
