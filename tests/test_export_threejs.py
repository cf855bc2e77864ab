"""The exported performance in a real client: three.js's GLTFLoader + AnimationMixer in headless Chromium.

One GLB of the built-in head with a tracked-style clip is loaded by a page beside it (tests/helpers/threejs_page.py);
the page plays the clip and reports morph influences by ``morphTargetDictionary`` name and bone transforms at
key times and between keys, and renders the head with WebGL (SwiftShader). The checks compare those numbers
with the clip's tracked coefficients, as a game developer's engine would read them.
"""

from __future__ import annotations

import numpy as np
import pytest

from avatar3d._tensor import torch_threads
from avatar3d.data.sequence import TrackedSequence
from avatar3d.export import export_files
from avatar3d.export.arkit import ARKIT_NAMES
from avatar3d.export.mesh import axis_angle_to_quat
from helpers.browser import THREE_DIR, dump_dom, require_chromium, result_json, screenshot
from helpers.export_toy import model_vertices, toy_sequence
from helpers.threejs_page import write_page

FPS = 10.0
KEYS = (0, 3, 7)  #: frames sampled at their key time
BETWEEN = 4  #: also sampled half-way between this frame and the next


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """(model, sequence, the page's JSON result, screenshot path) for one exported built-in head performance."""
    require_chromium()
    if not (THREE_DIR / "build" / "three.module.js").is_file():
        pytest.fail(f"three.js is missing at {THREE_DIR} (bash scripts/run.sh setup installs it)")
    from avatar3d.models import load_head_model

    with torch_threads(1):
        model = load_head_model("builtin")
        seq: TrackedSequence = toy_sequence(model, n=10, fps=FPS, seed=7)
        seq.pose = (seq.pose / 3).astype(np.float32)  # a calmer head so the still reads as a face
        d = tmp_path_factory.mktemp("threejs")
        glb = export_files(seq, "glb", d / "head.glb", model=model)[0][0]
    times = [f / FPS for f in KEYS] + [(BETWEEN + 0.5) / FPS]
    page = write_page(glb, times, render_time=0.0, eye=(0.0, 0.02, 0.6))
    result = result_json(dump_dom(page, budget_ms=30000))
    assert "error" not in result, result.get("error")
    shot = screenshot(page, d / "head.png", width=320, height=320, budget_ms=30000)
    return model, seq, result, shot


def test_three_js_finds_the_52_arkit_names_on_every_primitive(played):
    model, _, result, _ = played
    assert result["clips"] == [{"name": "performance", "duration": pytest.approx(10 / FPS)}]
    materials = [m["material"] for m in result["meshes"]]
    assert materials[0] == "skin" and {"eyes", "teeth", "mouth"} <= set(materials), materials
    for mesh in result["meshes"]:
        assert mesh["skinned"] and mesh["targets"][:52] == list(ARKIT_NAMES), mesh["name"]


def test_the_clip_plays_the_tracked_coefficients(played):
    model, seq, result, _ = played
    names = list(model.expression_names)
    samples = result["samples"]
    for f, s in zip(KEYS, samples):
        assert s["primitives_agree"]  # every primitive (skin, eyes, teeth, mouth) gets the same weights
        got = np.array([s["influences"][n] for n in names])
        np.testing.assert_allclose(got, seq.expression[f], atol=1e-5, err_msg=f"frame {f}")
        assert s["influences"]["tongueOut"] == 0.0
    mid = samples[len(KEYS)]
    want = 0.5 * (seq.expression[BETWEEN] + seq.expression[BETWEEN + 1])  # LINEAR interpolation half-way
    np.testing.assert_allclose([mid["influences"][n] for n in names], want, atol=1e-5)


def test_bones_follow_the_tracked_pose(played):
    model, seq, result, _ = played
    v_shaped = model_vertices(model, seq.shape)
    joints = model.j_regressor.double().numpy() @ v_shaped  # (J, 3) rest joints of the tracked identity
    for f, s in zip(KEYS, result["samples"]):
        bones = {b["name"]: b for b in s["bones"]}
        assert list(bones) == list(model.joint_names)
        for j, name in enumerate(model.joint_names):
            q, want = np.array(bones[name]["q"]), axis_angle_to_quat(seq.pose[f, j].astype(np.float64))
            assert min(np.abs(q - want).max(), np.abs(q + want).max()) < 1e-5, (f, name, q, want)
        np.testing.assert_allclose(bones["root"]["p"], joints[0] + seq.transl[f], atol=1e-5)
        parent = model.parents.numpy()
        for j in range(1, model.num_joints):
            np.testing.assert_allclose(bones[model.joint_names[j]]["p"], joints[j] - joints[parent[j]], atol=1e-5)


def test_webgl_draws_the_head(played):
    from PIL import Image

    _, _, result, shot = played
    if not result.get("webgl"):
        pytest.skip("WebGL is unavailable in this headless Chromium (no SwiftShader)")
    assert 0.1 < result["drawn_fraction"] < 0.9, result["drawn_fraction"]  # a head, neither nothing nor a wall
    cover = result["coverage"]  # image fraction per material in a flat-colour id pass
    assert cover["skin"] > 0.1 and cover["eyes"] > 5e-4, cover  # the eyes show through the lids
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    drawn = (img < 245).any(-1)
    assert 0.1 < drawn.mean() < 0.9, drawn.mean()
    assert img[drawn].std(0).max() > 15  # shaded and textured, not one flat colour
