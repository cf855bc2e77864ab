"""Export to GLB/glTF/OBJ on a small synthetic head model (always runs; real models: test_export_models.py).

The helpers (``toy_model``, ``toy_sequence``, ``Gltf``, ``gltf_morphed``, ``gltf_skinned``, in
tests/helpers/export_toy.py) re-implement glTF semantics independently of the exporter, so the checks
compare the file as a game engine would read it against :class:`HeadModel`'s own forward pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.errors import BadInputError, MissingFileError
from avatar3d.export import export, export_files
from avatar3d.export.arkit import arkit_target_names
from avatar3d.export.mesh import axis_angle_to_quat, quat_to_matrix, split_seams, top4_weights
from avatar3d.models import HeadModel
from gltf_validator import assert_valid
from helpers.export_toy import Gltf, check_glb_against_model, gltf_morphed, gltf_skinned, model_vertices, target_weights, toy_model, toy_sequence

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ fixtures
# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def toy() -> HeadModel:
    return toy_model()


def test_seam_split_and_top4_weights(toy):
    s = split_seams(toy.faces.numpy(), toy.uv_faces.numpy(), toy.uvs.numpy())
    assert len(np.unique(s.src)) == toy.num_vertices and len(s.src) > toy.num_vertices  # seam vertices duplicated
    # Every corner keeps its own UV and 3D vertex (so no triangle is stretched across a seam), and the
    # split is minimal: one exported vertex per distinct (vertex, uv) pair.
    np.testing.assert_array_equal(s.uvs[s.faces], toy.uvs.numpy()[toy.uv_faces.numpy()])
    np.testing.assert_array_equal(s.src[s.faces], toy.faces.numpy())
    pairs = np.stack([toy.faces.numpy().ravel(), toy.uv_faces.numpy().ravel()], 1)
    assert len(s.src) == len(np.unique(pairs, axis=0))
    w = np.array([[0.4, 0.3, 0.15, 0.1, 0.05], [1, 0, 0, 0, 0]])
    j, ww, dropped = top4_weights(w)
    assert j.tolist() == [[0, 1, 2, 3], [0, 0, 0, 0]] and abs(dropped - 0.05) < 1e-12
    np.testing.assert_allclose(ww.sum(1), 1, atol=1e-7)
    np.testing.assert_allclose(ww[0], np.array([0.4, 0.3, 0.15, 0.1]) / 0.95, atol=1e-6)
    q = axis_angle_to_quat(np.array([[0, 0, np.pi / 2], [0, 0, 0]]))
    np.testing.assert_allclose(quat_to_matrix(q[0]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(q[1], [0, 0, 0, 1])
    assert arkit_target_names(["eyeBlink_L", "mouthSmile_R", "jawOpen", "exp_000"]) == ["eyeBlinkLeft", "mouthSmileRight", "jawOpen", "exp_000"]


def test_glb_with_performance_matches_head_model(toy, tmp_path):
    seq = toy_sequence(toy, n=12, fps=25.0)
    seq.save(tmp_path / "track")
    files, stats = export_files(tmp_path / "track", "glb", tmp_path / "perf.glb", model=toy)
    assert files == [tmp_path / "perf.glb"]
    assert_valid(files[0])
    s = check_glb_against_model(files[0], toy, seq.shape.astype(np.float64), seq, frames=(0, 5, 11))
    print(f"toy GLB: {s['size']} bytes, morph err {s['morph_err']:.2e} m, posed err {s['posed_err']:.2e} m")
    assert stats.frames == 12 and stats.textured and stats.joints == 5
    # jawOpen and browInnerUp move few vertices (sparse accessors), cheekPuff moves all (dense).
    g = Gltf(files[0])
    names = g.json["meshes"][0]["extras"]["targetNames"]
    targets = g.json["meshes"][0]["primitives"][0]["targets"]
    stored = {n: g.json["accessors"][targets[names.index(n)]["POSITION"]] for n in ("jawOpen", "browInnerUp", "cheekPuff")}
    assert "sparse" in stored["jawOpen"] and "sparse" in stored["browInnerUp"] and "sparse" not in stored["cheekPuff"]
    assert stats.target_kinds == {"model": 3, "approximated": 11, "empty": 38}  # jaw and eye joints stand in for 11 shapes
    assert stats.max_dropped_weight == 0.0


def test_gltf_with_external_files_and_untextured_material(tmp_path):
    model = toy_model(albedo=False)
    out = export(model, "gltf", tmp_path / "head.gltf", shape=[0.2, -0.1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.bin", "head.gltf"]
    assert_valid(out)
    g = Gltf(out)
    mat = g.json["materials"][0]["pbrMetallicRoughness"]
    assert "baseColorTexture" not in mat and mat["baseColorFactor"][0] > mat["baseColorFactor"][2]  # warm skin tone
    assert "animations" not in g.json
    shape = np.array([0.2, -0.1, 0, 0])
    split = split_seams(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy())
    w = target_weights(g, list(model.expression_names), [0.3, 0.9, -0.5])
    assert np.abs(gltf_morphed(g, w) - model_vertices(model, shape, [0.3, 0.9, -0.5])[split.src]).max() < 1e-4
    # Textured .gltf: the albedo is a PNG beside it, and UVs are flipped to glTF's top-left origin.
    out2 = export(toy_model(), "gltf", tmp_path / "tex" / "head.gltf")
    assert (tmp_path / "tex" / "head_albedo.png").is_file()
    assert_valid(out2)
    uv = Gltf(out2).accessor(Gltf(out2).json["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    np.testing.assert_allclose(uv[:, 1], 1 - split.uvs[:, 1], atol=1e-6)


def test_obj_neutral_and_frames(toy, tmp_path):
    import trimesh

    seq = toy_sequence(toy, n=4)
    out = export(seq, "obj", tmp_path / "neutral.obj", model=toy)
    mtl = (tmp_path / "neutral.mtl").read_text()
    assert "map_Kd neutral_albedo.png" in mtl and (tmp_path / "neutral_albedo.png").is_file()
    tm = trimesh.load(str(out), process=False, maintain_order=True)
    assert len(tm.faces) == len(toy.faces)
    ref = model_vertices(toy, seq.shape)
    # trimesh splits OBJ vertices at UV seams; compare each face corner's position instead.
    np.testing.assert_allclose(np.asarray(tm.vertices)[tm.faces], ref[toy.faces.numpy()], atol=1e-6)
    files, _ = export_files(seq, "obj", tmp_path / "f" / "perf.obj", model=toy, all_frames=True)
    objs = sorted(p.name for p in files if p.suffix == ".obj")
    assert objs == [f"perf_{i:06d}.obj" for i in range(4)]
    tm2 = trimesh.load(str(tmp_path / "f" / "perf_000002.obj"), process=False, maintain_order=True)
    ref2 = model_vertices(toy, seq.shape, seq.expression[2], seq.pose[2], seq.transl[2])
    np.testing.assert_allclose(np.asarray(tm2.vertices)[tm2.faces], ref2[toy.faces.numpy()], atol=1e-6)
    with pytest.raises(ValueError, match="outside the tracked sequence"):
        export(seq, "obj", tmp_path / "x.obj", model=toy, frame=7)


def test_bad_inputs_are_one_clear_error_and_leave_no_files(toy, tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'fbx'; expected one of: glb, gltf, obj"):
        export(toy, "fbx", tmp_path / "a.fbx")
    (tmp_path / "notrack").mkdir()
    with pytest.raises(BadInputError, match="is not a tracking or avatar output directory"):
        export(tmp_path / "notrack", "glb", tmp_path / "a.glb")
    with pytest.raises(BadInputError, match="unknown export source"):
        export(str(tmp_path / "nothing_here"), "glb", tmp_path / "a.glb")
    with pytest.raises(MissingFileError, match="missing.png not found"):
        export(toy, "glb", tmp_path / "a.glb", texture=tmp_path / "missing.png")
    with pytest.raises(ValueError, match="should end in .glb"):
        export(toy, "glb", tmp_path / "a.gltf")
    with pytest.raises(BadInputError, match="identity has 9 coefficients but the model has only 4"):
        export(toy, "glb", tmp_path / "a.glb", shape=np.ones(9))
    with pytest.raises(BadInputError, match="expected a .npy file or comma-separated numbers"):
        export(toy, "glb", tmp_path / "a.glb", shape="0.1,abc")
    np.save(tmp_path / "id.npy", np.array([0.3, -0.2]))
    g = Gltf(export(toy, "glb", tmp_path / "id.glb", shape=str(tmp_path / "id.npy")))
    pos = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    split = split_seams(toy.faces.numpy(), toy.uv_faces.numpy(), toy.uvs.numpy())
    assert np.abs(pos - model_vertices(toy, [0.3, -0.2, 0, 0])[split.src]).max() < 1e-6  # identity from a .npy file
    (tmp_path / "id.glb").unlink()
    (tmp_path / "id.npy").unlink()
    bad = toy_sequence(toy, n=3)
    bad.pose = bad.pose[:, :3]
    with pytest.raises(BadInputError, match="needs \\(N, 5, 3\\)"):
        export(bad, "glb", tmp_path / "a.glb", model=toy)
    # A failure while writing the second file (.bin blocked by a directory) leaves neither file nor temporaries.
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "head.bin").mkdir()
    with pytest.raises(OSError):
        export(toy, "gltf", tmp_path / "w" / "head.gltf")
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["head.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notrack", "w"]


def test_cli_bad_input_is_one_sentence(tmp_path):
    (tmp_path / "d").mkdir()
    r = subprocess.run([sys.executable, "-m", "avatar3d", "export", str(tmp_path / "d"), "--format", "glb", "--out", str(tmp_path / "x.glb")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "not a tracking or avatar output directory" in r.stderr
    assert not (tmp_path / "x.glb").exists()


def test_atomic_write_rolls_back_when_a_later_file_fails(tmp_path, monkeypatch):
    from avatar3d.data.atomic import write_all

    (tmp_path / "a.txt").write_text("old")

    def boom(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_all({tmp_path / "a.txt": b"new", tmp_path / "b.txt": boom})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"
    # A failure during the renames themselves also rolls back, restoring what was there before.
    real_replace = os.replace

    def flaky_replace(src, dst):
        if Path(dst).name == "b.txt":
            raise PermissionError("denied")
        return real_replace(src, dst)

    import avatar3d.data.atomic as atomic

    monkeypatch.setattr(atomic.os, "replace", flaky_replace)
    with pytest.raises(PermissionError):
        write_all({tmp_path / "a.txt": b"new", tmp_path / "b.txt": b"x"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old"


def test_normal_and_roughness_maps_go_through_the_same_material(tmp_path):
    from PIL import Image

    model = toy_model()
    nm = np.zeros((32, 32, 3), np.uint8)
    nm[...] = (128, 128, 255)  # flat tangent-space normal
    rough = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    model.extras.update(normal_map=nm, roughness_map=rough)
    out = export(model, "gltf", tmp_path / "m.gltf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.gltf", "m_albedo.png", "m_normal.png", "m_roughness.png"]
    assert_valid(out)
    g = Gltf(out)
    mat = g.json["materials"][0]
    tan = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["TANGENT"])
    nrm = g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["NORMAL"])
    np.testing.assert_allclose(np.linalg.norm(tan[:, :3], axis=1), 1, atol=1e-5)
    assert np.abs((tan[:, :3] * nrm).sum(1)).max() < 1e-5 and set(np.unique(tan[:, 3])) <= {-1.0, 1.0}
    # On the toy's spherical UVs +u runs around the head: at the front (+Z) the tangent points along +X.
    front = np.argmax(g.accessor(g.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])[:, 2])
    assert tan[front, 0] > 0.9, tan[front]
    assert "normalTexture" in mat and "metallicRoughnessTexture" in mat["pbrMetallicRoughness"]
    mr = np.asarray(Image.open(tmp_path / "m_roughness.png"))
    np.testing.assert_array_equal(mr[..., 1], rough)  # glTF: roughness in G, metalness (0) in B
    assert mr[..., 2].max() == 0
    glb = export(model, "glb", tmp_path / "m.glb")
    assert_valid(glb)
    assert len(Gltf(glb).json["images"]) == 3 and all("bufferView" in im for im in Gltf(glb).json["images"])
    model.extras["roughness_map"] = np.zeros((4, 4), np.float32)
    with pytest.raises(BadInputError, match="roughness map must be \\(H, W\\) uint8"):
        export(model, "glb", tmp_path / "bad.glb")
    assert not (tmp_path / "bad.glb").exists()


def test_minimal_model_without_blendshapes_or_skeleton_exports(tmp_path):
    model = toy_model(albedo=False, rigged=False)
    seq = toy_sequence(model, n=3)
    files, stats = export_files(seq, "glb", tmp_path / "min.glb", model=model)
    assert_valid(files[0])
    g = Gltf(files[0])
    assert stats.morph_targets == 0 and "targets" not in g.json["meshes"][0]["primitives"][0] and len(g.json["skins"][0]["joints"]) == 1
    paths = sorted(c["target"]["path"] for c in g.json["animations"][0]["channels"])
    assert paths == ["rotation", "translation"]  # head transform only
    ref = model_vertices(model, seq.shape, None, seq.pose[2], seq.transl[2])
    split = split_seams(model.faces.numpy(), model.uv_faces.numpy(), model.uvs.numpy())
    assert np.abs(gltf_skinned(g, 2) - ref[split.src]).max() < 1e-5
