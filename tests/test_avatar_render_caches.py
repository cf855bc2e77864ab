"""What a forward-only avatar render keeps between frames, and when it must let go of it.

A render (grad mode off) reuses the head model's mesh at the avatar's identity, the Gaussians' normals in their
own frames, and colours expression blendshapes by a batched product; each must give what the training path gives
and follow any change of the identity or the Gaussians.
"""

from __future__ import annotations

import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.appearance import Appearance, SHAppearance
from avatar3d.avatar.model import GaussianHead, HeadInit


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


class NormalColours(Appearance):
    """Colours that show the shading normals (what a relit appearance shades with)."""

    name = "normals"

    def fields(self, colours, num_expression):
        return {"dummy": colours.new_zeros(colours.shape[0], 1)}

    def colours(self, params, expression, inputs):
        return inputs.normals() * 0.5 + 0.5


def _frame(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(1, model.num_expression, generator=g) * 0.5, torch.randn(1, model.num_joints, 3, generator=g) * 0.1,
            torch.randn(1, 3, generator=g) * 0.01)


def _direct(av, e, j, t):
    """The mesh as the head model computes it from scratch at the avatar's identity."""
    return av.head_model(av.shape[None], e, j, t).vertices


def test_identity_template_is_reused_and_follows_a_changed_identity(builtin):
    av = GaussianHead.initialise(builtin, shape=torch.zeros(builtin.num_shape), options=HeadInit(uv_resolution=8))
    e, j, t = _frame(builtin, 0)
    with torch.no_grad():
        first = av.posed_head(e, j, t).vertices
        assert torch.equal(first, _direct(av, e, j, t))
        kept = av._shaped[2]
        assert torch.equal(av.posed_head(*_frame(builtin, 1)).vertices, _direct(av, *_frame(builtin, 1)))
        assert av._shaped[2] is kept  # same identity: not recomputed
        av.shape.copy_(torch.linspace(-1, 1, builtin.num_shape))  # in place
        moved = av.posed_head(e, j, t).vertices
        assert torch.equal(moved, _direct(av, e, j, t)) and (moved - first).abs().max() > 1e-3
        av.shape = torch.full((builtin.num_shape,), 0.5)  # a new tensor
        assert torch.equal(av.posed_head(e, j, t).vertices, _direct(av, e, j, t))
        av.shape.data[0] = -0.5  # a change that bumps no version: the values are compared too
        assert torch.equal(av.posed_head(e, j, t).vertices, _direct(av, e, j, t))
    # training computes it each step, with gradients where the inputs ask for them
    e.requires_grad_(True)
    assert torch.equal(av.posed_head(e, j, t).vertices, _direct(av, e, j, t))


def test_local_normals_are_kept_while_the_gaussians_are_unchanged(builtin):
    av = GaussianHead.initialise(builtin, appearance=NormalColours(), options=HeadInit(uv_resolution=8))
    with torch.no_grad():
        av.params["rotation"].copy_(torch.nn.functional.normalize(torch.randn_like(av.params["rotation"]), dim=-1))
    centre = torch.tensor([0.0, 0.0, 0.6])

    def fresh(posed):  # the training path (grad on), computed anew
        return av.colours(posed, centre).detach()

    posed = av.posed_head(*_frame(builtin, 0))
    want0 = fresh(posed)
    with torch.no_grad():
        assert torch.equal(av.colours(posed, centre), want0)
        kept = av._local_normals[1]
        posed1 = av.posed_head(*_frame(builtin, 1))
        assert (av.colours(posed1, centre) - fresh(posed1)).abs().max() < 1e-6  # another pose, same Gaussians
        assert av._local_normals[1] is kept
        av.params["log_scale"][:, 2] += 3.0  # the shortest axis changes: the kept normals must not be used
        posed2 = av.posed_head(*_frame(builtin, 1))
        got = av.colours(posed2, centre)
    assert torch.equal(got, fresh(posed2)) and (got - want0).abs().max() > 0.1


def test_expression_colours_without_gradients_match_the_training_path(builtin):
    av = GaussianHead.initialise(builtin, appearance=SHAppearance(), options=HeadInit(uv_resolution=8),
                                 expr_index=torch.tensor([0, 5, 21]))
    with torch.no_grad():
        av.params["expr_colour"].normal_(0, 0.2)
    posed = av.posed_head(*_frame(builtin, 2))
    centre = torch.tensor([0.0, 0.0, 0.6])
    train = av.colours(posed, centre)
    assert train.requires_grad
    with torch.no_grad():
        render = av.colours(posed, centre)
    assert (render - train.detach()).abs().max() < 1e-6 and render.std() > 0.05
