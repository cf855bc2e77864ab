"""Export of the appearance stage's PBR maps (``TRACK_DIR/appearance/``) to GLB/glTF and OBJ/MTL.

The maps are synthetic with a recognisable pattern per map (albedo and roughness ramps along u,
specular along v, a normal tilted towards +u, a displacement bump), written with
``AppearanceMaps.save`` like ``avatar3d appearance`` does; the checks read the files back as an engine
would (glTF JSON + images, the MTL) and compare with the maps.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.appearance.maps import AppearanceMaps
from avatar3d.errors import BadInputError, MissingFileError
from avatar3d.export import export, export_files
from avatar3d.export.appearance import load_pbr_images, specular_color_factor
from avatar3d.render.brdf import ior_to_f0
from avatar3d.render.color import srgb_encode
from gltf_validator import assert_valid
from helpers.export_toy import Gltf, toy_model, toy_sequence

torch.set_num_threads(1)
R = 64


def synthetic_maps(model_name: str = "toy", ior: float = 1.4) -> AppearanceMaps:
    """Maps with one pattern each: albedo red ramp along u, roughness ramp along u, specular ramp down the
    rows, normals tilted 30 degrees towards +u, a Gaussian displacement bump (metres)."""
    u = (np.arange(R) + 0.5) / R
    uu, vv = np.meshgrid(u, u)  # uu: column (u), vv: row (0 = top)
    albedo = np.stack([0.1 + 0.8 * uu, np.full_like(uu, 0.3), np.full_like(uu, 0.2)], -1).astype(np.float32)
    m = AppearanceMaps.priors(albedo=albedo, coverage=np.ones((R, R), np.float32), sh=np.eye(9, 3, dtype=np.float32) * 0.5,
                              model=model_name, ior=ior)
    m.roughness = (0.2 + 0.6 * uu).astype(np.float32)
    m.specular = (0.1 + 0.8 * vv).astype(np.float32)
    t = np.deg2rad(30)
    m.normal[:] = np.array([np.sin(t), 0.0, np.cos(t)], np.float32)
    m.displacement = (0.001 * np.exp(-((uu - 0.5) ** 2 + (vv - 0.5) ** 2) / 0.02) - 0.0005).astype(np.float32)
    return m


@pytest.fixture(scope="module")
def track(tmp_path_factory) -> Path:
    """A toy tracking directory with ``appearance/`` written by ``AppearanceMaps.save``."""
    d = tmp_path_factory.mktemp("appearance_track") / "track"
    toy_sequence(toy_model(), n=4).save(d)
    synthetic_maps().save(d / "appearance")
    return d


def _image(g: Gltf, tex: dict, folder: Path) -> np.ndarray:
    from PIL import Image

    im = g.json["images"][g.json["textures"][tex["index"]]["source"]]
    if "uri" in im:
        return np.asarray(Image.open(folder / im["uri"]))
    bv = g.json["bufferViews"][im["bufferView"]]
    return np.asarray(Image.open(io.BytesIO(g.bin[bv.get("byteOffset", 0) : bv.get("byteOffset", 0) + bv["byteLength"]])))


def test_specular_mapping_gives_our_f0():
    for ior in (1.4, 1.5, 1.33):
        k = specular_color_factor(ior)
        for s in (0.0, 0.35, 1.0):  # the extension's f0 = min(f0(ior) * colour factor, 1) * specular
            assert abs(min(ior_to_f0(ior) * k, 1.0) * s - 0.08 * s) < 1e-12
    assert abs(specular_color_factor(1.4) - 2.88) < 1e-9


@pytest.mark.parametrize("fmt", ["glb", "gltf"])
def test_gltf_material_carries_the_maps(track, tmp_path, fmt):
    toy = toy_model()
    files, stats = export_files(track, fmt, tmp_path / f"head.{fmt}", model=toy)
    assert stats.pbr_maps and stats.textured
    assert_valid(files[0])
    g = Gltf(files[0])
    assert set(g.json["extensionsUsed"]) >= {"KHR_materials_specular", "KHR_materials_ior"}
    assert "extensionsRequired" not in g.json  # the core material stays the fallback
    mat = g.json["materials"][0]
    pbr = mat["pbrMetallicRoughness"]
    maps = AppearanceMaps.load(track / "appearance")
    # baseColor: the albedo, sRGB (glTF's baseColorTexture is sRGB-encoded).
    base = _image(g, pbr["baseColorTexture"], tmp_path)
    assert base.shape == (R, R, 3)
    np.testing.assert_allclose(base / 255.0, srgb_encode(maps.albedo), atol=1 / 255 + 1e-6)
    assert "baseColorFactor" not in pbr or pbr["baseColorFactor"] == [1, 1, 1, 1]
    # metallicRoughness: roughness in G (factor 1), metalness 0 in B.
    mr = _image(g, pbr["metallicRoughnessTexture"], tmp_path)
    assert pbr["roughnessFactor"] == 1.0 and pbr["metallicFactor"] == 0.0 and mr[..., 2].max() == 0
    np.testing.assert_allclose(mr[..., 1] / 255.0, maps.roughness, atol=1 / 255 + 1e-6)
    assert int(mr[5, 50, 1]) > int(mr[5, 10, 1]) + 80  # the ramp along u survived (not transposed or flipped)
    # normalTexture with TANGENTs: the map's 30 degree tilt towards +u.
    nt = _image(g, mat["normalTexture"], tmp_path).astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(nt[R // 2, R // 2], [np.sin(np.deg2rad(30)), 0, np.cos(np.deg2rad(30))], atol=0.01)
    assert "TANGENT" in g.json["meshes"][0]["primitives"][0]["attributes"]
    # KHR_materials_specular: the map in alpha; with the ior, f0 = 0.08 * specular.
    ext = mat["extensions"]
    spec = ext["KHR_materials_specular"]
    ior = ext["KHR_materials_ior"]["ior"]
    assert ior == pytest.approx(1.4)
    a = _image(g, spec["specularTexture"], tmp_path)
    assert a.shape == (R, R, 4)
    f0 = np.minimum(ior_to_f0(ior) * np.asarray(spec["specularColorFactor"]), 1)[0] * spec.get("specularFactor", 1.0) * a[..., 3] / 255.0
    np.testing.assert_allclose(f0, 0.08 * maps.specular, atol=0.08 / 255 + 1e-6)
    assert int(a[60, 5, 3]) > int(a[5, 5, 3]) + 100  # specular ramp down the rows
    assert mat["extras"]["avatar3d"]["f0_per_specular"] == 0.08
    if fmt == "gltf":
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "head.bin", "head.gltf", "head_albedo.png", "head_normal.png", "head_roughness.png", "head_specular.png"]


def test_tangent_frame_follows_the_maps_convention(track, tmp_path):
    """glTF's bitangent cross(N, T) * w must point along +v of our UVs (the map's +y): on the toy, +v is up
    (+Y) at the front of the head and +u runs towards +X."""
    out = export(track, "glb", tmp_path / "t.glb", model=toy_model())
    g = Gltf(out)
    a = g.json["meshes"][0]["primitives"][0]["attributes"]
    pos, nrm, tan = g.accessor(a["POSITION"]), g.accessor(a["NORMAL"]), g.accessor(a["TANGENT"])
    front = np.argsort(-pos[:, 2])[:5]
    bit = np.cross(nrm, tan[:, :3]) * tan[:, 3:4]
    assert (tan[front, 0] > 0.9).all() and (bit[front, 1] > 0.9).all(), (tan[front], bit[front])


def test_explicit_appearance_folder_and_head_model_source(tmp_path):
    maps_dir = tmp_path / "maps"
    synthetic_maps().save(maps_dir)
    out = export(toy_model(), "glb", tmp_path / "h.glb", appearance=maps_dir)
    assert_valid(out)
    assert "KHR_materials_specular" in Gltf(out).json["materials"][0]["extensions"]
    # Without appearance/ (and no flag) the material is the model's own: no extensions.
    plain = export(toy_model(), "glb", tmp_path / "p.glb")
    assert "extensionsUsed" not in Gltf(plain).json and "extensions" not in Gltf(plain).json["materials"][0]


def test_obj_mtl_carries_the_maps(track, tmp_path):
    from PIL import Image

    files, _ = export_files(track, "obj", tmp_path / "head.obj", model=toy_model())
    names = sorted(p.name for p in files)
    assert names == ["head.mtl", "head.obj", "head_albedo.png", "head_displacement.png", "head_normal.png", "head_roughness.png",
                     "head_specular.png"]
    mtl = {line.split()[0]: line.split()[1:] for line in (tmp_path / "head.mtl").read_text().splitlines() if line and line[0] != "#"}
    assert mtl["map_Kd"] == ["head_albedo.png"] and mtl["map_Pr"] == ["head_roughness.png"] and mtl["map_Ks"] == ["head_specular.png"]
    assert mtl["norm"] == ["head_normal.png"] and mtl["map_Bump"] == ["head_normal.png"] and mtl["Pm"] == ["0"]
    assert [float(x) for x in mtl["Ks"]] == [0.08] * 3 and float(mtl["Ni"][0]) == pytest.approx(1.4)
    assert mtl["disp"][0] == "-mm" and mtl["disp"][3] == "head_displacement.png"
    base, gain = float(mtl["disp"][1]), float(mtl["disp"][2])
    d16 = np.asarray(Image.open(tmp_path / "head_displacement.png"))
    assert d16.dtype == np.uint16 or d16.max() > 255  # 16 bits kept
    maps = AppearanceMaps.load(track / "appearance")
    np.testing.assert_allclose(base + gain * d16.astype(np.float64) / 65535, maps.displacement, atol=2e-8)
    rough = np.asarray(Image.open(tmp_path / "head_roughness.png"))
    np.testing.assert_allclose(rough / 255.0, maps.roughness, atol=1 / 255 + 1e-6)


def test_bad_appearance_is_one_sentence_and_writes_nothing(track, tmp_path):
    with pytest.raises(MissingFileError, match="avatar3d appearance"):
        export(toy_model(), "glb", tmp_path / "a.glb", appearance=tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no material.json"):
        export(toy_model(), "glb", tmp_path / "b.glb", appearance=empty)
    other = tmp_path / "ict_maps"
    synthetic_maps(model_name="ict").save(other)
    with pytest.raises(BadInputError, match="ict head model's UV layout"):
        export(toy_model(), "glb", tmp_path / "c.glb", appearance=other)
    broken = tmp_path / "broken"
    synthetic_maps().save(broken)
    (broken / "roughness.png").unlink()
    with pytest.raises(BadInputError, match="roughness.png"):
        export(toy_model(), "obj", tmp_path / "d.obj", appearance=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "empty", "ict_maps"]
    assert load_pbr_images(track / "appearance" / "material.json").resolution == R


def test_cli_appearance_flag(track, tmp_path):
    maps_dir = tmp_path / "maps"
    synthetic_maps(model_name="builtin").save(maps_dir)
    r = subprocess.run([sys.executable, "-m", "avatar3d", "export", "builtin", "-o", str(tmp_path / "b.gltf"), "--appearance", str(maps_dir),
                        "--no-normal-deltas"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "appearance PBR maps" in r.stdout
    assert (tmp_path / "b_specular.png").is_file()
    assert_valid(tmp_path / "b.gltf")


def test_an_independent_gltf_importer_reads_the_maps(track, tmp_path):
    """Open3D's glTF importer (assimp) finds the base colour, normal and roughness textures of the GLB."""
    o3d = pytest.importorskip("open3d")
    out = export(track, "glb", tmp_path / "o.glb", model=toy_model())
    model = o3d.io.read_triangle_model(str(out))
    mat = model.materials[model.meshes[0].material_idx]
    assert mat.albedo_img is not None and mat.normal_img is not None and mat.roughness_img is not None
    rough = np.asarray(mat.roughness_img)  # the metallicRoughness image as stored: roughness in G
    maps = AppearanceMaps.load(track / "appearance")
    np.testing.assert_allclose(rough[..., 1] / 255.0, maps.roughness, atol=1 / 255 + 1e-6)
