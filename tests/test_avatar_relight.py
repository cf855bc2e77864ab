"""The relightable appearance of the Gaussian head (avatar3d.avatar.relight, avatar3d.avatar.visibility): shapes,
relighting through set_environment, the residual, gradients, self-shadowing, and saving / loading by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.model import GaussianHead, HeadInit
from avatar3d.avatar.relight import PBRAppearance
from avatar3d.avatar.train import make_appearance, read_avatar, save_avatar
from avatar3d.avatar.visibility import SHTransfer, head_rotations, sh_rotation
from avatar3d.errors import BadInputError
from avatar3d.render.camera_builders import frontal
from avatar3d.render.lighting import EnvironmentMap, sh_basis


@pytest.fixture(scope="module")
def head(builtin):
    """A small relightable avatar (uv 24: ~3k Gaussians) lit by the studio map, and a frontal camera."""
    with torch_threads(1):
        app = PBRAppearance(EnvironmentMap.generated("studio", 64))
        av = GaussianHead.initialise(builtin, None, None, app, HeadInit(uv_resolution=24), expr_index=torch.tensor([0, 21]))
        with torch.no_grad():
            verts = builtin(torch.zeros(1, builtin.num_shape)).vertices[0].numpy()
    return av, frontal(verts, 96, 96)


def _neutral(av, B=1):
    m = av.head_model
    return torch.zeros(B, m.num_expression), torch.zeros(B, m.num_joints, 3), torch.zeros(B, 3)


def _render(av, cam, env="keep"):
    if env != "keep":
        av.appearance.set_environment(env)
    with torch.no_grad(), torch_threads(1):
        return av(*_neutral(av), cam).image[0]


def _light_from(azimuth_deg: float) -> EnvironmentMap:
    """A dim room with one soft lamp at ``azimuth_deg`` about +Y (0: in front, 90: on the head's +X side)."""
    from avatar3d.render.lighting import equirect_directions

    d = equirect_directions(32, 64)
    a = np.deg2rad(azimuth_deg)
    c = np.array([np.sin(a), 0.2, np.cos(a)])
    lamp = 6.0 * np.exp((d @ (c / np.linalg.norm(c)) - 1) / 0.1)
    return EnvironmentMap((0.05 + lamp[..., None] * np.ones(3)).astype(np.float32))


def test_colours_have_the_slot_shapes_and_the_contract(head):
    av, cam = head
    app = av.appearance
    assert app.relightable and app.name == "pbr" and app.transfer is not None
    N = av.num_gaussians
    for k, shape in {"albedo": (N, 3), "roughness": (N, 1), "specular": (N, 1), "expr_albedo": (N, 2, 3), "residual": (N, 3),
                     "albedo_prior": (N, 3)}.items():
        assert av.params[k].shape == shape
    with torch.no_grad():
        posed = av.posed_head(*_neutral(av, 2))
        cols = av.colours(posed, cam.centre)
    assert cols.shape == (2, N, 3) and torch.isfinite(cols).all() and float(cols.min()) >= 0
    assert 0.05 < float(cols.mean()) < 1.0


def test_set_environment_relights_and_none_returns_to_the_capture_light(head):
    av, cam = head
    own = _render(av, cam, None)
    sunset = _render(av, cam, EnvironmentMap.generated("sunset", 64))
    back = _render(av, cam, None)
    assert torch.equal(own, back)
    face = own.mean(-1) < 0.98  # not the white background
    diff = (sunset - own)[face].abs().mean()
    assert diff > 0.03
    # Sunset is orange: red over blue rises on the face.
    ratio = lambda im: float(im[face][:, 0].mean() / im[face][:, 2].mean())  # noqa: E731
    assert ratio(sunset) > ratio(own) + 0.1


def test_the_lit_side_follows_the_light(head, tmp_path):
    """One lamp on the head's left, then on its right: the brighter half of the face swaps sides."""
    av, cam = head
    left = _render(av, cam, _light_from(-80.0))
    right = _render(av, cam, _light_from(80.0))
    av.appearance.set_environment(None)
    W = left.shape[1]
    face = (left.mean(-1) < 0.98) & (right.mean(-1) < 0.98)
    xs = torch.arange(W)[None].expand_as(face)
    mid = float(xs[face].float().mean())
    lum = lambda im, side: float(im.mean(-1)[face & side].mean())  # noqa: E731
    lo, hi = xs < mid, xs >= mid
    # The head's +X is the image's left in the frontal camera (it looks at the face from +Z) or right; either way they swap.
    a, b = lum(left, lo) - lum(left, hi), lum(right, lo) - lum(right, hi)
    assert a * b < 0 and abs(a) > 0.05 and abs(b) > 0.05


def test_the_residual_is_switched_off_when_relit(head):
    av, cam = head
    env = EnvironmentMap.generated("overcast", 64)
    own0, lit0 = _render(av, cam, None), _render(av, cam, env)
    with torch.no_grad():
        av.params["residual"].fill_(0.2)
    try:
        own1, lit1 = _render(av, cam, None), _render(av, cam, env)
    finally:
        with torch.no_grad():
            av.params["residual"].zero_()
        av.appearance.set_environment(None)
    assert torch.equal(lit0, lit1)
    assert float((own1 - own0).abs().max()) > 0.1


def test_gradients_reach_the_albedo_the_light_and_the_normals(head):
    av, cam = head
    av.appearance.set_environment(None)
    for p in list(av.params.values()) + [av.appearance.light.log_radiance]:
        p.grad = None
    with torch_threads(1):
        img = av(*_neutral(av), cam).image
        loss = img.mean() + sum(v for v in av.regulariser().values())
        loss.backward()
    for k in ("albedo", "roughness", "specular", "rotation", "residual"):
        assert av.params[k].grad is not None and float(av.params[k].grad.abs().sum()) > 0, k
    g = av.appearance.light.log_radiance.grad
    assert g is not None and float(g.abs().sum()) > 0
    # The light's mean radiance is held fixed (the albedo/light scale is the albedo's): moving every texel alike does nothing.
    light = av.appearance.light
    before = light.radiance().detach().clone()
    with torch.no_grad():
        light.log_radiance.add_(0.5)
    assert torch.allclose(light.radiance().detach(), before, rtol=1e-5)
    with torch.no_grad():
        light.log_radiance.sub_(0.5)


def test_sh_rotation_and_self_shadowing(builtin):
    # A rotation of the SH coefficients is exact for bands 0-2: the rotated function at d equals the original at R d.
    a = 0.7
    R = torch.tensor([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], dtype=torch.float32)
    L = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    d = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    assert torch.allclose(sh_basis(d, 3) @ (sh_rotation(R[None])[0] @ L), sh_basis(d @ R.T, 3) @ L, atol=1e-4)
    with torch.no_grad(), torch_threads(1):
        rest = builtin(torch.zeros(1, builtin.num_shape)).vertices[0]
        tr = SHTransfer.compute(rest, builtin.faces, directions=64, resolution=64)
        turned = rest @ R.T + 0.1
        assert torch.allclose(head_rotations(rest, turned[None])[0], R, atol=1e-4)
        ao = tr.ambient()
    faces = builtin.faces.long()
    region = lambda name: builtin.region(name).bool()[faces].all(1)  # noqa: E731
    inner = region("mouth_interior") if "mouth_interior" in builtin.region_names else region("teeth")
    assert float(ao[inner].mean()) < float(ao[region("face")].mean()) - 0.2  # the mouth's inside sees little of the sky
    assert float(ao[region("face")].mean()) > 0.6
    # A light from straight above shadows the underside of the chin/nose more than the forehead (no shadow there).
    up = torch.zeros(9, 3)
    up[[0, 1]] = torch.tensor([[1.0] * 3, [1.0] * 3])  # brighter above (Y1 ~ y)
    s = tr.shadow(rest[None], up)[0, :, 0]
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    assert float(s[region("face")].mean()) > float(s[inner].mean())


def test_save_and_load_keep_the_appearance_its_light_and_its_shadowing(head, tmp_path):
    av, cam = head
    with torch.no_grad():
        av.appearance.light.log_radiance[:10] += 1.0  # a trained-looking light
    path = save_avatar(av, tmp_path / "avatar.pt")
    back = read_avatar(path, av.head_model).avatar
    assert isinstance(back.appearance, PBRAppearance)
    assert torch.equal(back.appearance.light.log_radiance, av.appearance.light.log_radiance)
    assert torch.equal(back.appearance.transfer.occluded, av.appearance.transfer.occluded)
    assert torch.equal(_render(back, cam, None), _render(av, cam, None))
    env = EnvironmentMap.generated("sunset", 64)
    assert torch.equal(_render(back, cam, env), _render(av, cam, env))
    av.appearance.set_environment(None)
    with pytest.raises(BadInputError, match="appearance 'sh9'"):
        make_appearance("sh9", tmp_path / "avatar.pt")
