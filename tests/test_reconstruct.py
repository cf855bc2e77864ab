"""``avatar3d reconstruct`` end to end on the shipped demo clip (its first 2 s, a tiny plan): every output, a rerun
that reuses everything, interruptions (a stop after every stage, a real SIGINT during training) that resume to the
same outputs, and the one-sentence refusals of bad input."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from avatar3d._tensor import torch_threads
from avatar3d.errors import BadInputError
from avatar3d.reconstruct.pipeline import STOP_AFTER_ENV, ReconstructStopped, reconstruct
from avatar3d.reconstruct.previews import expected_files
from avatar3d.reconstruct.settings import Plan, ReconstructOptions, relight_supported
from avatar3d.reconstruct.stages import stage_names

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "assets" / "demo" / "d3_4s.mp4"
#: the first 2 s at 12 fps (24 frames: 12 to train, 12 held out), everything tiny: bookkeeping, not quality
TINY = Plan(fps=12.0, max_frames=24, track_resolution=128, appearance_resolution=64, avatar_preset="quick", avatar_resolution=64,
            avatar_iterations=150, preview_width=64, turntable_frames=6)
STAGES = stage_names()


def _report_in_build() -> bool:
    import importlib.util

    return importlib.util.find_spec("avatar3d.reconstruct.report") is not None


def run_tiny(out: Path, plan: Plan = TINY, **kw):
    with torch_threads(1):
        return reconstruct(CLIP, out, ReconstructOptions(plan=plan, progress=False, **kw))


def digests(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every output file (not the lock or the record, which says what ran when)."""
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in (".lock", "reconstruct.json")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``stepwise``: a run stopped right after every stage by the stop hook, and continued each time until it finished;
    ``after_appearance``: a copy of it as it was when stopped after the appearance stage."""
    import shutil

    out = tmp_path_factory.mktemp("reconstruct") / "run"
    copy = out.parent / "after_appearance"
    stops = []
    for name in STAGES[:-1]:
        os.environ[STOP_AFTER_ENV] = name
        try:
            with pytest.raises(ReconstructStopped) as e:
                run_tiny(out)
        finally:
            del os.environ[STOP_AFTER_ENV]
        stops.append(e.value.stage)
        rec = json.loads((out / "reconstruct.json").read_text())
        k = STAGES.index(name)
        assert all(rec["stages"][s]["status"] == "done" for s in STAGES[: k + 1]), rec["stages"]
        assert all(rec["stages"][s]["status"] == "pending" for s in STAGES[k + 1:]), rec["stages"]
        if name == "appearance":
            shutil.copytree(out, copy, symlinks=True)
    assert stops == STAGES[:-1]
    r = run_tiny(out)
    assert r.reused == STAGES[:-1] and r.ran == ["report"]
    return {"stepwise": out, "after_appearance": copy}


@pytest.fixture
def stepwise(runs) -> Path:
    return runs["stepwise"]


def test_every_output_exists_and_is_valid(stepwise):
    from plyfile import PlyData

    from tests.gltf_validator import assert_valid

    rec = json.loads((stepwise / "reconstruct.json").read_text())
    assert rec["format"] == "avatar3d-reconstruct" and rec["version"] == 1
    assert set(rec["versions"]) >= {"avatar3d", "torch", "mediapipe", "numpy"} and rec["versions"]["torch"]
    assert rec["settings"]["plan"] == asdict(TINY) and rec["settings"]["relightable"] is relight_supported()
    for name in STAGES:
        want = "done" if name != "report" or _report_in_build() else "pending"
        assert rec["stages"][name]["status"] == want, (name, rec["stages"][name])
        assert rec["stages"][name]["seconds"] > 0 or want == "pending"
        for rel in rec["stages"][name]["outputs"]:
            assert (stepwise / rel).exists(), rel
    for rel in ["track/params.npz", "track/overlay.mp4", "track/appearance/albedo.png", "avatar/avatar.pt", "avatar/metrics.json",
                "avatar/train_log.csv", "avatar/train_curve.png", "head.glb", "avatar.ply",
                *(f"previews/{f}" for f in expected_files())]:
        assert (stepwise / rel).is_file() and (stepwise / rel).stat().st_size > 0, rel
    # the turntables say what they show: the relit avatar, or (not relightable) the head mesh with its maps
    assert ("relit" if relight_supported() else "mesh") in rec["stages"]["previews"]["note"]

    assert_valid(stepwise / "head.glb")
    ply = PlyData.read(str(stepwise / "avatar.ply"))
    assert ply["vertex"].count > 1000 and np.isfinite(np.asarray(ply["vertex"]["x"])).all()

    metrics = json.loads((stepwise / "avatar" / "metrics.json").read_text())
    a = metrics["rows"]["avatar"]
    assert 8.0 < a["psnr"] < 60.0 and 0.0 < a["ssim"] <= 1.0, a
    assert len(metrics["frames"]) == 12


def test_previews_are_pictures_of_the_head(stepwise):
    import cv2

    sheet = cv2.imread(str(stepwise / "previews" / "expressions.png"))
    assert sheet.shape[1] == 4 * 64 and sheet.shape[0] >= 2 * 64
    strip = cv2.imread(str(stepwise / "previews" / "turntable_studio.png"))
    assert strip.shape[1] == 6 * 64
    # The head covers part of every still, over a white background: not blank, not all head.
    for still in np.split(strip, 6, axis=1):
        non_white = (still < 235).any(-1).mean()
        assert 0.05 < non_white < 0.9, non_white
    sunset = cv2.imread(str(stepwise / "previews" / "turntable_sunset.png"))
    assert np.abs(sunset.astype(int) - strip.astype(int)).mean() > 1.0  # another light, other colours


def test_turntables_of_the_mesh_when_the_avatar_is_not_relit(stepwise, tmp_path):
    import cv2

    from avatar3d.avatar.drive import open_avatar
    from avatar3d.reconstruct.previews import write_turntables

    with torch_threads(1):
        files, note = write_turntables(open_avatar(stepwise / "avatar"), stepwise / "track" / "appearance", tmp_path, TINY, relit=False)
    assert "mesh" in note and len(files) == 6
    strip = cv2.imread(str(tmp_path / "turntable_overcast.png"))
    assert strip.shape[1] == 6 * 64 and 0.05 < (strip < 235).any(-1).mean() < 0.9


def test_a_second_run_reuses_everything(stepwise):
    before = digests(stepwise)
    t = time.perf_counter()
    r = run_tiny(stepwise)
    seconds = time.perf_counter() - t
    reused = STAGES if _report_in_build() else STAGES[:-1]
    assert r.reused == reused, (r.ran, r.reused)
    after = digests(stepwise)
    assert {k: v for k, v in after.items() if k != "report.html"} == {k: v for k, v in before.items() if k != "report.html"}
    assert seconds < 30, seconds  # nothing recomputed (the check reads the video once)


def test_sigint_during_training_then_rerun_resumes_to_the_same_outputs(runs):
    """A real Ctrl-C in the avatar stage of a run (the copy stopped after its appearance stage), then the same call."""
    out = runs["after_appearance"]
    code = ("import json, sys\n"
            "from avatar3d._tensor import torch_threads\n"
            "from avatar3d.reconstruct.pipeline import ReconstructStopped, reconstruct\n"
            "from avatar3d.reconstruct.settings import Plan, ReconstructOptions, relight_supported\n"
            "with torch_threads(1):\n"
            "    try:\n"
            "        reconstruct(sys.argv[1], sys.argv[2], ReconstructOptions(plan=Plan(**json.loads(sys.argv[3])), progress=False))\n"
            "    except ReconstructStopped as e:\n"
            "        print(e, file=sys.stderr)\n"
            "        sys.exit(130)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(STOP_AFTER_ENV, None)
    # SIGINT as a terminal delivers it: a suite started from a background job inherits SIGINT ignored (POSIX), and a
    # Python started so keeps ignoring it, so the child gets the default disposition back before it starts
    proc = subprocess.Popen([sys.executable, "-c", code, str(CLIP), str(out), json.dumps(asdict(TINY))], env=env,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (out / "avatar" / ".lock").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)  # into the stage: reading the frames or the first steps (it takes 10 s or more)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "stopped in stage 3/7 (avatar)" in err, err[-2000:]
    rec = json.loads((out / "reconstruct.json").read_text())["stages"]
    assert rec["track"]["status"] == "done" and rec["appearance"]["status"] == "done"
    assert rec["avatar"]["status"] == "pending" and "interrupted" in rec["avatar"]["note"]
    assert not (out / "avatar" / "avatar.pt").exists()

    r = run_tiny(out)
    assert r.reused == ["track", "appearance"] and r.ran[:5] == ["avatar", "eval", "export", "previews", "report"]
    rec = json.loads((out / "reconstruct.json").read_text())["stages"]
    assert all(rec[s]["status"] == "done" for s in STAGES[:-1])
    log = (out / "avatar" / "train_log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in log] == list(range(1, TINY.avatar_iterations + 1))
    # The same outputs as the run stopped between stages: the same files, and the trainer resumes bit for bit
    names = lambda d: {k for k in digests(d) if not k.startswith(("avatar/checkpoint", "avatar/."))}  # noqa: E731
    assert names(out) == names(runs["stepwise"])
    scores = [json.loads((d / "avatar" / "metrics.json").read_text())["rows"]["avatar"] for d in (out, runs["stepwise"])]
    assert scores[0]["psnr"] == pytest.approx(scores[1]["psnr"], abs=0.05), scores


def test_bad_input_is_one_sentence_and_spoils_nothing(stepwise, tmp_path):
    before = digests(stepwise)
    with pytest.raises(BadInputError, match="does not exist"):
        reconstruct(tmp_path / "missing.mp4", tmp_path / "a")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(BadInputError, match="not a readable video"):
        reconstruct(junk, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not a reconstruct run"):
        run_tiny(other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(BadInputError, match="other settings .*plan.*--restart"):
        run_tiny(stepwise, plan=Plan(**{**asdict(TINY), "avatar_iterations": 41}))
    assert digests(stepwise) == before


def test_no_face_leaves_nothing_behind(tmp_path):
    import av

    clip = tmp_path / "wall.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
        for i in range(6):
            img = np.full((128, 128, 3), 40 + 20 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(BadInputError, match="no face"):
        with torch_threads(1):
            reconstruct(clip, tmp_path / "run", ReconstructOptions(plan=TINY, progress=False))
    assert not (tmp_path / "run").exists()


def test_a_second_run_on_a_busy_folder_is_refused(stepwise):
    from avatar3d.data.rundir import RunDirectory, RunDirectoryBusyError

    with RunDirectory(stepwise):
        with pytest.raises(RunDirectoryBusyError, match="in use by another avatar3d run"):
            run_tiny(stepwise)
