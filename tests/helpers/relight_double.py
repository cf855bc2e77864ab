"""A relightable copy of a trained test avatar: its Gaussians with the real relightable appearance (test data, not product code).

:func:`relightable_copy` takes a trained avatar directory (the seconds-long ``tiny_avatar``) and writes one whose
colours are :class:`~avatar3d.avatar.relight.PBRAppearance` (albedo from its colours under :data:`CAPTURE_LIGHT`,
skin roughness and specular, normals from its Gaussians, self-shadowing of its head): an avatar that
``avatar render --env``, the viewer and the PLY bake can relight in seconds, without training one. Its reflectance is
not fitted, so tests on it check the plumbing (which light reaches the picture), not the relighting quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avatar3d.avatar.model import GaussianHead
from avatar3d.avatar.relight import PBRAppearance
from avatar3d.avatar.train import AVATAR_FILE, read_avatar, save_avatar
from avatar3d.render.lighting import EnvironmentMap

#: the capture light of the copy: the studio map turned so that its key light comes from the head's right (-X)
CAPTURE_LIGHT = EnvironmentMap.generated("studio", 64, rotation_deg=-40.0)
#: the geometry fields kept from the trained avatar (its colour fields are replaced)
GEOMETRY = ("offset", "rotation", "log_scale", "opacity", "expr_offset")


def relightable_copy(avatar_dir: Path, out: Path) -> Path:
    """``out``: the avatar of ``avatar_dir`` with a :class:`PBRAppearance` (see the module docstring)."""
    rec = read_avatar(avatar_dir)
    av = rec.avatar
    with torch.no_grad():
        colours = av.appearance.base_colour(av.params)  # (N, 3) display colours
    app = PBRAppearance(CAPTURE_LIGHT)
    state = {k: v for k, v in av.avatar_state().items() if not k.startswith("params.") or k[len("params."):] in GEOMETRY}
    state.update({f"params.{k}": v for k, v in app.fields(colours, len(av.expr_index)).items()})
    relit = GaussianHead.from_state(av.head_model, state, app)
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: v for k, v in rec.record.items() if k not in ("format", "version", "kind", "model", "appearance")}
    save_avatar(relit, out / AVATAR_FILE, extra)
    return out
