"""The viewer with the appearance stage's PBR maps: display modes show the maps, shading uses them.

Headless screenshots of a small head (tests/helpers/export_toy.py: an ellipsoid whose UVs have a seam
at the back, +u towards +X and +v up at the front) with synthetic maps written by
``AppearanceMaps.save``. Map displays are checked value by value (pixel = map value x 255 at projected
vertices); the shaded mode is checked through what each map must do to the picture (a smoother or
more specular surface has a brighter highlight, a normal map tilted towards the light brightens).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from avatar3d.appearance.maps import AppearanceMaps
from avatar3d.errors import Avatar3DError, BadInputError
from avatar3d.render.color import srgb_encode
from avatar3d.viewer.materials import load_surface_maps, sample_bilinear
from avatar3d.viewer.params import HeadParams
from avatar3d.viewer.scene import Lighting, project
from avatar3d.viewer.shot import ViewOptions, render_view
from avatar3d.viewer.source import open_source
from helpers.export_toy import toy_model, toy_sequence

SIZE = 192
R = 64


@pytest.fixture(scope="module")
def head():
    from avatar3d.viewer.headless import check_offscreen_support

    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))
    return toy_model()


def maps_with(model_name: str = "toy", roughness=None, specular=None, tilt=(0.0, 0.0)) -> AppearanceMaps:
    """Grey albedo with a red ramp along v; roughness ramp along u and specular ramp down the rows unless constants are given;
    normals tilted by ``tilt`` degrees towards +u and +v."""
    u = (np.arange(R) + 0.5) / R
    uu, vv = np.meshgrid(u, u)
    albedo = np.full((R, R, 3), 0.4, np.float32)
    albedo[..., 0] = 0.2 + 0.6 * vv
    m = AppearanceMaps.priors(albedo=albedo, coverage=np.ones((R, R), np.float32),
                              sh=np.eye(9, 3, dtype=np.float32) * 0.5, model=model_name)
    m.roughness = np.full((R, R), roughness, np.float32) if roughness is not None else (0.1 + 0.8 * uu).astype(np.float32)
    m.specular = np.full((R, R), specular, np.float32) if specular is not None else (0.1 + 0.8 * vv).astype(np.float32)
    n = np.array([np.tan(np.deg2rad(tilt[0])), np.tan(np.deg2rad(tilt[1])), 1.0])
    m.normal[:] = (n / np.linalg.norm(n)).astype(np.float32)
    return m


def render(model, folder: Path, mode: str = "shaded", lighting: Lighting = Lighting(), interactive: bool = False):
    """(image, renderer) of the neutral head with the maps in ``folder`` (None: without maps)."""
    from avatar3d.viewer.headless import HeadlessRenderer
    from avatar3d.viewer.mesh import HeadMesh

    maps = load_surface_maps(folder, model.name) if folder is not None else None
    r = HeadlessRenderer(HeadMesh(model, maps), SIZE, SIZE)
    r.render(HeadParams.neutral(model), lighting, mode=mode)
    if interactive:
        r.head.set_interactive(True)
    return r.render(), r


def front_samples(model, r, min_z: float = 0.7):
    """Pixels (N, 2) int and UVs (N, 2) of render vertices facing the camera (well inside the silhouette)."""
    mesh = r.head.mesh
    pos, nrm = mesh.render_arrays(r.head.vertices)
    keep = nrm[:, 2] > min_z
    px = np.round(project(pos[keep], r.K, r.world_to_cam)).astype(int)
    return px, mesh.render_uvs[keep]


def map_at(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    return sample_bilinear(img[..., None] if img.ndim == 2 else img, uv)[:, 0]


def test_albedo_roughness_and_specular_modes_show_the_maps_values(head, tmp_path, out_dir):
    maps_with().save(tmp_path / "m")
    shots = {}
    loaded = AppearanceMaps.load(tmp_path / "m")
    for mode in ("albedo", "roughness", "specular"):
        img, r = render(head, tmp_path / "m", mode)
        shots[mode] = img
        px, uv = front_samples(head, r)
        shown = img[px[:, 1], px[:, 0]].astype(float)
        if mode == "albedo":  # the sRGB code, as in albedo.png
            want = sample_bilinear(srgb_encode(loaded.albedo), uv) * 255
            err = np.abs(shown - want).max(1)
        else:
            assert np.abs(shown[:, 0] - shown[:, 2]).max() <= 1  # grey
            err = np.abs(shown[:, 0] - map_at(getattr(loaded, mode), uv) * 255)
        assert len(err) > 50 and np.median(err) < 2.0 and np.percentile(err, 95) < 6.0, (mode, np.median(err), np.percentile(err, 95))
    # The patterns as seen: roughness grows to the right (+u is +X, the image's right), specular downwards.
    rough, spec = shots["roughness"][..., 0].astype(float), shots["specular"][..., 0].astype(float)
    c = SIZE // 2
    assert rough[c, c + 25] > rough[c, c - 25] + 10 and abs(rough[c - 30, c] - rough[c + 30, c]) < 6
    assert spec[c + 30, c] > spec[c - 30, c] + 30 and abs(spec[c, c + 25] - spec[c, c - 25]) < 6
    Image.fromarray(np.concatenate([shots["albedo"], shots["roughness"], shots["specular"]], 1)).save(out_dir / "viewer_map_modes.png")


def test_normals_mode_shows_the_normal_maps_detail(head, tmp_path):
    maps_with(tilt=(0, 0)).save(tmp_path / "flat")
    maps_with(tilt=(30, 0)).save(tmp_path / "tilt")
    flat, _ = render(head, tmp_path / "flat", "normals")
    tilt, r = render(head, tmp_path / "tilt", "normals")
    c = SIZE // 2
    n_flat = flat[c - 3 : c + 4, c - 3 : c + 4].reshape(-1, 3).mean(0) / 255 * 2 - 1
    n_tilt = tilt[c - 3 : c + 4, c - 3 : c + 4].reshape(-1, 3).mean(0) / 255 * 2 - 1
    # The front of the head faces +Z; the map's +u tangent there is +X.
    np.testing.assert_allclose(n_flat, [0, 0, 1], atol=0.06)
    np.testing.assert_allclose(n_tilt, [np.sin(np.deg2rad(30)), 0, np.cos(np.deg2rad(30))], atol=0.06)
    # The display follows the pose: rolled by 0.5 rad about +Z, the map's +u (the tilt) turns from +X towards +Y.
    p = HeadParams.neutral(head)
    p.pose[0] = (0.0, 0.0, 0.5)
    rolled = r.render(p)
    n_rolled = rolled[c - 3 : c + 4, c - 3 : c + 4].reshape(-1, 3).mean(0) / 255 * 2 - 1
    assert n_rolled[1] > n_tilt[1] + 0.15 and n_rolled[0] > 0.3, n_rolled
    # Without maps the mode stays Open3D's geometric normal shader.
    plain, _ = render(head, None, "normals")
    assert plain.shape == flat.shape


def test_shading_uses_the_estimated_materials(head, tmp_path, out_dir):
    """Sun from the front-right plus an environment: every map changes the lit picture the way it should."""
    light = Lighting(azimuth=35, elevation=20, env_intensity=0.6, environment="studio")
    cases = {"smooth": dict(roughness=0.15, specular=0.5), "rough": dict(roughness=0.85, specular=0.5),
             "shiny": dict(roughness=0.3, specular=1.0), "matte": dict(roughness=0.3, specular=0.0)}
    shots = {}
    for name, kw in cases.items():
        maps_with(**kw).save(tmp_path / name)
        shots[name], r = render(head, tmp_path / name, "shaded", light)
    g = {k: v.astype(float).mean(2) for k, v in shots.items()}
    assert g["smooth"].max() > g["rough"].max() + 25, "roughness map not used for the highlight"
    assert g["shiny"].max() > g["matte"].max() + 25 and g["shiny"].mean() > g["matte"].mean(), "specular map not used"
    # Normal map, in the maps' convention (+u tangent, +v bitangent): tilting towards the light brightens the front.
    c = SIZE // 2
    patch = (slice(c - 15, c + 15), slice(c - 15, c + 15))
    side = Lighting(azimuth=70, elevation=0, env_intensity=0.0)
    top = Lighting(azimuth=0, elevation=70, env_intensity=0.0)
    lum = {}
    for name, tilt, lig in (("+u", (25, 0), side), ("-u", (-25, 0), side), ("+v", (0, 25), top), ("-v", (0, -25), top)):
        maps_with(roughness=0.6, specular=0.35, tilt=tilt).save(tmp_path / name)
        img, _ = render(head, tmp_path / name, "shaded", lig)
        shots[name] = img
        lum[name] = img.astype(float).mean(2)[patch].mean()
    assert lum["+u"] > lum["-u"] + 15 and lum["+v"] > lum["-v"] + 15, lum
    Image.fromarray(np.concatenate([shots[k] for k in ("smooth", "rough", "shiny", "matte", "+u", "-u", "+v", "-v")], 1)).save(
        out_dir / "viewer_materials.png")


def test_interactive_frames_use_per_vertex_materials(head, tmp_path):
    light = Lighting(azimuth=20, elevation=10, env_intensity=0.5)
    maps_with(roughness=0.15, specular=1.0).save(tmp_path / "glossy")
    maps_with(roughness=0.9, specular=0.0).save(tmp_path / "dull")
    glossy, r = render(head, tmp_path / "glossy", "shaded", light, interactive=True)
    assert r.head.fast_active and np.ndim(r.head._fast.roughness) == 2
    dull, _ = render(head, tmp_path / "dull", "shaded", light, interactive=True)
    assert glossy.astype(float).mean(2).max() > dull.astype(float).mean(2).max() + 25


def test_tracking_directory_appearance_is_picked_up(head, tmp_path):
    d = tmp_path / "track"
    seq = toy_sequence(head, n=2)
    seq.model = "toy"
    seq.width = seq.height = SIZE
    seq.K[:] = np.array([[2.2 * SIZE, 0, SIZE / 2], [0, 2.2 * SIZE, SIZE / 2], [0, 0, 1]], np.float32)
    w2c = np.diag([1.0, -1.0, -1.0, 1.0]).astype(np.float32)
    w2c[2, 3] = 0.6
    seq.world_to_cam[:] = w2c
    seq.save(d)
    src = open_source(str(d), model=head)
    assert src.maps is None
    maps_with().save(d / "appearance")
    src = open_source(str(d), model=head)
    assert src.maps is not None and src.maps.roughness.shape == (R, R)
    img, _ = render_view(src, ViewOptions(mode="roughness", frame=0))
    assert img.shape == (SIZE, SIZE, 3) and (img[..., 0] > 60).sum() > 500
    other = tmp_path / "ict_maps"
    maps_with(model_name="ict").save(other)
    with pytest.raises(BadInputError, match="ict head model's UV layout"):
        open_source(str(d), model=head, appearance=other)


def test_cli_screenshot_with_appearance(tmp_path):
    maps_with(model_name="builtin").save(tmp_path / "maps")
    out = tmp_path / "rough.png"
    r = subprocess.run([sys.executable, "-m", "avatar3d", "view", "builtin", "--appearance", str(tmp_path / "maps"), "--display", "roughness",
                        "--size", "160", "--screenshot", str(out)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "offscreen rendering needs" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr
    img = np.asarray(Image.open(out)).astype(float)
    head = np.abs(img - img[2, 2]).sum(2) > 10
    assert head.sum() > 2000 and np.percentile(np.abs(img[..., 0] - img[..., 2])[head], 90) <= 1  # grey values of the map (edges blend)


def test_relighting_with_the_capture_light(head, tmp_path, out_dir):
    """``--env capture``: the appearance stage's estimate of the capture's light (environment.hdr) lights the head,
    in the full-quality and the interactive frames; without maps the name is one clear error."""
    from avatar3d.render.lighting import EnvironmentMap, equirect_directions

    d = equirect_directions(64, 128)
    light = (0.05 + 3.0 * np.clip(d[..., 0], 0, None) ** 4)[..., None] * np.ones(3)  # bright towards +X
    m = maps_with(roughness=0.6, specular=0.35)
    m.environment = EnvironmentMap(light.astype(np.float32))
    m.save(tmp_path / "m")
    lit = Lighting(intensity=0.0, environment="capture", env_intensity=1.0)
    full, r = render(head, tmp_path / "m", "shaded", lit)
    r.head.set_interactive(True)
    fast = r.render()
    sil = r.silhouette()
    cx = int(np.nonzero(sil)[1].mean())
    cols = np.arange(SIZE)[None]
    for img in (full, fast):
        g = img.astype(float).mean(2)
        right, left = g[sil & (cols > cx + 10)].mean(), g[sil & (cols < cx - 10)].mean()
        assert right > left + 20, (right, left)  # +X is the image's right
    Image.fromarray(np.concatenate([full, fast], 1)).save(out_dir / "viewer_capture_light.png")
    with pytest.raises(BadInputError, match="needs the appearance stage's maps"):
        render(head, None, "shaded", lit)
