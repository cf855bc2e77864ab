"""A small synthetic head (ellipsoid + a few blendshapes + 5-joint skeleton) for viewer tests,
and the viewer's parameter handling tested on it (no rendering here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from avatar3d.errors import BadInputError
from avatar3d.models.base import HeadModel, HeadModelData
from avatar3d.viewer.params import HeadParams, apply_settings, expression_group, load_param_file, parse_settings, slider_specs

JAW_REGION_Y = -0.02  # vertices below this on the front move with jawOpen
FOREHEAD_Y = 0.05


def toy_head_data(subdivisions: int = 4) -> HeadModelData:
    """An ellipsoidal 'head' (~15 x 20 x 18 cm) with jawOpen / browInnerUp / eyeBlinkLeft / mouthSmileLeft."""
    ico = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(ico.vertices) * np.array([0.075, 0.1, 0.09])
    f = np.asarray(ico.faces)
    V = len(v)
    x, y, z = v.T
    front = np.clip(z / 0.09, 0, 1)
    jaw_w = np.clip((JAW_REGION_Y - y) / 0.03, 0, 1) * front
    E = np.zeros((V, 3, 4))
    E[:, 1, 0] = -0.03 * jaw_w  # jawOpen: the lower front drops 3 cm
    E[:, 2, 0] = -0.005 * jaw_w
    E[:, 1, 1] = 0.012 * np.clip((y - 0.03) / 0.03, 0, 1) * front  # browInnerUp
    eye = np.exp(-((x - 0.03) ** 2 + (y - 0.025) ** 2) / 0.0001) * front
    E[:, 1, 2] = -0.006 * eye  # eyeBlinkLeft
    smile = np.exp(-((x - 0.025) ** 2 + (y + 0.035) ** 2) / 0.0002) * front
    E[:, 0, 3], E[:, 1, 3] = 0.006 * smile, 0.006 * smile  # mouthSmileLeft
    S = np.zeros((V, 3, 3))
    S[:, 0, 0], S[:, 1, 1], S[:, 2, 2] = 0.01 * x / 0.075, 0.01 * y / 0.1, 0.01 * z / 0.09  # width, height, depth
    joints = np.array([[0, 0, 0], [0, -0.08, -0.01], [0, -0.02, 0.0], [0.03, 0.025, 0.07], [-0.03, 0.025, 0.07]])
    # Regressor: each joint is the mean of its nearest 8 vertices' offset-compensated position.
    jr = np.zeros((5, V))
    for j, p in enumerate(joints):
        near = np.argsort(np.linalg.norm(v - p, axis=1))[:8]
        jr[j, near] = 1 / 8
    # Shift the template so regressed joints land where we want (mean of near vertices != p).
    W = np.zeros((V, 5))
    W[:, 2] = jaw_w
    W[:, 1] = 1 - jaw_w
    u = np.arctan2(x, z) / (2 * np.pi) + 0.5
    vv = (y / 0.1 + 1) / 2
    uvs = np.stack([u, vv], 1)
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32] = (200, 60, 50)  # top half of the image = top of the head (v near 1)
    tex[32:] = (60, 90, 200)
    faces_front = np.where(v[f].mean(1)[:, 2] > 0.05)[0]
    lmk_faces = faces_front[np.linspace(0, len(faces_front) - 1, 478).astype(int)]
    return HeadModelData(
        name="toy", version="1", v_template=v, faces=f, uvs=uvs, uv_faces=f.copy(), shapedirs=S, exprdirs=E,
        expression_names=["jawOpen", "browInnerUp", "eyeBlinkLeft", "mouthSmileLeft"],
        joint_names=["root", "neck", "jaw", "eye_left", "eye_right"], parents=np.array([-1, 0, 1, 1, 1]),
        j_regressor=jr, lbs_weights=W, lmk_faces=lmk_faces, lmk_bary=np.full((478, 3), 1 / 3),
        regions={"face": z > 0}, extras={"albedo": tex},
    )


def toy_head() -> HeadModel:
    return HeadModel(toy_head_data())


def test_slider_specs_group_and_cover_the_model():
    m = toy_head()
    specs = slider_specs(m)
    names = [s.name for s in specs]
    assert names[:4] == ["browInnerUp", "eyeBlinkLeft", "mouthSmileLeft", "jawOpen"]  # brows, eyes, mouth, jaw order
    assert {"jaw_pitch", "neck_yaw", "head_roll", "eye_left_yaw", "shape0", "shape2"} <= set(names)
    assert "shape3" not in names
    assert expression_group("cheekPuff") == "cheeks" and expression_group("noseSneerLeft") == "nose"
    assert expression_group("mouthFunnel") == "mouth" and expression_group("Fear") == "other"


def test_apply_settings_writes_the_right_parameters():
    m = toy_head()
    p = apply_settings(m, HeadParams.neutral(m), parse_settings(["jawOpen=0.8", "jaw_pitch=10", "shape1=2"]))
    assert p.expression[0] == pytest.approx(0.8)
    assert p.pose[2, 0] == pytest.approx(np.deg2rad(10))
    assert p.shape[1] == pytest.approx(2.0)  # unit prior std for the toy
    assert np.count_nonzero(p.pose) == 1 and np.count_nonzero(p.expression) == 1


def test_unknown_slider_lists_valid_names():
    m = toy_head()
    with pytest.raises(BadInputError) as e:
        apply_settings(m, HeadParams.neutral(m), {"jawOpn": 1.0})
    msg = str(e.value)
    assert "'jawOpn'" in msg and "jawOpen" in msg and "browInnerUp" in msg and "jaw_pitch" in msg
    with pytest.raises(BadInputError, match="NAME=NUMBER"):
        parse_settings(["jawOpen"])


def test_param_files_json_and_npz(tmp_path):
    m = toy_head()
    base = HeadParams.neutral(m)
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"browInnerUp": 0.5, "neck_yaw": -20}))
    p = load_param_file(j, m, base)
    assert p.expression[1] == pytest.approx(0.5) and p.pose[1, 1] == pytest.approx(np.deg2rad(-20))
    n = tmp_path / "p.npz"
    np.savez(n, expression=np.array([[0.3, 0, 0, 0], [1, 1, 1, 1]], np.float32))
    assert load_param_file(n, m, base).expression[0] == pytest.approx(0.3)  # first frame of a sequence
    t = tmp_path / "p.txt"
    t.write_text("x")
    with pytest.raises(BadInputError, match=".json or .npz"):
        load_param_file(t, m, base)
