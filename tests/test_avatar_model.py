"""The Gaussian head (avatar3d.avatar.model): initialisation over the whole surface, posing, rendering, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.avatar.appearance import SHAppearance, rgb_to_sh, sh_to_rgb
from avatar3d.avatar.binding import triangle_frames
from avatar3d.avatar.model import FREE_OFFSET_M, GaussianHead, HeadInit, driving_expressions, free_triangles
from avatar3d.avatar.surface import sample_texture, triangle_ids
from avatar3d.render.camera import Camera
from avatar3d.render.camera_builders import centred_K, front_camera


@pytest.fixture(scope="module")
def head(builtin):
    return GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=64))


def _camera(size: int = 96, distance: float = 0.6) -> Camera:
    return Camera(torch.as_tensor(centred_K(1.2 * size, size, size), dtype=torch.float32),
                  torch.as_tensor(front_camera(distance), dtype=torch.float32), size, size)


def _params(model, B: int = 1):
    return torch.zeros(B, model.num_expression), torch.zeros(B, model.num_joints, 3), torch.zeros(B, 3)


def test_initialisation_covers_every_region_and_triangle(builtin, head):
    parents = torch.zeros(len(builtin.faces), dtype=torch.bool)
    parents[head.parent] = True
    assert bool(parents.all())  # texels plus one per texel-less triangle: nothing uncovered
    for region in ("face", "scalp", "eyes", "mouth_interior", "teeth", "ears"):
        tri = builtin.region(region)[builtin.faces].all(1)
        assert int(tri[head.parent].sum()) >= int(tri.sum()), region
    with torch.no_grad():
        g, opac = head.pose(*_params(builtin))
    # every Gaussian starts on the neutral surface: its mean at its triangle's plane (offset z = 0), within the triangle's reach
    off = head.params["offset"].detach()
    assert float(off[:, 2].abs().max()) < 1e-4 and float(off.norm(dim=-1).max()) < 1.5
    assert torch.allclose(opac, torch.full_like(opac, 0.7))
    assert torch.allclose(sh_to_rgb(head.params["sh_dc"]), torch.full((head.num_gaussians, 3), 0.5), atol=1e-6)
    # in-plane spread about half the local spacing: ~1 mm typically (measured median 1.2 mm, max 14 mm where the
    # UV layout is sparsest), flat along the normal
    s = g.scales[0]
    assert float(s[:, 0].median()) < 0.003 and float(s.max()) < 0.02
    assert torch.allclose(s[:, 2], 0.3 * s[:, 0]) and torch.equal(s[:, 0], s[:, 1])


def test_triangle_ids_and_texture_lookup(builtin):
    ids = torch.tensor([0, 17, 5000, 25369])
    assert torch.equal(triangle_ids(builtin, builtin.faces[ids]), ids)
    with pytest.raises(ValueError):
        triangle_ids(builtin, torch.tensor([[0, 0, 0]]))
    tex = np.zeros((4, 4, 3), np.float32)
    tex[0, 3] = 1.0  # top-right texel: u ~ 1, v ~ 1
    out = sample_texture(tex, torch.tensor([[0.875, 0.875], [0.125, 0.125]]))
    assert torch.allclose(out, torch.tensor([[1.0, 1, 1], [0, 0, 0]]))


def test_render_is_white_around_the_head_and_follows_translation(builtin, head):
    e, p, t = _params(builtin, 2)
    t[1, 0] = 0.05  # 5 cm to the right: the image shifts right
    cam = _camera()
    with torch.no_grad():
        r = head(e, p, t, cam, mouth=True)
    assert r.image.shape == (2, 96, 96, 3) and r.alpha.shape == (2, 96, 96, 1) and r.mouth.shape == (2, 96, 96, 1)
    assert torch.allclose(r.image[:, :3, :3], torch.ones(2, 3, 3, 3))  # corners: background
    assert float(r.alpha[0, 48, 48]) > 0.99 and float((r.image[0, 48, 48] - 0.5).abs().max()) < 0.02  # the grey head
    cols = torch.arange(96.0)
    cx = [float((r.alpha[b, ..., 0].sum(0) * cols).sum() / r.alpha[b].sum()) for b in range(2)]
    shift = 0.05 * float(cam.K[0, 0]) / 0.6
    assert abs((cx[1] - cx[0]) - shift) < 1.5, (cx, shift)
    assert float(r.mouth.max()) <= 1.0 and float(r.mouth[0].sum()) < 0.05 * float(r.alpha[0].sum())


def test_expression_blendshapes_drive_offsets_and_colours(builtin):
    drive = torch.tensor([0, 5])
    av = GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=32, fill_triangles=False), expr_index=drive)
    assert av.params["expr_offset"].shape == (av.num_gaussians, 2, 3) and av.params["expr_colour"].shape == (av.num_gaussians, 2, 3)
    e, p, t = _params(builtin)
    e[0, 0] = 0.5  # jawOpen
    g0, _ = av.pose(e, p, t)
    with torch.no_grad():
        av.params["expr_offset"][:, 0, 2] = 0.2  # 0.2 triangle sizes along the normal per unit of coefficient 0
    g1, _ = av.pose(e, p, t)
    from avatar3d.avatar.binding import triangle_frames

    fr = triangle_frames(builtin(av.shape[None], e, p, t).vertices, builtin.faces)
    want = 0.5 * 0.2 * fr.scale[0, av.parent, None] * fr.rotation[0, av.parent, :, 2]
    assert torch.allclose(g1.means[0] - g0.means[0], want, atol=1e-7)
    # an expression outside the driving set moves the mesh, not the Gaussians' own blendshapes
    e2 = e.clone()
    e2[0, 0] = 0.0
    e2[0, 33] = 1.0
    g2, _ = av.pose(e2, p, t)
    with torch.no_grad():
        av.params["expr_offset"].zero_()
    g3, _ = av.pose(e2, p, t)
    assert torch.allclose(g2.means, g3.means)
    posed = av.posed_head(e2, p, t)
    colours = SHAppearance().colours(av.params, torch.tensor([[1.0, 0.0]]), _inputs(av, posed, torch.randn(3)))
    assert torch.allclose(colours, sh_to_rgb(av.params["sh_dc"])[None].clamp_min(0), atol=1e-6)  # sh_rest and expr_colour 0


def _inputs(av, posed, centre):
    """The shading inputs of ``posed`` (a PosedHead) seen from ``centre`` (3,)."""
    from avatar3d.avatar.appearance import ShadingInputs

    g = posed.gaussians
    dirs = torch.nn.functional.normalize(g.means - centre.reshape(1, 1, 3), dim=-1)
    return ShadingInputs(dirs, g.means, g.quats, g.scales, posed.vertices, av.head_model.faces, av.parent)


def test_gradients_reach_every_field_and_state_round_trips(builtin):
    av = GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=32), expr_index=torch.tensor([0, 21]))
    e, p, t = _params(builtin)
    e[0, 0], e[0, 21] = 0.4, 0.3
    p[0, 0, 1] = 0.3
    with torch.no_grad():
        av.params["sh_rest"].normal_(0, 0.1)
    r = av(e, p, t, _camera(64))
    (r.image - 0.3).square().mean().backward()
    for k, v in av.params.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and float(v.grad.abs().sum()) > 0, k
    clone = GaussianHead.from_state(builtin, av.avatar_state())
    with torch.no_grad():
        a, b = av(e, p, t, _camera(64)).image, clone(e, p, t, _camera(64)).image
    assert torch.equal(a, b) and torch.equal(clone.expr_index, av.expr_index)
    assert not any(k.startswith("head_model") for k in av.avatar_state())


def test_colours_start_from_a_texture_and_sh_round_trip(builtin):
    tex = np.zeros((8, 8, 3), np.float32)
    tex[..., 0] = 0.8
    tex[..., 2] = 0.2
    av = GaussianHead.initialise(builtin, texture=tex, options=HeadInit(uv_resolution=16, fill_triangles=False))
    assert torch.allclose(SHAppearance().base_colour(av.params), torch.tensor([0.8, 0.0, 0.2]).expand(av.num_gaussians, 3), atol=1e-5)
    x = torch.rand(5, 3)
    assert torch.allclose(sh_to_rgb(rgb_to_sh(x)), x, atol=1e-6)


def test_driving_expressions_pick_the_varying_coefficients():
    e = torch.zeros(20, 6)
    e[:, 1] = torch.linspace(0, 1, 20)
    e[:, 4] = torch.linspace(0, 0.5, 20)
    e[:, 2] = 0.001 * torch.arange(20.0)  # too little to drive anything
    assert driving_expressions(e).tolist() == [1, 4]
    assert driving_expressions(e, limit=1).tolist() == [1]


def test_free_triangles_may_hold_gaussians_off_the_surface(builtin):
    """Scalp, ears and neck Gaussians may stand a hand's width off their triangle (hair); face ones may not."""
    free = free_triangles(builtin)
    face = builtin.region("face")[builtin.faces].all(1)
    scalp = builtin.region("scalp")[builtin.faces].all(1)
    assert not bool(free[face].any()) and bool(free[scalp].all())
    t_face, t_scalp = int(torch.nonzero(face)[0, 0]), int(torch.nonzero(scalp)[0, 0])
    av = GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=8, fill_triangles=False))
    N = av.num_gaussians
    reg0 = float(av.regulariser()["offset"].detach())
    far = torch.tensor([[0.0, 0.0, 5.0]])  # 5 triangle sizes along the normal (~2-5 cm)
    fields = {k: v.detach()[:1].clone() for k, v in av.params.items()}
    fields["offset"] = far
    av.add_gaussians(fields, torch.tensor([t_scalp]))
    assert av.num_gaussians == N + 1 and int(av.parent[-1]) == t_scalp
    assert float(av.regulariser()["offset"].detach()) == reg0 == 0.0  # within FREE_OFFSET_M of a scalp triangle
    av.add_gaussians(fields, torch.tensor([t_face]))
    assert float(av.regulariser()["offset"].detach()) * (N + 2) > 3.9  # 4 triangle sizes too far on the face
    too_far = FREE_OFFSET_M * 1.2 / float(triangle_frames(builtin().vertices, builtin.faces).scale[0, t_scalp])
    with torch.no_grad():
        av.params["offset"][-1] = torch.tensor([0.0, 0.0, 0.0])
        av.params["offset"][-2] = torch.tensor([0.0, 0.0, too_far])
    assert float(av.regulariser()["offset"].detach()) > 0  # past the bound even a scalp Gaussian is pulled back
    with pytest.raises(ValueError):
        av.add_gaussians({"offset": far}, torch.tensor([t_scalp]))


def test_silhouette_coverage_fills_mask_pixels_the_mesh_misses(builtin):
    """A 'hair' block in the mask beside the head gets Gaussians on free triangles that cover it after training-free init."""
    from avatar3d.avatar.coverage import cover_silhouettes
    from avatar3d.avatar.dataset import FrameSet

    av = GaussianHead.initialise(builtin, options=HeadInit(uv_resolution=32))
    cam = _camera(64)
    e, p, t = _params(builtin)
    with torch.no_grad():
        alpha = av(e, p, t, cam).alpha[0, ..., 0]
    cols = torch.nonzero(alpha.amax(0) > 0.5)[:, 0]
    right = int(cols.max()) + 1
    mask = (alpha > 0.5).to(torch.uint8) * 255
    mask[20:44, right:right + 8] = 255  # hair hanging right of the head
    img = torch.full((1, 64, 64, 3), 60, dtype=torch.uint8)
    fs = FrameSet(torch.tensor([0]), img, mask[None], torch.full((1, 64, 64), 255, dtype=torch.uint8), e, p, t,
                  cam.K[None], cam.world_to_cam[None], 64, 64)
    N = av.num_gaussians
    reg0 = float(av.regulariser()["offset"].detach()) * N
    added = cover_silhouettes(av, fs, spacing_px=2.0)
    assert added == av.num_gaussians - N and 20 <= added <= 2 * 24 * 8 // 4
    assert bool(free_triangles(builtin)[av.parent[N:]].all())
    assert float(av.regulariser()["offset"].detach()) * av.num_gaussians == pytest.approx(reg0)  # the new ones within bounds
    with torch.no_grad():
        r = av(e, p, t, cam)
    block = r.alpha[0, 22:42, right + 1:right + 7, 0]
    assert float(block.mean()) > 0.8, float(block.mean())
    assert float((r.image[0, 22:42, right + 1:right + 7] - 60 / 255).abs().max()) < 0.15  # the pixels' colour
    assert cover_silhouettes(av, fs, spacing_px=2.0) <= added // 4  # a second pass finds little left to fill


def test_frame_refinement_starts_at_the_tracking_and_moves_only_trained_frames(avatar_truth_dir):
    """Per-frame corrections start at zero, get gradients for the frames a step renders, and survive a checkpoint."""
    from avatar3d._tensor import torch_threads
    from avatar3d.avatar.refine import FrameRefinement
    from avatar3d.avatar.train import AvatarOptions, AvatarTrainer, prepare

    ref = FrameRefinement(3, 4, 2)
    e, p, t = torch.rand(2, 4), torch.rand(2, 2, 3), torch.rand(2, 3)
    out = ref(torch.tensor([0, 2]), e, p, t)
    assert all(torch.equal(a, b) for a, b in zip(out, (e, p, t)))
    with torch_threads(1):
        opts = AvatarOptions(resolution=48, iterations=4, init=HeadInit(uv_resolution=16), densify=None, refine=True, cover=False)
        _, model, train = prepare(avatar_truth_dir, opts)
        av = GaussianHead.initialise(model, torch.zeros(model.num_shape), options=opts.init)
        trainer = AvatarTrainer(av, train, opts)
        for _ in range(3):
            trainer.step()
        moved = (trainer.refine.expression.detach().abs().sum(1) > 0) | (trainer.refine.transl.detach().abs().sum(1) > 0)
        assert 1 <= int(moved.sum()) <= 3  # only the three frames the steps rendered (batch 1)
        state = trainer.state_dict()
        again = AvatarTrainer(GaussianHead.initialise(model, torch.zeros(model.num_shape), options=opts.init), train, opts)
        again.load_state_dict(state)
        assert torch.equal(again.refine.transl, trainer.refine.transl) and torch.equal(again.refine.pose, trainer.refine.pose)
        a, b = trainer.step(), again.step()
    assert a["loss"] == b["loss"] and torch.equal(again.refine.expression, trainer.refine.expression)
