"""The forward-only CPU render path (``ext.render``, taken when nothing needs gradients; ``depth_mode="none"``)
gives the training path's images and alphas bit for bit, and the PyTorch reference's to float tolerance.

Scenes: the saturating shell (pixels stop compositing), faint and needle splats, partial tiles, a background,
normals as extra channels, and two cameras.
"""

from __future__ import annotations

import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.render.gaussians import rasterize_gaussians
from helpers.gaussian_scenes import shell_scene

SCENES = {
    "saturated shell": dict(N=1500, W=61, H=50),
    "needles and faint splats": dict(N=600, W=45, H=70, opacity=(0.002, 0.6), thin=True, seed=1),
}


def _training_path(sc, **kw):
    """rasterize_gaussians as a training step runs it (autograd on: the extension's forward with its records)."""
    means = sc["means"].clone().requires_grad_()
    out = rasterize_gaussians(**{**sc, "means": means}, **kw)
    return [None if o is None else o.detach() for o in out[:4]], out[4]


@pytest.mark.parametrize("name", list(SCENES))
def test_render_path_equals_training_path_and_reference(cpu_ext, name):
    sc = shell_scene(**SCENES[name])
    bg = torch.tensor([1.0, 0.5, 0.25])
    with torch_threads(1):
        (img_t, a_t, d_t, _), meta_t = _training_path(sc, backgrounds=bg)
        with torch.no_grad():
            img, a, d, nrm, meta = rasterize_gaussians(**sc, backgrounds=bg, depth_mode="none")
            img_d, a_d, d_d, _, _ = rasterize_gaussians(**sc, backgrounds=bg)
            img_r, a_r, d_r, _, _ = rasterize_gaussians(**sc, backgrounds=bg, backend="torch")
    assert meta["backend"] == "cpu" and d is None and nrm is None
    assert torch.equal(img, img_t) and torch.equal(a, a_t)  # the same kernel: bit for bit
    assert torch.equal(img_d, img_t) and torch.equal(d_d, d_t)  # depth composited when asked, also bit for bit
    assert torch.equal(meta["radii"], meta_t["radii"]) and torch.equal(meta["means2d"], meta_t["means2d"].detach())
    torch.testing.assert_close(img, img_r, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(a, a_r, atol=2e-5, rtol=1e-4)
    assert (a > 0.5).float().mean() > 0.1 and (img != bg).any()  # something was drawn over the background


def test_render_path_with_normals_and_two_cameras(cpu_ext):
    sc = shell_scene(800, 40, 33, seed=4)
    vm2 = sc["viewmats"].clone()
    vm2[0, 0, 3] = 0.02  # a second camera, shifted sideways
    sc = dict(sc, viewmats=torch.cat([sc["viewmats"], vm2]), Ks=sc["Ks"].expand(2, 3, 3))
    normals = torch.nn.functional.normalize(sc["means"], dim=-1)
    with torch_threads(1):
        (img_t, a_t, d_t, n_t), _ = _training_path(sc, normals=normals, depth_mode="accumulated")
        with torch.no_grad():
            img, a, d, n, _ = rasterize_gaussians(**sc, normals=normals, depth_mode="accumulated")
            img0, _, d0, n0, _ = rasterize_gaussians(**sc, normals=normals, depth_mode="none")
    for new, old in ((img, img_t), (a, a_t), (d, d_t), (n, n_t)):
        assert torch.equal(new, old)
    assert d0 is None and torch.equal(img0, img_t) and torch.equal(n0, n_t)
    assert not torch.equal(img[0], img[1])  # the cameras see different images


def test_depth_mode_none_on_the_training_path_keeps_gradients(cpu_ext):
    sc = shell_scene(400, 32, 32, opacity=(0.3, 0.8), seed=5)
    feats = sc["features"].clone().requires_grad_()
    with torch_threads(1):
        img, _, depth, _, _ = rasterize_gaussians(**{**sc, "features": feats}, depth_mode="none")
        img.sum().backward()
    assert depth is None and feats.grad is not None and feats.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="depth_mode"):
        rasterize_gaussians(**sc, depth_mode="median")


def test_passive_openmp_wait_is_set_only_before_torch_and_never_over_the_users():
    """``avatar3d avatar render`` asks for OMP_WAIT_POLICY=PASSIVE (libgomp reads it when torch loads it)."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; from avatar3d._openmp import prefer_passive_wait as p; "
            "print(p(), os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, check=True).stdout.split()  # noqa: E731
    assert run(env) == ["True", "PASSIVE", "False"]  # the module itself does not import torch
    assert run(dict(env, OMP_WAIT_POLICY="ACTIVE")) == ["False", "ACTIVE", "False"]
    late = subprocess.run([sys.executable, "-c", "import torch; " + code], env=env, capture_output=True, text=True, check=True)
    assert late.stdout.split()[:2] == ["False", "None"]  # too late once torch is loaded: nothing pretends otherwise
