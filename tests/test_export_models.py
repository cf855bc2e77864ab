"""Export of the real head models (built-in, ICT-FaceKit, FLAME-format) to GLB, validated and re-read.

Each model is skipped with a reason when it is unavailable. The heavy checks (Khronos validator,
hand-applied morph weights and glTF skinning against HeadModel.forward) live in test_export.py and tests/helpers/export_toy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d.export import export_files
from avatar3d.export.arkit import arkit_target_names
from gltf_validator import assert_valid
from helpers.export_toy import check_glb_against_model, toy_model, toy_sequence

torch.set_num_threads(1)


def _load(spec: str):
    from avatar3d.models import load_head_model

    try:
        return load_head_model(spec)
    except ImportError as e:  # the model's module is not in this build yet
        pytest.skip(f"head model {spec.split('=')[0]!r} not available: {e}")


@pytest.fixture(scope="module")
def builtin():
    return _load("builtin")


def test_builtin_glb_with_300_frame_clip_is_valid_small_and_exact(builtin, tmp_path):
    m = builtin
    assert m.joint_names[:1] == ["root"]
    seq = toy_sequence(m, n=300, fps=30.0, seed=3)
    seq.shape = (0.5 * np.random.default_rng(0).normal(size=m.num_shape)).astype(np.float32)
    files, stats = export_files(seq, "glb", tmp_path / "builtin_perf.glb", model=m)
    size = files[0].stat().st_size
    print(f"builtin GLB: {size / 1e6:.2f} MB, {stats.vertices} vertices, {stats.morph_targets} targets ({stats.sparse_targets} sparse), "
          f"{stats.joints} joints, {stats.frames} frames, dropped weight {stats.max_dropped_weight:.3g}")
    assert size < 20e6, f"built-in GLB with a 300-frame clip is {size / 1e6:.1f} MB (limit 20 MB)"
    assert_valid(files[0])
    posed = seq if m.posedirs is None and stats.max_dropped_weight == 0 else None
    if posed is None:  # glTF cannot express correctives / >4 influences: compare morphs only
        seq_check = None
    else:
        seq_check = seq
    s = check_glb_against_model(files[0], m, seq.shape.astype(np.float64), seq_check, frames=(0, 137, 299))
    print(f"builtin GLB errors vs HeadModel: {s}")
    assert stats.textured == (m.extras.get("albedo") is not None)


def test_ict_glb_has_arkit_targets_and_matches(ict_archive, tmp_path):
    m = _load(f"ict={ict_archive}")
    names = arkit_target_names(m.expression_names)
    assert {"jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "browInnerUpLeft"} <= set(names), names
    shape = 0.8 * np.random.default_rng(2).normal(size=min(m.num_shape, 20))
    seq = toy_sequence(m, n=20, fps=30.0, seed=4)
    seq.shape = np.pad(shape, (0, m.num_shape - len(shape))).astype(np.float32)
    files, stats = export_files(seq, "glb", tmp_path / "ict.glb", model=m)
    print(f"ICT GLB: {files[0].stat().st_size / 1e6:.2f} MB, {stats.vertices} vertices, {stats.sparse_targets}/{stats.morph_targets} sparse targets")
    assert stats.sparse_targets >= stats.morph_targets // 2  # ICT blendshapes are local
    assert_valid(files[0])
    posed = seq if m.posedirs is None and stats.max_dropped_weight == 0 else None
    check_glb_against_model(files[0], m, seq.shape.astype(np.float64), posed, frames=(0, 13))


def _flame_pickle(tmp_path: Path) -> Path:
    """A FLAME-format pickle (chumpy-style objects) from the project's synthetic generator."""
    try:
        from avatar3d.synthetic.flame import write_synthetic_flame
    except ImportError as e:
        pytest.skip(f"no FLAME-format pickle generator in this build: {e}")
    p = tmp_path / "generic_model.pkl"
    write_synthetic_flame(p)
    return p


def test_flame_glb_names_and_linear_expressions(tmp_path):
    pkl = _flame_pickle(tmp_path)
    m = _load(f"flame={pkl}")
    files, stats = export_files(m, "glb", tmp_path / "flame.glb", shape=np.linspace(-1, 1, 10))
    assert m.expression_names[:2] == ["exp_000", "exp_001"]
    assert any("posedirs" in n for n in stats.notes)  # correctives are reported as dropped
    assert_valid(files[0])
    # Zero pose: FLAME's correctives vanish, so the exported morphs must match exactly.
    check_glb_against_model(files[0], m, np.pad(np.linspace(-1, 1, 10), (0, m.num_shape - 10)), None)
    # FLAME's skeleton (root, neck, jaw, eyes) through glTF skinning: exact once the correctives glTF
    # cannot hold are left out of the reference too.
    m.posedirs = None
    seq = toy_sequence(m, n=8, fps=30.0, seed=6)
    files, stats = export_files(seq, "glb", tmp_path / "flame_perf.glb", model=m)
    assert_valid(files[0])
    if stats.max_dropped_weight == 0:
        s = check_glb_against_model(files[0], m, seq.shape.astype(np.float64), seq, frames=(0, 4, 7))
        print(f"FLAME-format posed GLB vs HeadModel without correctives: {s}")


# ------------------------------------------------------------------------------------------ rendering
_RENDER = r"""
import json, sys
import numpy as np
import open3d as o3d
from PIL import Image
glb, out_png, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = o3d.visualization.rendering.OffscreenRenderer(size, size)
r.scene.set_background([1, 1, 1, 1])
r.scene.add_model("head", o3d.io.read_triangle_model(glb))
r.scene.scene.set_sun_light([-0.3, -0.4, -1.0], [1, 1, 1], 80000)
r.scene.scene.enable_sun_light(True)
views = json.loads(sys.argv[4])
imgs = []
for v in views:
    r.setup_camera(v["fov"], v["center"], v["eye"], [0, 1, 0])
    imgs.append(np.asarray(r.render_to_image()))
Image.fromarray(np.concatenate(imgs, 1)).save(out_png)
"""


def _render(glb: Path, png: Path, views: list[dict], size: int = 256) -> np.ndarray:
    try:  # a separate process: Filament's engine state must not leak into the test session
        r = subprocess.run([sys.executable, "-c", _RENDER, str(glb), str(png), str(size), json.dumps(views)], capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.skip("Open3D offscreen rendering hung for 90 s on this machine (no working Vulkan/EGL software renderer)")
    if r.returncode != 0 or not png.is_file():
        pytest.skip(f"Open3D offscreen rendering unavailable here: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
    from PIL import Image

    return np.asarray(Image.open(png).convert("RGB"))


def _project_bbox(verts: np.ndarray, eye: np.ndarray, center: np.ndarray, fov: float, size: int) -> np.ndarray:
    """Pixel (col0, row0, col1, row1) of vertices seen by a pinhole camera looking from eye at center, +Y up."""
    fwd = (center - eye) / np.linalg.norm(center - eye)
    right = np.cross(fwd, [0, 1, 0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    rel = verts - eye
    z = rel @ fwd
    f = 0.5 * size / np.tan(np.radians(fov) / 2)
    col = size / 2 + f * (rel @ right) / z
    row = size / 2 - f * (rel @ up) / z
    return np.array([col.min(), row.min(), col.max(), row.max()])


def test_render_of_exported_glb_is_upright_head(out_dir, tmp_path):
    """Front and right-side views of the exported GLB: silhouettes must sit where our model's vertices project."""
    try:
        m = _load("builtin")
    except pytest.skip.Exception:
        m = toy_model()  # still checks orientation/scale of the file; the builtin view is the one to look at
    files, _ = export_files(m, "glb", tmp_path / "head.glb", animation=False)
    verts = m.v_template.double().numpy()
    c = 0.5 * (verts.min(0) + verts.max(0))
    views = [{"fov": 30.0, "center": c.tolist(), "eye": (c + [0, 0, 0.75]).tolist()},  # camera on +Z: sees the face
             {"fov": 30.0, "center": c.tolist(), "eye": (c + [0.75, 0, 0]).tolist()}]  # camera on +X: subject's left side
    size = 256
    png = out_dir / f"export_{m.name}_front_side.png"
    img = _render(files[0], png, views, size)
    print(f"render of the exported GLB: {png}")
    for k, v in enumerate(views):
        view = img[:, k * size : (k + 1) * size].astype(int)
        mask = np.abs(view - view[2, 2]).max(-1) > 12  # background = the (tone-mapped) corner colour
        rows, cols = np.nonzero(mask)
        assert len(rows) > 0.05 * size * size, "the head is missing from the render"
        got = np.array([cols.min(), rows.min(), cols.max(), rows.max()])
        want = _project_bbox(verts, np.array(v["eye"]), np.array(v["center"]), v["fov"], size)
        # Upside-down, mirrored or turned heads (or wrong units) move these edges by far more than 4 px.
        assert np.abs(got - want).max() < 4, (k, got, want)


def test_cli_exports_a_tracking_directory(builtin, tmp_path):
    """``avatar3d export DIR`` end to end: the model named in params.npz, GLB inferred from --out, OBJ of one frame."""
    m = builtin
    seq = toy_sequence(m, n=6, fps=25.0, seed=5)
    seq.model = "builtin"
    seq.save(tmp_path / "track")

    def cli(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "avatar3d", "export", str(tmp_path / "track"), *a], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parent.parent)

    r = cli("--out", str(tmp_path / "perf.glb"))
    assert r.returncode == 0, r.stderr
    assert "animation 6 frames / 0.24 s" in r.stdout and "52 morph targets" in r.stdout, r.stdout  # the 52 ARKit names
    assert_valid(tmp_path / "perf.glb")
    r = cli("--format", "obj", "--frame", "3", "--out", str(tmp_path / "f3.obj"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f3.obj").is_file() and (tmp_path / "f3.mtl").is_file()
    assert ("map_Kd f3_albedo.png" in (tmp_path / "f3.mtl").read_text()) == (m.extras.get("albedo") is not None)
