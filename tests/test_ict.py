"""ICT-FaceKit Light loader, OBJ reader and the ``avatar3d models`` command."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.errors import MissingFileError
from avatar3d.models import ict as ict_mod
from avatar3d.models.obj_io import parse_obj, parse_obj_vertices, read_obj_vertices

# ----------------------------------------------------------------------------- OBJ reader (no data)
OBJ = b"""# test
mtllib x.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 2 0 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
vt 0.5 0.5
vn 0 0 1
usemtl A
f 1/1/1 2/2/1 3/3/1 4/4/1
usemtl B
f 2/5 5/2 3/3
f -4 -3 -1
"""


def test_obj_reader_triangulates_quads_consistently():
    m = parse_obj(OBJ)
    assert m.vertices.shape == (5, 3) and m.uvs.shape == (5, 2)
    assert m.poly_sizes.tolist() == [4, 3, 3]
    assert m.materials == ["A", "B"] and m.poly_material.tolist() == [0, 1, 1]
    f, ft, poly = m.triangles()
    # the quad splits along its first-to-third-corner diagonal, identically for uvs
    assert f.tolist() == [[0, 1, 2], [0, 2, 3], [1, 4, 2], [1, 2, 4]]
    assert ft[:3].tolist() == [[0, 1, 2], [0, 2, 3], [4, 1, 2]]
    assert ft[3].tolist() == [-1, -1, -1]  # no uv given for the last face
    assert poly.tolist() == [0, 0, 1, 2]
    assert np.allclose(parse_obj_vertices(OBJ), m.vertices)


def test_obj_reader_rejects_bad_files(tmp_path):
    with pytest.raises(MissingFileError, match="nope.obj"):
        read_obj_vertices(tmp_path / "nope.obj")
    with pytest.raises(ValueError, match="outside"):
        parse_obj(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    with pytest.raises(ValueError, match="no faces"):
        parse_obj(b"v 0 0 0\n")


def test_missing_ict_names_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AVATAR3D_ICT", raising=False)
    monkeypatch.setattr(ict_mod, "install_dir", lambda: tmp_path / "none")
    with pytest.raises(MissingFileError) as e:
        ict_mod.load_ict()
    msg = str(e.value)
    assert "generic_neutral_mesh.obj" in msg and "https://github.com/ICT-VGL/ICT-FaceKit" in msg
    assert "avatar3d models download ict" in msg
    assert ict_mod.status()[0] is False
    with pytest.raises(MissingFileError, match="FaceXModel"):
        ict_mod.load_ict(tmp_path)  # an empty folder


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="session")
def ict_dir(ict_session) -> Path:
    return ict_session["dir"]


@pytest.fixture(scope="session")
def ict_cache(ict_session) -> Path:
    return ict_session["cache"]


@pytest.fixture(scope="session")
def ict_first_load(ict_session):
    return ict_session["data"], ict_session["first_load_s"]


@pytest.fixture(scope="session")
def ict_model(ict_session):
    return ict_session["model"]


def test_ict_data_layout_units_axes(ict_first_load, ict_dir):
    data, _ = ict_first_load
    V = 26719
    assert data.v_template.shape == (V, 3) and data.shapedirs.shape == (V, 3, 100) and data.exprdirs.shape == (V, 3, 53)
    assert len(data.faces) == 52220  # 25,836 quads -> 2 triangles + 548 triangles
    assert {"eyeBlink_L", "jawOpen", "mouthSmile_R", "browInnerUp_L"} <= set(data.expression_names)
    v = data.v_template
    # metres: the bust is ~34 cm tall; face looks towards +Z (nose tip is the front-most face point)
    assert 0.3 < np.ptp(v[:, 1]) < 0.4
    face = v[:9409]
    assert face[np.argmax(face[:, 2]), 0] == pytest.approx(0, abs=0.005)  # front-most face point on the midline
    assert v[ict_mod.ICT_LMK68_VERTICES[30], 2] > v[ict_mod.ICT_LMK68_VERTICES[36], 2]  # nose tip in front of eyes
    assert v[ict_mod.ICT_LMK68_VERTICES[19], 1] > v[ict_mod.ICT_LMK68_VERTICES[57], 1]  # brows above the mouth (+Y up)
    # identity mode 7 and an expression match the OBJ files exactly (mode = mesh - neutral, in metres)
    neutral = read_obj_vertices(ict_dir / "FaceXModel/generic_neutral_mesh.obj")
    ident = read_obj_vertices(ict_dir / "FaceXModel/identity007.obj")
    np.testing.assert_allclose(data.shapedirs[:, :, 7], (ident - neutral) * 0.01, atol=1e-6)
    k = data.expression_names.index("jawOpen")
    jaw = read_obj_vertices(ict_dir / "FaceXModel/jawOpen.obj")
    np.testing.assert_allclose(data.exprdirs[:, :, k], (jaw - neutral) * 0.01, atol=1e-6)
    # modes are ordered by variance and sized ~1 std: RMS from a few mm down to sub-mm
    rms = np.sqrt((data.shapedirs**2).sum(1).mean(0))
    assert 0.001 < rms[0] < 0.01 and rms[-1] < rms[0] / 10
    for r in ("face", "scalp", "eyes", "mouth_interior", "neck_boundary"):
        assert data.regions[r].any()
    assert v[data.regions["neck_boundary"], 1].max() < v[ict_mod.ICT_LMK68_VERTICES[8], 1] - 0.05  # below the chin


def test_ict_skeleton_and_eye_gaze(ict_model):
    m = ict_model
    assert m.joint_names == ["root", "eye_left", "eye_right"]
    out = m()
    j = out.joints[0]
    assert j[1, 0] > 0.02 and j[2, 0] < -0.02  # eye_left is the subject's left (+X)
    assert torch.allclose(j[1], j[2] * torch.tensor([-1.0, 1, 1]), atol=1e-4)  # symmetric
    assert j[0, 2] < j[1, 2] - 0.05  # root behind the eyes
    # eyes rotate rigidly about their joints; the skin does not move
    gaze = torch.tensor([[0.0, 0.3, 0.0, 0.0, 0.3, 0.0]])
    posed = m(eye_pose=gaze).vertices[0]
    eye = m.region("eye_left")
    d0 = (out.vertices[0, eye] - j[1]).norm(dim=1)
    d1 = (posed[eye] - j[1]).norm(dim=1)
    assert torch.allclose(d0, d1, atol=1e-5)
    assert (posed[eye] - out.vertices[0, eye]).norm(dim=1).max() > 0.003
    assert torch.equal(posed[m.region("face")], out.vertices[0, m.region("face")])


def test_ict_cached_reload_is_fast_and_identical(ict_dir, ict_first_load):
    first, t_first = ict_first_load
    t = time.perf_counter()
    again = ict_mod.read_ict_data(ict_dir)
    dt = time.perf_counter() - t
    print(f"ICT first load {t_first:.2f} s (parse + landmark embedding), cached reload {dt:.3f} s")
    assert dt < 5.0  # the < 1 s target is measured in benchmarks/bench_ict_load.py
    for k in ("v_template", "faces", "uvs", "uv_faces", "shapedirs", "exprdirs", "j_regressor", "lbs_weights", "lmk_faces", "lmk_bary", "lmk68_faces"):
        np.testing.assert_array_equal(getattr(first, k), getattr(again, k), err_msg=k)
    assert first.expression_names == again.expression_names


def test_ict_loads_directly_from_archive(ict_archive, ict_first_load):
    folder, _ = ict_first_load
    data = ict_mod.read_ict_data(ict_archive, landmarks=False, use_cache=False)
    np.testing.assert_array_equal(data.v_template, folder.v_template)
    np.testing.assert_array_equal(data.shapedirs, folder.shapedirs)
    np.testing.assert_array_equal(data.faces, folder.faces)


def test_lmk68_are_the_documented_vertices(ict_model):
    out = ict_model(shape=torch.randn(1, 100), expression=ict_model.expression_vector({"jawOpen": 0.7}))
    np.testing.assert_allclose(out.landmarks68[0].numpy(), out.vertices[0, ict_mod.ICT_LMK68_VERTICES].numpy(), atol=1e-6)


def _enclosed_background(img_tri: np.ndarray) -> int:
    """Background pixels not connected to the image border: holes in the silhouette."""
    import cv2

    bg = (img_tri < 0).astype(np.uint8)
    n, lab = cv2.connectedComponents(bg, connectivity=4)
    border = set(np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))) - {0}
    return int(sum((lab == k).sum() for k in range(1, n) if k not in border))


@pytest.mark.parametrize(
    "shape_std, expr",
    [(0.0, {}), (2.0, {}), (-2.0, {"jawOpen": 1.0}), (1.0, {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "eyeBlink_L": 1.0, "eyeBlink_R": 1.0})],
)
def test_ict_head_renders_without_holes(ict_model, ict_first_load, shape_std, expr, out_dir):
    from PIL import Image

    from avatar3d.models.embedding import frame_view, render_view

    data, _ = ict_first_load
    m = ict_model
    b = torch.zeros(1, m.num_shape)
    b[0, :3] = shape_std
    with torch.no_grad():
        v = m(shape=b, expression=m.expression_vector(expr)).vertices[0].double().numpy()
    assert np.isfinite(v).all()
    fm = ict_mod.render_face_mask(data)
    for yaw in (0.0, 35.0, 90.0):
        r = render_view(v, data.faces, frame_view(v[data.faces[fm]].reshape(-1, 3), yaw=yaw, size=160), vertex_colors=ict_mod.region_colors(data), face_mask=fm)
        assert _enclosed_background(r["tri"]) == 0, f"hole in the render at yaw {yaw}"
        assert (r["tri"] >= 0).mean() > 0.2
    Image.fromarray(r["image"]).save(out_dir / f"ict_{shape_std:+.0f}_{'_'.join(expr) or 'neutral'}.png")


# ----------------------------------------------------------------------------- CLI
def test_models_command_list_install_and_offline(ict_dir, ict_cache, ict_first_load, tmp_path, monkeypatch, capsys):
    from avatar3d.cli import main

    monkeypatch.delenv("AVATAR3D_ICT", raising=False)
    target = tmp_path / "install" / "ict"
    monkeypatch.setattr(ict_mod, "install_dir", lambda: target)
    assert main(["models", "list"]) == 0
    assert "ict" in capsys.readouterr().out
    # offline (unreachable URL): one sentence naming where to get it and --from
    assert main(["models", "download", "ict", "--from", "http://127.0.0.1:9/ICT.zip"]) == 2
    err = capsys.readouterr().err
    assert "github.com/ICT-VGL/ICT-FaceKit" in err and "--from" in err and "Traceback" not in err
    assert main(["models", "download", "ict", "--from", str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip" in capsys.readouterr().err
    # install from a zip laid out like GitHub's repository download, then it is found without a path
    zpath = tmp_path / "ICT-FaceKit-master.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as z:  # stored: quick to write
        z.write(ict_dir / "LICENSE", "ICT-FaceKit-master/LICENSE")
        for f in sorted((ict_dir / "FaceXModel").iterdir()):
            z.write(f, f"ICT-FaceKit-master/FaceXModel/{f.name}")
    assert main(["models", "download", "ict", "--from", str(zpath)]) == 0
    assert (target / "FaceXModel" / "generic_neutral_mesh.obj").is_file()
    assert "MIT" in (target / "LICENSE").read_text() or "Permission" in (target / "LICENSE").read_text()
    assert ict_mod.status()[0] is True
    main(["models", "list"])
    assert str(target) in capsys.readouterr().out
    from avatar3d.models import load_head_model

    m = load_head_model("ict")
    assert m.num_expression == 53 and m.has_landmarks
    np.testing.assert_array_equal(m.v_template.numpy(), ict_first_load[0].v_template)
