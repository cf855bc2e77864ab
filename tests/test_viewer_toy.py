"""The viewer's parameter handling, tested on the small synthetic head of tests/helpers/viewer_toy.py
(no rendering here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avatar3d.errors import BadInputError
from avatar3d.viewer.params import HeadParams, apply_settings, expression_group, load_param_file, parse_settings, slider_specs
from helpers.viewer_toy import toy_head


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
