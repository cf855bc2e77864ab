"""A relightable test double: Lambert albedo times the SH irradiance of the environment (test-only, not product code).

It keeps the relight contract (:attr:`Appearance.relightable`, :meth:`Appearance.set_environment`) so the relit
render, viewer and PLY bake can be tested before and beside the real relightable appearance. Per Gaussian:
``double_albedo`` (N, 3) linear albedo and ``double_normal`` (N, 3) a fixed world normal (the parent triangle's at
the neutral pose: the test avatars barely turn). Colours: ``srgb_encode(albedo * E(n) / pi)``, E the irradiance of
the environment's 9 SH coefficients; ``set_environment(None)``: :data:`CAPTURE_LIGHT`.

:func:`relightable_copy` writes such an avatar beside a trained one; :func:`use_double` (with pytest's monkeypatch)
makes avatar loading pick the double for files holding its fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
from torch import Tensor

from avatar3d.avatar.appearance import Appearance
from avatar3d.avatar.model import GaussianHead
from avatar3d.render.color import srgb_decode, srgb_encode
from avatar3d.render.lighting import EnvironmentMap, irradiance_basis

#: the capture's light of the double: the studio map turned so its key light comes from the head's right (-X)
CAPTURE_LIGHT = EnvironmentMap.generated("studio", 64, rotation_deg=-40.0)


class LambertDouble(Appearance):
    """Lambert albedo under the SH irradiance of an environment (see the module docstring)."""

    name = "lambert-double"
    relightable = True
    learning_rates = {"double_albedo": 1e-2}

    def __init__(self) -> None:
        self.environment: Optional[EnvironmentMap] = None
        self._sh = torch.as_tensor(CAPTURE_LIGHT.sh(), dtype=torch.float32)

    def set_environment(self, environment: Optional[EnvironmentMap]) -> None:
        self.environment = environment
        env = CAPTURE_LIGHT if environment is None else environment
        self._sh = torch.as_tensor(env.sh(), dtype=torch.float32)

    def fields(self, colours: Tensor, num_expression: int) -> dict[str, Tensor]:
        N = colours.shape[0]
        return {"double_albedo": srgb_decode(colours.float()), "double_normal": torch.tensor([0.0, 0.0, 1.0]).expand(N, 3).clone()}

    def colours(self, params: Mapping[str, Tensor], expression: Tensor, inputs) -> Tensor:
        view_dirs = getattr(inputs, "view_dirs", inputs)  # the frames' shading inputs, or (B, N, 3) view directions
        n = torch.nn.functional.normalize(params["double_normal"], dim=-1)
        irradiance = (irradiance_basis(n) @ self._sh.to(n)).clamp_min(0.0)  # (N, 3)
        radiance = params["double_albedo"].clamp(0, 1) * irradiance / np.pi
        return srgb_encode(radiance.clamp(0, 1))[None].expand(view_dirs.shape[0], -1, -1)

    def base_colour(self, params: Mapping[str, Tensor]) -> Tensor:
        return srgb_encode(params["double_albedo"].clamp(0, 1))

    def set_base_colour(self, params: Mapping[str, Tensor], colours: Tensor, where: Tensor) -> None:
        with torch.no_grad():
            params["double_albedo"][where] = srgb_decode(colours[where].to(params["double_albedo"]))


def relightable_copy(avatar_dir: Path, out: Path) -> Path:
    """``out``: a copy of the avatar directory ``avatar_dir`` whose colours are :class:`LambertDouble` (albedo from its
    base colour, brightened so the capture light gives it a similar look; normals from its triangles)."""
    from avatar3d.avatar.train import AVATAR_FILE, read_avatar, save_avatar

    rec = read_avatar(avatar_dir)
    av = rec.avatar
    with torch.no_grad():
        model = av.head_model
        verts = model(shape=av.shape[None]).vertices[0]
        tri = verts[model.faces.long()]  # (F, 3, 3)
        n = torch.nn.functional.normalize(torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1), dim=-1)
        normal = n[av.parent]
        albedo = srgb_decode(av.appearance.base_colour(av.params)).clamp(0, 1)
    state = av.avatar_state()
    state = {k: v for k, v in state.items() if k not in ("params.sh_dc", "params.sh_rest", "params.expr_colour")}
    state["params.double_albedo"], state["params.double_normal"] = albedo, normal
    relit = GaussianHead.from_state(model, state, LambertDouble())
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in rec.record.items() if k not in ("format", "version", "kind", "model", "appearance")}
    save_avatar(relit, out / AVATAR_FILE, extra)
    return out


def use_double(monkeypatch) -> None:
    """Make every avatar load (:meth:`GaussianHead.from_state`) use :class:`LambertDouble` for states holding its fields."""
    original = GaussianHead.from_state.__func__

    def from_state(cls, head_model, state, appearance=None):
        if appearance is None and "params.double_albedo" in state:
            appearance = LambertDouble()
        return original(cls, head_model, state, appearance)

    monkeypatch.setattr(GaussianHead, "from_state", classmethod(from_state))
