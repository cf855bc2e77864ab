"""Reflectance (environment, shadow-free albedo, specular, roughness) scored against the Mitsuba capture.

The small path-traced capture (24 frames at 192^2, cached) with its TRUE parameters goes through
:func:`avatar3d.appearance.estimate.estimate_appearance` at 128^2; the maps are scored against the
capture's true maps (face texels) and by relighting: our maps shaded by :func:`avatar3d.render.pbr.render_pbr`
under three held-out environments vs Mitsuba's path trace of the true maps under the same
environments (4 frames at 64 spp, 2x2 box-averaged; :mod:`avatar3d.synthetic.relight_truth`, cached,
~1 min to render once). Measured numbers are in the asserts' comments (table in
:mod:`avatar3d.appearance.reflectance`): with the capture's light known the issue's relighting target (30 dB)
is met on all three environments; with the light estimated it is not (27.3 / 25.6 / 28.7 dB): the floors
sit below the measurements.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from avatar3d.appearance.estimate import AppearanceOptions, estimate_appearance
from avatar3d.appearance.fusion import albedo_psnr
from avatar3d.appearance.reflectance import ReflectanceOptions
from avatar3d.appearance.visibility import LightTransfer, VertexVisibility, downsample_env, env_grid, head_rotation
from avatar3d.data.frames import TrackedFrames
from avatar3d.models import load_head_model
from avatar3d.render.lighting import EnvironmentMap
from avatar3d.render.pbr import PBRLight, PBRMaterial, SeamMesh, render_pbr
from avatar3d.synthetic.relight_truth import material_errors

RES = 128


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin")


@pytest.fixture(scope="module")
def truth(capture):
    from avatar3d.synthetic.relight_truth import held_out_truth

    return held_out_truth(capture)


@pytest.fixture(scope="module")
def maps(truth_dir, model):
    # The path-traced background IS the (distant) environment, so its pixels are a valid light probe here;
    # a real room's wall is near and not what lights the face (off by default: see ReflectanceOptions.background).
    opts = AppearanceOptions(resolution=RES, working_resolution=RES, reflectance=ReflectanceOptions(background=True))
    return estimate_appearance(TrackedFrames(truth_dir), model, opts)


@pytest.fixture(scope="module")
def maps_known_light(truth_dir, model, capture):
    opts = AppearanceOptions(resolution=RES, working_resolution=RES, known_environment=capture.environment(),
                             reflectance=ReflectanceOptions(background=True))
    return estimate_appearance(TrackedFrames(truth_dir), model, opts)


def test_estimated_maps_against_the_truth(maps, capture, model, out_dir):
    from avatar3d.synthetic.relight_truth import face_texels

    alb = cv2.resize(capture.maps().albedo, (RES, RES), interpolation=cv2.INTER_AREA)
    where = face_texels(model, RES) & (maps.coverage > 0.5)
    scaled, raw = albedo_psnr(maps.albedo, alb, where), albedo_psnr(maps.albedo, alb, where, per_channel_scale=False)
    err = material_errors(maps, capture, model)
    print(f"albedo PSNR {scaled:.2f} dB scaled, {raw:.2f} dB raw; " + ", ".join(f"{k} {v:.3f}" for k, v in err.items()))
    assert scaled >= 28.0  # measured 29.1 at 128^2 (fusion alone: 30.5 at 256^2)
    assert err["roughness_mae"] <= 0.10  # the target; measured 0.059, worse than the prior alone (0.044)
    assert err["specular_mae"] <= 0.05  # measured 0.023 (prior alone 0.021)
    assert maps.environment is not None and maps.environment.pixels.min() >= 0
    assert maps.roughness.shape == (RES, RES) and maps.specular.shape == (RES, RES)
    pic = np.concatenate([np.clip(maps.albedo, 0, 1) ** (1 / 2.2), np.repeat(maps.roughness[..., None], 3, -1),
                          np.repeat(maps.specular[..., None], 3, -1)], 1)
    cv2.imwrite(str(out_dir / "appearance_reflectance_maps.png"), np.round(pic[..., ::-1] * 255).astype(np.uint8))


def _relit(maps, capture, truth, model, path, label):
    from avatar3d.synthetic.relight_truth import relight_scores

    ours = relight_scores(maps, capture, truth, model, save=path)
    print(f"relit PSNR over face pixels, {label}: " + ", ".join(f"{k} {v:.2f} dB" for k, v in ours.items()))
    assert len(ours) == 3
    return ours


def test_relighting_under_held_out_environments(maps, capture, truth, model, out_dir):
    """The whole estimate (light included). Raw, the issue's 30 dB is NOT reached: the albedo/light scale ambiguity
    leaves the albedo ~15-20 % too bright (with the true light ~5 %). After the albedo's one global per-channel scale
    (the same allowance as the albedo score: least squares of the estimated vs the true albedo over observed face
    texels, 3 numbers for the whole map, applied before relighting) it is reached under all three environments."""
    import dataclasses

    from avatar3d.synthetic.relight_truth import albedo_scale

    ours = _relit(maps, capture, truth, model, out_dir / "appearance_relit.png", "estimated light")
    assert min(ours.values()) >= 24.0  # measured 27.3 / 25.6 / 28.7 (studio@120 / sunset / overcast)
    gain = albedo_scale(maps, capture, model)
    assert np.all((gain > 0.7) & (gain < 1.0))  # measured 0.85 / 0.83 / 0.83: too bright, by a grey factor
    scaled = dataclasses.replace(maps, albedo=(maps.albedo * gain).astype(np.float32))
    ours = _relit(scaled, capture, truth, model, out_dir / "appearance_relit_scaled.png", "estimated light, albedo scaled")
    assert min(ours.values()) >= 30.0  # measured 31.4 / 30.6 / 35.5


def test_relighting_with_the_capture_light_known(maps_known_light, capture, truth, model, out_dir):
    """Albedo, specular and roughness fitted under the capture's true light: relighting reaches the issue's 30 dB."""
    ours = _relit(maps_known_light, capture, truth, model, out_dir / "appearance_relit_known_light.png", "known light")
    assert min(ours.values()) >= 30.0  # measured 33.6 / 32.6 / 38.1
    err = material_errors(maps_known_light, capture, model)
    print("known light: " + ", ".join(f"{k} {v:.3f}" for k, v in err.items()))
    assert err["roughness_mae"] <= 0.10  # measured 0.040 (prior alone 0.044)


def test_pbr_renderer_shapes_and_normal_map(model):
    """render_pbr: shapes, zero outside the mesh, a tilted normal map changes the shading."""
    from avatar3d.render.camera_builders import centred_K, front_camera

    mesh = SeamMesh.of(model)
    R = 32
    flat = np.zeros((R, R, 3), np.float32)
    flat[..., 2] = 1
    tilted = np.zeros((R, R, 3), np.float32)
    tilted[..., 0], tilted[..., 2] = 0.5, np.sqrt(0.75)
    light = PBRLight.of(EnvironmentMap.generated("studio", 64), width=32)
    K, w2c = centred_K(90.0, 96, 96), front_camera(0.35)
    a = np.full((R, R, 3), 0.5, np.float32)
    s, r = np.full((R, R), 0.35, np.float32), np.full((R, R), 0.5, np.float32)
    V = model.v_template.float()
    one = render_pbr(mesh, V, K, w2c, 96, 96, PBRMaterial.of(a, s, r, flat), light)
    two = render_pbr(mesh, V, K, w2c, 96, 96, PBRMaterial.of(a, s, r, tilted), light)
    assert one.rgb.shape == (96, 96, 3) and one.alpha.shape == (96, 96)
    assert float(one.rgb[one.alpha == 0].abs().max()) == 0
    assert 0.2 < float(one.alpha.mean()) < 0.9
    assert float((one.rgb - two.rgb).abs().mean()) > 1e-3
    assert torch.allclose(one.rgb, one.diffuse + one.specular)


def test_visibility_shadows_and_rotation(model):
    """The back of the head hides the nose tip; the face is mostly unoccluded, its concave parts less; the head's
    rotation is found back."""
    V = model.v_template.float()
    vis = VertexVisibility(V, model.faces, directions=64, resolution=96)
    assert vis.visible.shape == (model.num_vertices, 64)
    tip = torch.argmax(V[:, 2])
    back = torch.argmin(vis.directions[:, 2])
    assert vis.visible[tip, back] == 0 and vis.visible[tip].mean() > 0.3
    a = 0.4
    Rm = torch.tensor([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], dtype=torch.float32)
    assert torch.allclose(head_rotation(V, V @ Rm.T + 0.1), Rm, atol=1e-4)
    lt = LightTransfer(vis, *env_grid(8), model.faces)
    shadow, ao = lt.factors(V, downsample_env(EnvironmentMap.generated("overcast", 64), 8))
    assert shadow.shape == (model.num_vertices, 3) and ao.shape == (model.num_vertices, 1)
    assert float(ao.min()) >= 0 and float(ao.max()) <= 1
    q = torch.quantile(ao[model.region("face"), 0], torch.tensor([0.05, 0.5]))
    assert q[1] > 0.9 and q[0] < 0.85  # measured 0.98 and 0.70 (64 directions: coarser)


def test_maps_save_and_load(maps, tmp_path):
    from avatar3d.appearance.maps import AppearanceMaps

    maps.save(tmp_path / "app")
    back = AppearanceMaps.load(tmp_path / "app")
    assert np.abs(back.roughness - maps.roughness).max() < 1 / 255 + 1e-6
    assert back.environment is not None


def test_specular_radiance_for_the_detail_pass():
    """The callable handed to the full-resolution detail pass: the split-sum specular of an environment."""
    from avatar3d.appearance.estimate import SpecularRadiance

    spec = SpecularRadiance(EnvironmentMap.generated("overcast", 64))
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = spec(n, n, torch.full((2,), 0.5), torch.full((2,), 0.35), torch.tensor([1.0, 0.5]))
    assert out.shape == (2, 3) and bool((out > 0).all())
    # Facing the bright overcast sky (up) reflects more than facing the horizon; occlusion scales it.
    assert float(out[1].mean()) > 0.5 * float(out[0].mean())
    twice = spec(n, n, torch.full((2,), 0.5), torch.full((2,), 0.7))
    assert torch.all(twice > spec(n, n, torch.full((2,), 0.5), torch.full((2,), 0.35)))
