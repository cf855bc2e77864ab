"""``avatar3d appearance TRACK_DIR``: the run directory (lock, manifest, up to date), the written maps, and bad input.

The tracking directory is made in a second, without tracking: the built-in head rendered by our own
rasterizer at 96x96 in 6 frames turning +-30 degrees, with its true parameters and alpha masks. The maps'
quality is scored elsewhere (tests/test_appearance_fusion.py, against the path tracer); here what counts
is what a user sees: files, messages, exit codes, and that nothing is half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar3d.appearance.estimate import AppearanceOptions
from avatar3d.appearance.maps import MAP_FILES, AppearanceMaps
from avatar3d.appearance.pipeline import STAGE, run_appearance
from avatar3d.cli import main
from avatar3d.data.rundir import RunDirectory
from avatar3d.data.sequence import TrackedSequence

RES = 256
REPO = Path(__file__).resolve().parent.parent
FILES = sorted([f for f, *_ in MAP_FILES.values()] + ["environment.hdr", "lighting.npz", "material.json"])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Path:
    """A small tracking directory: 6 frames at 96x96 of the built-in head under a key light, true parameters."""
    import cv2
    import torch

    from avatar3d.models import load_head_model
    from avatar3d.render.camera import raster_intrinsics
    from avatar3d.render.camera_builders import centred_K, front_camera, phone_focal
    from avatar3d.render.preview import render_mesh
    from avatar3d.synthetic.video import directional_sh

    model = load_head_model("builtin")
    out = tmp_path_factory.mktemp("tracked")
    (out / "images").mkdir()
    (out / "masks").mkdir()
    n, size = 6, 96
    pose = np.zeros((n, model.num_joints, 3), np.float32)
    pose[:, 0, 1] = np.deg2rad(np.linspace(-30, 30, n))
    shape, expr, transl = np.zeros(model.num_shape, np.float32), np.zeros((n, model.num_expression), np.float32), np.zeros((n, 3), np.float32)
    K, w2c = centred_K(phone_focal(size, size) * 1.6, size, size), front_camera(0.35)
    sh = directional_sh([((-0.5, -0.6, -0.65), (0.8, 0.75, 0.7))], (0.35, 0.35, 0.37))
    with torch.no_grad():
        verts = model(torch.as_tensor(shape)[None].expand(n, -1), torch.as_tensor(expr), torch.as_tensor(pose), torch.as_tensor(transl)).vertices
        tex = torch.as_tensor(model.extras["albedo"], dtype=torch.float32) / 255
        for i in range(n):
            img, alpha = render_mesh(verts[i], model.faces, torch.as_tensor(raster_intrinsics(K), dtype=torch.float32),
                                     torch.as_tensor(w2c, dtype=torch.float32), size, size, uvs=model.uvs, uv_faces=model.uv_faces,
                                     texture_image=tex, sh=sh, background=0.0, return_alpha=True)
            cv2.imwrite(str(out / "images" / f"{i:06d}.png"), np.round(img[0].numpy()[..., ::-1].clip(0, 1) * 255).astype(np.uint8))
            cv2.imwrite(str(out / "masks" / f"{i:06d}.png"), np.round(alpha[0, ..., 0].numpy() * 255).astype(np.uint8))
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    TrackedSequence(model="builtin", model_version=str(model.version), fps=30.0, shape=shape, expression=expr, pose=pose, transl=transl,
                    K=f32(np.repeat(K[None], n, 0)), world_to_cam=f32(np.repeat(w2c[None], n, 0)), width=size, height=size,
                    valid=np.ones(n, bool), frame_names=[f"{i:06d}" for i in range(n)]).save(out)
    return out


@pytest.fixture
def track_dir(tracked, tmp_path) -> Path:
    """A copy of the tracking directory the test may change."""
    return Path(shutil.copytree(tracked, tmp_path / "track"))


@pytest.fixture
def fake_estimate(monkeypatch) -> list[int]:
    """The estimator replaced by priors made in no time (the run directory's logic does not need real maps): it reads
    every frame as the real one does (a corrupt frame fails), and lists the resolution of each call."""
    from avatar3d.appearance import pipeline

    calls: list[int] = []

    def estimate(frames, model=None, options=AppearanceOptions(), progress=None):
        for i in range(len(frames)):
            frames.image(i), frames.mask(i)
        R = options.resolution
        calls.append(R)
        return AppearanceMaps.priors(albedo=np.full((R, R, 3), 0.5, np.float32), coverage=np.ones((R, R), np.float32),
                                     sh=np.zeros((9, 3), np.float32), model=frames.sequence.model,
                                     frame_names=[frames.name(i) for i in range(len(frames))])

    monkeypatch.setattr(pipeline, "estimate_appearance", estimate)
    return calls


def appearance(*args: str, capsys) -> tuple[int, str, str]:
    """``avatar3d appearance ARGS --quiet`` in this process: exit code, stdout, stderr."""
    rc = main(["appearance", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def error_line(rc: int, err: str) -> str:
    """The one error sentence; fails on a traceback, another exit code or several lines."""
    assert rc == 2, (rc, err)
    assert "Traceback" not in err and "Errno" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avatar3d appearance: error: "), err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name != ".lock"}


# ----------------------------------------------------------------------------- a good run
def test_writes_the_maps_then_is_up_to_date(track_dir, capsys, monkeypatch):
    written: list[AppearanceMaps] = []
    save = AppearanceMaps.save
    monkeypatch.setattr(AppearanceMaps, "save", lambda self, out: (written.append(self), save(self, out))[1])
    rc, out, _ = appearance(track_dir, "--resolution", RES, capsys=capsys)
    folder = track_dir / "appearance"
    assert rc == 0 and f"at {RES}x{RES}" in out and str(folder) in out and "6 frames" in out and "% of the UV layout observed" in out, out
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "manifest.json", ".lock"])

    # material.json names every map with its colour space, channels, bits and (displacement) scale.
    meta = json.loads((folder / "material.json").read_text())
    assert meta["resolution"] == RES and meta["model"] == "builtin"
    for name, (file, space, ch, bits) in MAP_FILES.items():
        assert meta["maps"][name] == {**meta["maps"][name], "file": file, "colour_space": space, "channels": ch, "bits": bits}
    assert meta["maps"]["albedo"]["colour_space"] == "srgb" and meta["maps"]["displacement"]["bits"] == 16
    assert {"scale_m", "offset_m"} <= set(meta["maps"]["displacement"]) and meta["maps"]["specular"]["f0_per_unit"] > 0
    assert meta["source"]["options"]["resolution"] == RES and len(meta["source"]["input"]["params_sha256"]) == 64
    assert 0.2 < meta["stats"]["observed_fraction"] < 1
    with np.load(folder / "lighting.npz") as z:
        assert z["sh"].shape == (9, 3) and int(z["bands"]) == 3 and z["exposure"].shape == (6,) and len(z["frame_names"]) == 6
    stage = RunDirectory(folder).stage(STAGE)
    assert stage["complete"] and stage["files"] == FILES and stage["settings"] == meta["source"]

    # The saved maps round-trip: what load() reads equals what was written, within 8-bit quantisation.
    (maps,) = written
    back = AppearanceMaps.load(folder)
    from avatar3d.render.color import srgb_encode

    assert np.abs(srgb_encode(back.albedo.clip(0, 1)) - srgb_encode(maps.albedo.clip(0, 1))).max() <= 0.5 / 255 + 1e-6
    for name in ("specular", "roughness", "coverage"):
        assert np.abs(getattr(back, name) - getattr(maps, name)).max() <= 0.5 / 255 + 1e-6, name
    assert np.abs(back.normal - maps.normal).max() < 2 / 255
    assert np.allclose(back.sh, maps.sh) and back.model == maps.model and back.frame_names == maps.frame_names
    assert back.source == maps.source

    # Again with the same input and settings: nothing recomputed, nothing rewritten.
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    rc, out, _ = appearance(track_dir, "--resolution", RES, capsys=capsys)
    assert rc == 0 and "is up to date" in out and len(written) == 1, out
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_a_changed_input_or_setting_recomputes(track_dir, tmp_path, fake_estimate):
    out = tmp_path / "maps"
    opts = AppearanceOptions(resolution=64)
    first = run_appearance(track_dir, out, opts, progress=False)
    assert not first.up_to_date and first.files == FILES and first.resolution == 64
    assert run_appearance(track_dir, out, opts, progress=False).up_to_date
    assert not run_appearance(track_dir, out, opts, progress=False, resume=False).up_to_date  # --restart
    assert not run_appearance(track_dir, out, AppearanceOptions(resolution=96), progress=False).up_to_date  # another setting
    assert AppearanceMaps.load(out).resolution == 96
    seq = TrackedSequence.load(track_dir)
    seq.transl = seq.transl + np.float32(1e-4)  # a re-tracked input
    seq.save(track_dir)
    old_hash = json.loads((out / "material.json").read_text())["source"]["input"]["params_sha256"]
    assert not run_appearance(track_dir, out, AppearanceOptions(resolution=96), progress=False).up_to_date
    assert json.loads((out / "material.json").read_text())["source"]["input"]["params_sha256"] != old_hash
    # A changed frame (same params) counts as a changed input too.
    (track_dir / "masks" / "000003.png").write_bytes((track_dir / "masks" / "000002.png").read_bytes())
    assert not run_appearance(track_dir, out, AppearanceOptions(resolution=96), progress=False).up_to_date
    assert fake_estimate == [64, 64, 96, 96, 96]


def test_a_missing_or_stale_output_file_is_dealt_with(track_dir, tmp_path, fake_estimate):
    """A map deleted by hand is written again; a file an earlier run wrote and this one does not is removed."""
    out = tmp_path / "maps"
    run_appearance(track_dir, out, AppearanceOptions(resolution=64), progress=False)
    (out / "roughness.png").unlink()
    assert not run_appearance(track_dir, out, AppearanceOptions(resolution=64), progress=False).up_to_date
    assert (out / "roughness.png").is_file() and fake_estimate == [64, 64]
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stages"][STAGE]["files"].append("old_map.png")  # as if an earlier version had written it
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "old_map.png").write_bytes(b"old")
    (out / "mine.txt").write_text("a user's note")
    run_appearance(track_dir, out, AppearanceOptions(resolution=64), progress=False, resume=False)
    assert not (out / "old_map.png").exists() and (out / "mine.txt").exists()
    assert RunDirectory(out).stage(STAGE)["files"] == FILES


def test_a_failed_run_leaves_the_earlier_maps_as_they_were(track_dir, tmp_path, capsys, monkeypatch, fake_estimate):
    out = tmp_path / "maps"
    run_appearance(track_dir, out, AppearanceOptions(resolution=64), progress=False)
    good = snapshot(out)
    # 1. Writing fails part-way (the disk fills up while the environment map is written).
    from avatar3d.render.lighting import EnvironmentMap

    def full_disk(self, path):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device", str(path))

    with monkeypatch.context() as m:
        m.setattr(EnvironmentMap, "write", full_disk)
        msg = error_line(*appearance(track_dir, "--out", out, "--resolution", RES, capsys=capsys)[::2])
    assert "cannot write the appearance maps" in msg and "no space left on device" in msg
    assert snapshot(out) == good and not list(out.glob(".*.tmp*"))
    # 2. The input changed and is now broken (a corrupt frame): the estimate fails, the maps stay.
    intact = (track_dir / "images" / "000002.png").read_bytes()
    (track_dir / "images" / "000002.png").write_bytes(b"not a png")
    msg = error_line(*appearance(track_dir, "--out", out, "--resolution", RES, capsys=capsys)[::2])
    assert "000002.png is not a readable image" in msg
    assert snapshot(out) == good
    # The earlier result is still complete and still the answer for its own input.
    (track_dir / "images" / "000002.png").write_bytes(intact)
    assert AppearanceMaps.load(out).resolution == 64 and RunDirectory(out).stage(STAGE)["complete"]
    assert run_appearance(track_dir, out, AppearanceOptions(resolution=64), progress=False).up_to_date


def test_a_second_run_into_the_same_folder_gets_one_sentence(track_dir, tmp_path, capsys):
    out = tmp_path / "maps"
    with RunDirectory(out):  # another run holds the folder
        msg = error_line(*appearance(track_dir, "--out", out, "--resolution", RES, capsys=capsys)[::2])
    assert f"{out} is in use by another avatar3d run" in msg and "process" in msg
    assert [p.name for p in out.iterdir()] == [".lock"]


# ----------------------------------------------------------------------------- bad input
def _drop(rel: str):
    def change(d: Path) -> None:
        p = d / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return change


def _sequence(**changes):
    def change(d: Path) -> None:
        seq = TrackedSequence.load(d)
        for k, v in changes.items():
            setattr(seq, k, v(seq) if callable(v) else v)
        seq.save(d)
    return change


BAD_INPUT = {
    "missing folder": (lambda d: shutil.rmtree(d), "does not exist"),
    "a file": (lambda d: (shutil.rmtree(d), d.write_text("x")), "is a file"),
    "no params": (_drop("params.npz"), "is not a tracking directory (it has no params.npz)"),
    "corrupt params": (lambda d: (d / "params.npz").write_bytes(b"garbage"), "params.npz is corrupt"),
    "no images folder": (_drop("images"), "has no images/ folder"),
    "no masks folder": (_drop("masks"), "has no masks/ folder"),
    "a frame without image": (_drop("images/000004.png"), "frame 4 (000004) of"),
    "a frame without mask": (_drop("masks/000001.png"), "frame 1 (000001) of"),
    "no valid frame": (_sequence(valid=lambda s: np.zeros(s.num_frames, bool)), "has no valid frame"),
    "flame file gone": (_sequence(model="flame=/nonexistent/generic_model.pkl"), "head model 'flame=/nonexistent/generic_model.pkl'"),
    "unknown model": (_sequence(model="smpl"), "head model 'smpl', which cannot be loaded here (unknown head model"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_tracking_directory_is_one_sentence_and_writes_nothing(tracked, tmp_path, case, capsys):
    change, expected = BAD_INPUT[case]
    d = Path(shutil.copytree(tracked, tmp_path / "track"))
    change(d)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    msg = error_line(*appearance(d, "--resolution", RES, capsys=capsys)[::2])
    assert expected in msg and str(d) in msg, msg
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no appearance/ folder, nothing else


def test_output_that_cannot_be_written_is_one_sentence(track_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    msg = error_line(*appearance(track_dir, "--out", tmp_path / "f" / "maps", "--resolution", RES, capsys=capsys)[::2])
    assert "cannot write the appearance maps" in msg and f"{tmp_path / 'f'} is a file, not a folder" in msg
    msg = error_line(*appearance(track_dir, "--out", tmp_path / "f", "--resolution", RES, capsys=capsys)[::2])
    assert f"{tmp_path / 'f'} is a file" in msg
    msg = error_line(*appearance(track_dir, "--out", track_dir, capsys=capsys)[::2])
    assert "cannot go into the tracking directory" in msg
    assert not (track_dir / "appearance").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["f", "track"]
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            msg = error_line(*appearance(track_dir, "--out", ro / "maps", "--resolution", RES, capsys=capsys)[::2])
            assert "cannot write the appearance maps" in msg and "permission denied" in msg.lower()
        finally:
            ro.chmod(0o755)


@pytest.mark.parametrize("value", ["300", "1k", "0", "4096"])
def test_bad_resolution_is_refused_before_anything_runs(track_dir, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["appearance", str(track_dir), "--resolution", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --resolution: expected one of 256, 512, 1024, 2048" in err and "Traceback" not in err
    assert not (track_dir / "appearance").exists()


def test_the_command_is_listed_and_a_bad_input_prints_no_traceback(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "avatar3d", "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "appearance" in r.stdout
    r = subprocess.run([sys.executable, "-m", "avatar3d", "appearance", str(tmp_path / "nowhere")], capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.strip() == (f"avatar3d appearance: error: {tmp_path / 'nowhere'} does not exist; give the "
                                                      f"folder that 'avatar3d track VIDEO --out DIR' wrote")
    assert not (tmp_path / "nowhere").exists()


def test_progress_counts_each_pass_over_the_frames(tracked):
    """The estimate's bar follows the estimator's reads; reading an earlier frame again starts the next pass."""
    import io

    from tqdm import tqdm

    from avatar3d.appearance.pipeline import ProgressFrames
    from avatar3d.data.frames import TrackedFrames

    with tqdm(total=6, file=io.StringIO()) as bar:
        frames = ProgressFrames(TrackedFrames(tracked), bar)
        for i in range(6):
            assert frames.image(i).shape == (96, 96, 3)
        assert bar.n == 6 and frames.passes == 1
        frames.image(0), frames.image(3)
        assert bar.n == 2 and frames.passes == 2


def test_step_bars_follow_the_estimators_steps(capsys):
    from avatar3d.appearance.pipeline import StepBars

    steps = StepBars(True)
    steps("observations", 0, 1), steps("observations", 1, 1)
    assert steps.bar is None
    for d in range(5):
        steps("reflectance", d, 4)
    assert steps.bar is not None and steps.bar.n == 4
    steps.close()
    assert steps.bar is None and capsys.readouterr().out.split() == ["observations", "reflectance"]
    StepBars(False)("reflectance", 1, 4)  # --quiet: nothing at all
    assert capsys.readouterr().out == ""


def test_library_refuses_a_resolution_it_cannot_make(tracked, tmp_path):
    from avatar3d.errors import BadInputError

    for r in (8, 100_000, 512.0):
        with pytest.raises(BadInputError, match="map resolution must be a whole number of texels"):
            run_appearance(tracked, tmp_path / "m", AppearanceOptions(resolution=r), progress=False)
    assert not (tmp_path / "m").exists()
