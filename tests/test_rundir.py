"""Run directories: one owner at a time, no stale files after a rerun, a manifest, unique temporary names,
and a cut-off video said out loud."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avatar3d.data.atomic import atomic_path, temp_path
from avatar3d.data.rundir import MANIFEST_FILE, RunDirectory, RunDirectoryBusyError
from helpers.video import write_video

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar3d", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


class LockHolder:
    """Another process that holds the lock of ``directory`` until closed."""

    def __init__(self, directory: Path):
        code = ("import sys, time; from avatar3d.data.rundir import RunDirectory\n"
                "with RunDirectory(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(directory), "--marker"], stdout=subprocess.PIPE, text=True, env=ENV)
        assert self.proc.stdout.readline().strip() == "locked"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def holder(tmp_path):
    h = LockHolder(tmp_path / "run")
    yield h
    h.close()


def small_video(path: Path, n: int = 60, size: int = 64, faststart: bool = True) -> Path:
    """An H.264 mp4 of ``n`` frames (moving gradient); ``faststart`` puts the index at the front."""
    yy, xx = np.mgrid[:size, :size]
    frames = [np.stack([(xx * 4 + i * 3) % 256, (yy * 4) % 256, np.full_like(xx, (i * 7) % 256)], -1).astype(np.uint8)
              for i in range(n)]
    return write_video(path, frames, fps=25, faststart=faststart)


def cut_off(src: Path, dst: Path, fraction: float) -> Path:
    """A copy of ``src`` that ends after ``fraction`` of its bytes (a download or copy stopped part-way)."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ---------------------------------------------------------------------------------------------- lock


def test_second_owner_is_refused_with_the_holders_pid_and_command(holder, tmp_path):
    with pytest.raises(RunDirectoryBusyError) as e:
        RunDirectory(tmp_path / "run").lock()
    msg = str(e.value)
    assert f"process {holder.proc.pid}" in msg and "--marker" in msg and str(tmp_path / "run") in msg
    assert "\n" not in msg
    holder.close()  # the kernel drops the lock with the process: no stale lock after a crash
    with RunDirectory(tmp_path / "run") as run:
        assert run.locked
    assert not run.locked


def test_lock_is_released_and_retaken_in_one_process(tmp_path):
    run = RunDirectory(tmp_path / "a" / "b")
    with run:
        with pytest.raises(RunDirectoryBusyError):  # flock is per open file: a second open in-process is refused too
            RunDirectory(tmp_path / "a" / "b").lock()
    with RunDirectory(tmp_path / "a" / "b"):
        pass


def test_cli_track_into_a_busy_directory_is_one_sentence(holder, tmp_path):
    video = small_video(tmp_path / "clip.mp4", n=5)
    r = cli("track", str(video), "--out", str(tmp_path / "run"), "--quiet")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"process {holder.proc.pid}" in r.stderr and "in use by another avatar3d run" in r.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]  # nothing of the refused run


def test_output_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="is a file"):
        RunDirectory(tmp_path / "f").lock()


# ---------------------------------------------------------------------------------------------- manifest


def test_replace_stage_removes_what_the_stage_wrote_before(tmp_path):
    run = RunDirectory(tmp_path)
    (tmp_path / "images").mkdir()
    for i in range(4):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"x")
    (tmp_path / "params.npz").write_bytes(b"p")
    (tmp_path / "albedo.png").write_bytes(b"a")
    (tmp_path / "user_notes.txt").write_text("mine")
    run.record_stage("capture", [tmp_path / "images" / f"{i}.png" for i in range(4)], settings={"max_frames": 4})
    run.record_stage("fit", ["params.npz"], settings={"iters": 3})
    run.record_stage("photometric", ["params.npz", "albedo.png"])
    m = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert m["stages"]["capture"] == {"files": [f"images/{i}.png" for i in range(4)], "dirs": [], "settings": {"max_frames": 4},
                                      "complete": True}
    assert m["stages"]["fit"]["settings"] == {"iters": 3}

    run.replace_stage("photometric")  # params.npz is also fit's: kept; albedo.png goes
    assert (tmp_path / "params.npz").is_file() and not (tmp_path / "albedo.png").exists()
    assert run.stage("photometric")["complete"] is False
    run.drop_stage("photometric")
    assert run.stage("photometric") is None
    run.replace_stage("capture", dirs=("images",), settings={"max_frames": 2})
    assert list((tmp_path / "images").iterdir()) == [] and run.stage("capture")["settings"] == {"max_frames": 2}
    assert (tmp_path / "user_notes.txt").read_text() == "mine" and (tmp_path / "params.npz").is_file()


def test_owned_folders_are_emptied_even_after_an_interrupted_run(tmp_path):
    """A run killed mid-stage never recorded its files; the folders its stage owns are emptied anyway."""
    run = RunDirectory(tmp_path)
    run.replace_stage("capture", dirs=("images",))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000019.png").write_bytes(b"x")  # ... and then the process died
    RunDirectory(tmp_path).replace_stage("capture", dirs=("images",))
    assert list((tmp_path / "images").iterdir()) == []


def test_a_hand_edited_manifest_cannot_delete_outside_the_directory(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    d = tmp_path / "run"
    run = RunDirectory(d)
    run.record_stage("x", [])
    m = json.loads((d / MANIFEST_FILE).read_text())
    m["stages"]["x"]["files"] = ["../precious.txt"]
    m["stages"]["x"]["dirs"] = [".."]
    (d / MANIFEST_FILE).write_text(json.dumps(m))
    run.replace_stage("x")
    assert outside.read_text() == "keep"


def test_unreadable_manifest_is_treated_as_empty(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    run = RunDirectory(tmp_path)
    assert run.manifest()["stages"] == {}
    run.record_stage("fit", ["params.npz"])
    assert run.stage("fit")["files"] == ["params.npz"]


# ---------------------------------------------------------------------------------------------- temporary names


def test_temporary_names_are_unique_keep_the_suffix_and_normal_permissions(tmp_path):
    a, b = temp_path(tmp_path / "overlay.mp4"), temp_path(tmp_path / "overlay.mp4")
    assert a != b and a.suffix == b.suffix == ".mp4" and a.name.startswith(".overlay.") and a.parent == tmp_path
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(a.stat().st_mode) == 0o666 & ~umask
    with atomic_path(tmp_path / "x.npz") as tmp:
        np.savez(tmp, a=np.arange(3))  # np.savez would append .npz to any other suffix
    assert np.load(tmp_path / "x.npz")["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "y.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "y.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == sorted([a.name, b.name])


def test_overlay_is_written_under_a_unique_temporary_name(tmp_path):
    from avatar3d.tracking.outputs import write_overlay

    (tmp_path / "overlay.tmp.mp4").write_bytes(b"another run's file")  # the old fixed name: no longer touched
    frames = (np.full((32, 32, 3), i * 20, np.uint8) for i in range(5))
    write_overlay(tmp_path / "overlay.mp4", frames, 25, 32, 32, progress=False)
    assert (tmp_path / "overlay.tmp.mp4").read_bytes() == b"another run's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4", "overlay.tmp.mp4"]


# ---------------------------------------------------------------------------------------------- cut-off video


def test_cut_off_video_yields_the_frames_before_the_cut_and_knows_the_announced_count(tmp_path):
    from avatar3d.capture.video import FrameSource

    full = small_video(tmp_path / "full.mp4", n=60)
    src = FrameSource(full)
    assert len(src) == 60 and src.expected_frames(sum(1 for _ in src)) == 60
    cut = FrameSource(cut_off(full, tmp_path / "cut.mp4", 0.5))
    assert len(cut) == 60  # the header still promises 60
    found = sum(1 for _ in cut)
    assert 0 < found < 60
    assert cut.expected_frames(found) == 60
    assert FrameSource(cut.path, max_frames=found).expected_frames(found) == found  # asked for no more than it holds


@pytest.fixture
def cut_d3(videos_dir, tmp_path) -> Path:
    """d3 (354 frames) remuxed with its index at the front, then cut off after ~12% of its bytes."""
    import av

    src = videos_dir / "d3.mp4"
    fast = tmp_path / "d3_faststart.mp4"
    with av.open(str(src)) as i, av.open(str(fast), "w", options={"movflags": "faststart"}) as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for pkt in i.demux(s_in):
            if pkt.dts is None:
                continue
            pkt.stream = s_out
            o.mux(pkt)
    return cut_off(fast, tmp_path / "d3_cut.mp4", 0.12)


@pytest.mark.slow
def test_cli_track_says_when_the_video_ended_early(cut_d3, tmp_path):
    out = tmp_path / "run"
    r = cli("track", str(cut_d3), "--out", str(out), "--no-overlay", "--quiet")
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("avatar3d track: warning:")]
    assert len(warnings) == 1, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())["summary"]
    found = metrics["frames"]
    assert 0 < found < 354 and metrics["source_frames_expected"] == 354
    assert f"ended after {found} of the 354 frames" in warnings[0] and "d3_cut.mp4" in warnings[0]
    assert len(list((out / "images").iterdir())) == found


# ---------------------------------------------------------------------------------------------- reruns


@pytest.mark.slow
def test_rerun_with_fewer_frames_and_no_overlay_leaves_no_stale_files(videos_dir, tmp_path):
    out = tmp_path / "run"
    base = ("track", str(videos_dir / "d3.mp4"), "--out", str(out), "--quiet")
    r = cli(*base, "--max-frames", "12")
    assert r.returncode == 0, r.stderr
    assert len(list((out / "images").iterdir())) == 12 and (out / "overlay.mp4").is_file()
    m = json.loads((out / MANIFEST_FILE).read_text())
    assert set(m["stages"]) == {"capture", "fit", "outputs"} and all(s["complete"] for s in m["stages"].values())
    assert len(m["stages"]["capture"]["files"]) == 1 + 2 * 12 and m["stages"]["capture"]["settings"]["max_frames"] == 12
    assert m["stages"]["outputs"]["files"] == ["metrics.json", "overlay.mp4", "transforms.json"]
    assert m["stages"]["fit"]["files"] == ["fit_settings.json", "fitted_landmarks.npy", "params.npz"]

    r = cli(*base, "--max-frames", "6", "--no-overlay")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(6)]
    assert not (out / "overlay.mp4").exists()
    m = json.loads((out / MANIFEST_FILE).read_text())
    assert m["stages"]["outputs"]["files"] == ["metrics.json", "transforms.json"]
    assert m["stages"]["outputs"]["settings"] == {"overlay": False}
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 6
    # Every file in the folder is one a stage recorded (plus the lock and the manifest): nothing left over.
    recorded = {f for s in m["stages"].values() for f in s["files"]} | {".lock", MANIFEST_FILE}
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert present == recorded


def test_an_early_error_leaves_no_output_folder(tmp_path):
    r = cli("track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "new" / "run"))
    assert r.returncode == 2 and "not found" in r.stderr
    assert not (tmp_path / "new" / "run").exists()
    (tmp_path / "kept").mkdir()  # a folder the user made stays, whatever happens
    assert cli("track", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "kept")).returncode == 2
    assert (tmp_path / "kept").is_dir()


def test_lock_removes_the_temporaries_of_a_killed_run(tmp_path):
    (tmp_path / ".overlay.k3j2h1.tmp.mp4").write_bytes(b"half an overlay")
    (tmp_path / ".params.x9.tmp.npz").write_bytes(b"half")
    (tmp_path / "notes.tmp.txt").write_text("the user's")
    with RunDirectory(tmp_path):
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "notes.tmp.txt"]


def test_fixed_names_are_replaced_in_a_folder_without_a_manifest(tmp_path):
    """A folder from before manifests (or a run killed before recording) still loses a stage's old files."""
    (tmp_path / "overlay.mp4").write_bytes(b"old")
    (tmp_path / "metrics.json").write_text("{}")
    RunDirectory(tmp_path).replace_stage("outputs", files=["overlay.mp4", "metrics.json", "transforms.json"])
    assert not (tmp_path / "overlay.mp4").exists() and not (tmp_path / "metrics.json").exists()
