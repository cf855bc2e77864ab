"""How a Gaussian head's Gaussians get their colour: one small interface, and the colour model this issue trains.

An :class:`Appearance` declares the per-Gaussian tensors it needs (:meth:`Appearance.fields`, stored by
the :class:`~avatar3d.avatar.model.GaussianHead` beside the geometry, so densification, checkpoints and
the optimiser treat them like any other per-Gaussian parameter) and turns them into colours for a frame
(:meth:`Appearance.colours`, from the frame's :class:`ShadingInputs`: view directions, and on demand the
Gaussians' normals, positions and the posed mesh). A relightable appearance (albedo, roughness, specular, normals
under a light: :class:`avatar3d.avatar.relight.PBRAppearance`) plugs into the same slot by declaring other fields,
global tensors (:meth:`Appearance.parameters`: its light) and shading in :meth:`~Appearance.colours`.

:class:`SHAppearance` is the one trained here: colour as degree-1 spherical harmonics of the viewing
direction (3DGS's convention and coefficients, so a PLY export writes ``f_dc``/``f_rest`` as they are),
plus linear per-Gaussian colour blendshapes driven by the expression coefficients (wrinkles darkening,
the inside of the mouth showing), which start at zero and are kept small by :meth:`~Appearance.regulariser`.
Colours are display (sRGB-encoded) values in [0, 1], like the training images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional

import torch
from torch import Tensor, nn

from ..errors import BadInputError

if TYPE_CHECKING:
    from ..render.lighting import EnvironmentMap

__all__ = ["Appearance", "SHAppearance", "ShadingInputs", "SH_C0", "SH_C1", "rgb_to_sh", "sh_to_rgb"]

#: Real SH constants of bands 0 and 1 (3DGS's ``C0``, ``C1``).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """(..., 3) colours in [0, 1] -> the DC coefficients that render them (3DGS: ``c = C0 f_dc + 0.5``)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(dc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_sh`."""
    return dc * SH_C0 + 0.5


@dataclass
class ShadingInputs:
    """What an appearance may shade B frames of N Gaussians with (world frame, metres).

    :meth:`normals` (the Gaussians' shortest axes, turned to the outer side of their parent triangle) is computed
    on first use: an SH colour never asks for it.
    """

    view_dirs: Tensor  #: (B, N, 3) unit directions from the camera centre to each Gaussian
    means: Tensor  #: (B, N, 3) Gaussian centres
    quats: Tensor  #: (B, N, 4) posed unit rotations, wxyz
    scales: Tensor  #: (B, N, 3) posed standard deviations
    local_rotation: Tensor  #: (N, 4) rotations in the parent triangles' frames (+z: the triangle's outward normal)
    vertices: Tensor  #: (B, V, 3) the posed mesh
    parent: Tensor  #: (N,) each Gaussian's triangle
    #: (N, 3) the normals in the Gaussians' own frames (:meth:`normals`): None until computed, or given by a caller
    #: that keeps them between frames of unchanged Gaussians (they depend on ``local_rotation`` and the scales' ratios)
    local_normals: Optional[Tensor] = None
    _cache: dict = field(default_factory=dict, repr=False)

    def normals(self) -> Tensor:
        """(B, N, 3) unit shading normals: each Gaussian's shortest axis, on its triangle's outer side; a Gaussian that
        is not flat (shortest over middle scale above 1/2: its shortest axis means little) leans towards its triangle's
        normal, wholly so when round.

        The blend is fixed in the Gaussian's own frame (its scales' ratios and its rotation against the triangle do not
        change with the pose), so per frame only that one vector is turned by the posed rotation."""
        if "normals" not in self._cache:
            if self.local_normals is None:
                self.local_normals = self._local_normals()
            self._cache["normals"] = torch.nn.functional.normalize(_rotate(self.quats, self.local_normals[None]), dim=-1,
                                                                   eps=1e-12)
        return self._cache["normals"]

    def _local_normals(self) -> Tensor:
        """(N, 3) the blend of :meth:`normals` in each Gaussian's own frame (not unit)."""
        from ..geometry import quaternion_to_matrix

        s = self.scales[0].detach().sort(-1)  # (N, 3): posing scales the three axes alike
        axis = s.indices[:, 0]
        up = quaternion_to_matrix(self.local_rotation)[:, 2]  # (N, 3): the triangle's normal in the Gaussian's axes
        own = torch.nn.functional.one_hot(axis, 3).to(up)  # the shortest axis
        own = own * torch.where(torch.gather(up, 1, axis[:, None]) < 0, -1.0, 1.0).to(up)  # on the outer side
        w = ((s.values[:, :1] / s.values[:, 1:2].clamp(min=1e-12) - 0.5) * 2).clamp(0, 1)
        return (1 - w) * own + w * up


def _rotate(q: Tensor, v: Tensor) -> Tensor:
    """(..., 3) vectors ``v`` turned by unit quaternions ``q`` (..., 4) wxyz (broadcast)."""
    shape = torch.broadcast_shapes(q.shape[:-1], v.shape[:-1]) + (3,)
    w, u, v = q[..., :1], q[..., 1:].expand(shape), v.expand(shape)
    t = 2 * torch.linalg.cross(u, v, dim=-1)
    return v + w * t + torch.linalg.cross(u, t, dim=-1)


class Appearance:
    """Interface of a Gaussian appearance model (N Gaussians, K driving expression coefficients, B frames).

    Attributes:
        name: what checkpoints record (an avatar must be loaded with the same appearance).
        learning_rates: Adam learning rate per field name.
    """

    name: str = "appearance"
    learning_rates: dict[str, float] = {}
    #: whether :meth:`set_environment` can light this appearance with another environment
    relightable: bool = False

    def set_environment(self, environment: Optional["EnvironmentMap"]) -> None:
        """Light later :meth:`colours` calls with ``environment`` (linear RGB radiance); None: the capture's own light.

        Appearances that bake the capture's light into their colours cannot be relit and say so.
        """
        raise BadInputError(f"this avatar's {self.name!r} appearance bakes in the capture's light and cannot be relit: "
                            "train it with `avatar3d avatar train --relightable`")

    def bind(self, head_model, shape: Tensor) -> None:
        """Called once by the avatar that holds this appearance (its head model and (S,) identity): precompute what
        depends on the head (e.g. self-shadowing). Default: nothing."""

    def parameters(self) -> dict[str, nn.Parameter]:
        """Trained tensors that are not per Gaussian (e.g. the capture's light), by name; default none."""
        return {}

    def state(self) -> dict[str, Tensor]:
        """Every tensor that is not per Gaussian and that a saved avatar must keep (:meth:`parameters` and
        precomputed ones), by name."""
        return {k: v.detach().clone() for k, v in self.parameters().items()}

    def load_state(self, state: Mapping[str, Tensor]) -> None:
        """Restore :meth:`state` (in place, so an optimiser of :meth:`parameters` keeps its tensors)."""
        params = self.parameters()
        with torch.no_grad():
            for k, v in state.items():
                if k in params:
                    params[k].copy_(v)

    def fields(self, colours: Tensor, num_expression: int) -> dict[str, Tensor]:
        """Initial per-Gaussian tensors ``{name: (N, ...)}`` for Gaussians of display colour ``colours`` (N, 3) and
        ``num_expression`` (K) driving expression coefficients."""
        raise NotImplementedError

    def colours(self, params: Mapping[str, Tensor], expression: Tensor, inputs: ShadingInputs) -> Tensor:
        """(B, N, 3) display colours of the Gaussians in B frames.

        Args:
            params: the avatar's per-Gaussian tensors (at least this appearance's :meth:`fields`).
            expression: (B, K) the driving expression coefficients.
            inputs: the frames' geometry (:class:`ShadingInputs`).
        """
        raise NotImplementedError

    def regulariser(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Scalar penalties by name (weights are the trainer's) of the fields and :meth:`parameters`."""
        return {}

    def base_colour(self, params: Mapping[str, Tensor]) -> Tensor:
        """(N, 3) view-independent colour at the neutral expression (for previews and export)."""
        raise NotImplementedError

    def set_base_colour(self, params: Mapping[str, Tensor], colours: Tensor, where: Tensor) -> None:
        """Make the Gaussians ``where`` (N,) bool look ``colours`` (N, 3) (in place; a starting point for training)."""
        raise NotImplementedError


class SHAppearance(Appearance):
    """Degree-1 SH colour plus expression colour blendshapes (see the module docstring).

    Fields: ``sh_dc`` (N, 3); ``sh_rest`` (N, 3, 3) band-1 coefficients (basis functions ``-y, z, -x``
    times :data:`SH_C1`, 3DGS order) by RGB; ``expr_colour`` (N, K, 3) colour change per unit of each driving coefficient.
    """

    name = "sh1"
    #: 4x 3DGS's colour rate: a CPU run has hundreds of steps, not tens of thousands (measured on the rendered
    #: truth: 28.8 dB held out after 300 steps against 27.3 at 2.5e-3, from grey)
    learning_rates = {"sh_dc": 1e-2, "sh_rest": 2.5e-3 / 20, "expr_colour": 1e-3}

    def fields(self, colours: Tensor, num_expression: int) -> dict[str, Tensor]:
        N = colours.shape[0]
        return {"sh_dc": rgb_to_sh(colours.float()), "sh_rest": colours.new_zeros(N, 3, 3),
                "expr_colour": colours.new_zeros(N, num_expression, 3)}

    def colours(self, params: Mapping[str, Tensor], expression: Tensor, inputs: ShadingInputs) -> Tensor:
        x, y, z = inputs.view_dirs.unbind(-1)
        basis = SH_C1 * torch.stack([-y, z, -x], -1)  # (B, N, 3)
        rest = torch.einsum("bnk,nkc->bnc", basis, params["sh_rest"])
        ec = params["expr_colour"]
        if torch.is_grad_enabled() and ec.requires_grad:
            expr = torch.einsum("nec,be->bnc", ec, expression)  # its backward is the faster one
        else:  # (B, 1, 1, K) @ (N, K, 3): one small product per Gaussian, ~2.5x faster than einsum's transposing copy
            expr = (expression[:, None, None, :].to(ec) @ ec[None]).squeeze(-2)
        return (sh_to_rgb(params["sh_dc"])[None] + rest + expr).clamp_min(0.0)

    def regulariser(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {"expr_colour": params["expr_colour"].square().mean()}

    def base_colour(self, params: Mapping[str, Tensor]) -> Tensor:
        return sh_to_rgb(params["sh_dc"]).clamp(0, 1)

    def set_base_colour(self, params: Mapping[str, Tensor], colours: Tensor, where: Tensor) -> None:
        with torch.no_grad():
            params["sh_dc"][where] = rgb_to_sh(colours[where].to(params["sh_dc"]))
