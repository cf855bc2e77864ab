"""``avatar3d avatar train``: what a user sees (files, the summary line, exit codes, one sentence per problem), the
output directory's safety (one run at a time, nothing replaced silently, an earlier avatar kept when a run fails),
Ctrl-C and --resume (bit for bit), reproducible runs, and the presets.

Runs are seconds long: 64 px, 10 steps on the rendered capture (conftest's ``avatar_truth_dir``), one torch thread;
the avatar's quality is tested in tests/test_avatar_train.py.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar3d._tensor import torch_threads
from avatar3d.avatar.presets import PRESETS, densify_schedule, preset_options, resume_options
from avatar3d.avatar.train import AVATAR_FILE, CHECKPOINT_FILE, CURVE_FILE, LOG_FILE, AvatarTrainer
from avatar3d.cli import main
from avatar3d.data.rundir import RunDirectory
from avatar3d.data.sequence import TrackedSequence

TINY = ["--resolution", "64", "--iterations", "10", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def _train(track: Path, out: Path, *extra: str) -> int:
    return main(["avatar", "train", str(track), "--out", str(out), *TINY, *extra])


def _state(out: Path) -> dict:
    return torch.load(out / AVATAR_FILE, map_location="cpu", weights_only=False)


def _same_avatar(a: Path, b: Path) -> None:
    sa, sb = _state(a)["avatar"], _state(b)["avatar"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _error(capsys, code: int, *phrases: str) -> str:
    """The one-line error of a failed command: exit code 2, every phrase in it, no traceback."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("avatar3d avatar train: error: ") and err.count("\n") == 1, err
    for p in phrases:
        assert p in err, err
    return err


@pytest.fixture(scope="module")
def first_run(avatar_truth_dir, tmp_path_factory) -> tuple[Path, str, str]:
    """The avatar directory of one 10-step run (read-only: copy it to change it), what it printed and its stderr."""
    out = tmp_path_factory.mktemp("cli_train") / "avatar"
    said, err = io.StringIO(), io.StringIO()
    with torch_threads(1), redirect_stdout(said), redirect_stderr(err):
        assert _train(avatar_truth_dir, out) == 0
    return out, said.getvalue(), err.getvalue()


@pytest.fixture
def trained(first_run) -> Path:
    return first_run[0]


def _copy(trained: Path, to: Path) -> Path:
    shutil.copytree(trained, to)
    return to


def test_a_run_writes_the_avatar_its_log_and_curve_and_says_what_next(first_run, avatar_truth_dir, out_dir):
    out, said, err = first_run
    assert err == ""  # --quiet: no progress bar
    line = said.strip()
    assert "\n" not in line and line.startswith("trained 10 steps (--preset default, 64 px, ")
    assert "training PSNR" in line and " Gaussians; wrote " in line and str(out / AVATAR_FILE) in line
    assert f"'avatar3d avatar eval {out}'" in line and f"'avatar3d avatar render {out} --out DIR'" in line
    for f in (AVATAR_FILE, CHECKPOINT_FILE, LOG_FILE, CURVE_FILE):
        assert (out / f).is_file(), f
    assert not list(out.glob(".*.tmp*"))
    log = (out / LOG_FILE).read_text().splitlines()
    assert log[0] == "step,seconds,loss,psnr,gaussians" and len(log) == 11
    seconds = [float(r.split(",")[1]) for r in log[1:]]
    assert seconds == sorted(seconds) and seconds[0] > 0
    from PIL import Image

    with Image.open(out / CURVE_FILE) as im:
        assert im.format == "PNG" and im.size[0] >= 600
    shutil.copy(out / CURVE_FILE, out_dir / "avatar_train_curve.png")
    st = _state(out)
    assert st["preset"] == "default" and st["resolution"] == 64 and st["iterations"] == 10 and st["steps"] == 10
    assert st["options"]["resolution"] == 64 and st["options"]["preset"] == "default"
    assert st["track_dir"] == str(Path(avatar_truth_dir).resolve())


def test_a_finished_avatar_is_never_replaced_silently_and_a_second_run_is_identical(trained, avatar_truth_dir, tmp_path, capsys):
    out = _copy(trained, tmp_path / "avatar")
    before = (out / AVATAR_FILE).read_bytes()
    _error(capsys, _train(avatar_truth_dir, out), "already holds a trained avatar", "--resume", "--restart", "another --out")
    assert (out / AVATAR_FILE).read_bytes() == before
    (out / "metrics.json").write_text("{}")  # as 'avatar3d avatar eval' leaves it: scores of this avatar
    RunDirectory(out).record_stage("eval", ["metrics.json"])
    assert _train(avatar_truth_dir, out, "--resume") == 0  # nothing left to do: says so, and how to go further
    assert "already holds the finished avatar of 10 steps" in capsys.readouterr().out
    assert (out / AVATAR_FILE).read_bytes() == before and (out / "metrics.json").is_file()
    assert _train(avatar_truth_dir, out, "--resume", "--iterations", "13") == 0
    assert capsys.readouterr().out.startswith("trained 13 steps (--preset default, 64 px, ")
    assert _state(out)["steps"] == 13 and len((out / LOG_FILE).read_text().splitlines()) == 14
    assert not (out / "metrics.json").exists() and RunDirectory(out).stage("eval") is None  # they scored the old avatar
    assert RunDirectory(out).stage("train")["settings"]["steps"] == 13
    assert _train(avatar_truth_dir, out, "--restart") == 0  # a new one in its place: with the fixed seed, the same as the first
    _same_avatar(trained, out)


def test_a_failed_run_keeps_the_earlier_avatar(trained, avatar_truth_dir, tmp_path, capsys, monkeypatch):
    out = _copy(trained, tmp_path / "avatar")
    before = (out / AVATAR_FILE).read_bytes()
    real = AvatarTrainer.step

    def failing(self):
        if self.step_count == 3:
            raise RuntimeError("the machine ran out of memory")
        return real(self)

    monkeypatch.setattr(AvatarTrainer, "step", failing)
    assert _train(avatar_truth_dir, out, "--restart") == 3
    assert "internal error" in capsys.readouterr().err
    assert (out / AVATAR_FILE).read_bytes() == before


def test_ctrl_c_stops_at_a_checkpoint_and_resume_continues_bit_for_bit(trained, avatar_truth_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "avatar"
    real = AvatarTrainer.step

    def step(self):
        row = real(self)
        if self.step_count == 4:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, caught between steps
        return row

    monkeypatch.setattr(AvatarTrainer, "step", step)
    assert _train(avatar_truth_dir, out) == 130
    err = capsys.readouterr().err
    assert err.strip() == "avatar3d avatar train: stopped at step 4 of 10; run the same command with --resume to continue"
    assert not (out / AVATAR_FILE).exists() and (out / CHECKPOINT_FILE).is_file() and (out / CURVE_FILE).is_file()
    monkeypatch.setattr(AvatarTrainer, "step", real)
    _error(capsys, _train(avatar_truth_dir, out), "an unfinished training run", "--resume")
    assert _train(avatar_truth_dir, out, "--resume") == 0
    said = capsys.readouterr().out
    assert said.startswith("trained 10 steps (") and ", 6 of them now)" in said
    _same_avatar(trained, out)
    a = (trained / LOG_FILE).read_text().splitlines()
    b = (out / LOG_FILE).read_text().splitlines()
    assert [r.split(",")[2:] for r in a] == [r.split(",")[2:] for r in b]  # the same losses, PSNRs and Gaussians


def test_resume_takes_the_runs_settings_and_refuses_other_ones(trained, avatar_truth_dir, tmp_path, capsys):
    out = _copy(trained, tmp_path / "avatar")
    _error(capsys, main(["avatar", "train", str(avatar_truth_dir), "--out", str(out), "--resume", "--resolution", "96", "--quiet"]),
           "trained at 64 pixels", "--restart")
    _error(capsys, main(["avatar", "train", str(avatar_truth_dir), "--out", str(out), "--resume", "--preset", "quick", "--quiet"]),
           "--preset default", "--restart")
    other = _copy(avatar_truth_dir, tmp_path / "other_track")
    _error(capsys, _train(other, out, "--resume"), "was trained on", str(Path(avatar_truth_dir).resolve()))
    (out / CHECKPOINT_FILE).unlink()
    _error(capsys, _train(avatar_truth_dir, out, "--resume"), "not its checkpoint.pt", "--restart")


def test_one_run_at_a_time(avatar_truth_dir, tmp_path, capsys):
    out = tmp_path / "avatar"
    with RunDirectory(out):
        _error(capsys, _train(avatar_truth_dir, out), "is in use by another avatar3d run")
    assert not (out / AVATAR_FILE).exists()


# ------------------------------------------------------------------------------------------------ bad input
def _broken_track(src: Path, to: Path, drop: str) -> Path:
    shutil.copytree(src, to)
    p = to / drop
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    return to


@pytest.mark.parametrize("drop, phrase", [("images", "has no image for frame"), ("masks", "has no mask for frame"),
                                          ("params.npz", "is not a tracking output directory")])
def test_a_tracking_directory_missing_a_part(avatar_truth_dir, tmp_path, capsys, drop, phrase):
    track = _broken_track(avatar_truth_dir, tmp_path / "track", drop)
    _error(capsys, _train(track, tmp_path / "avatar"), phrase)
    assert not (tmp_path / "avatar").exists()  # a run that failed before writing leaves no folder behind


def test_too_few_frames_and_an_unknown_head_model(avatar_truth_dir, tmp_path, capsys):
    seq = TrackedSequence.load(avatar_truth_dir)
    short = _copy(avatar_truth_dir, tmp_path / "short")
    n = 12  # the split holds out the last 15%, at least 30 frames, but leaves a short video some: too few
    take = lambda a: a[:n]  # noqa: E731
    replace(seq, expression=take(seq.expression), pose=take(seq.pose), transl=take(seq.transl), K=take(seq.K),
            world_to_cam=take(seq.world_to_cam), frame_names=list(seq.frame_names)[:n],
            valid=None if seq.valid is None else take(seq.valid)).save(short)
    _error(capsys, _train(short, tmp_path / "a"), "an avatar needs at least 10 training frames")
    alien = _copy(avatar_truth_dir, tmp_path / "alien")
    replace(seq, model="no-such-head-model").save(alien)
    _error(capsys, _train(alien, tmp_path / "b"), "the head model 'no-such-head-model' of this tracking cannot be loaded")


def test_a_corrupt_or_foreign_checkpoint(avatar_truth_dir, tmp_path, capsys):
    out = tmp_path / "avatar"
    out.mkdir()
    (out / CHECKPOINT_FILE).write_bytes(b"\x80\x02 half a checkpoint")
    _error(capsys, _train(avatar_truth_dir, out, "--resume"), "is not a readable avatar checkpoint")
    torch.save({"weights": torch.zeros(3)}, out / CHECKPOINT_FILE)
    _error(capsys, _train(avatar_truth_dir, out, "--resume"), "is not an avatar3d Gaussian avatar checkpoint")
    torch.save({"format": "avatar3d-gaussian-avatar", "kind": "avatar"}, out / CHECKPOINT_FILE)
    _error(capsys, _train(avatar_truth_dir, out, "--resume"), "is an avatar3d Gaussian avatar avatar, not an avatar checkpoint")


def test_an_output_that_is_a_file(avatar_truth_dir, tmp_path, capsys):
    (tmp_path / "avatar").write_text("mine")
    _error(capsys, _train(avatar_truth_dir, tmp_path / "avatar"), "is a file")
    assert (tmp_path / "avatar").read_text() == "mine"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("backend", ["cuda", "gsplat"])
def test_a_gpu_backend_without_a_gpu(avatar_truth_dir, tmp_path, capsys, backend):
    _error(capsys, _train(avatar_truth_dir, tmp_path / "avatar", "--backend", backend), f"--backend {backend} needs an NVIDIA GPU")


# ------------------------------------------------------------------------------------------------ presets
def test_presets_set_size_and_schedule_and_flags_override_them():
    quick = preset_options("quick")
    assert quick.resolution == 256 and quick.iterations == PRESETS["quick"].iterations and quick.preset == "quick"
    full = preset_options("default")
    assert full.resolution == 512 and full.iterations > quick.iterations
    assert 0 < quick.densify.refine_start < quick.densify.refine_stop < quick.iterations
    mine = preset_options("quick", resolution=128, iterations=3000, backend="cpu")
    assert mine.resolution == 128 and mine.iterations == 3000 and mine.backend == "cpu"
    assert mine.densify.refine_stop == round(PRESETS["quick"].densify_stop * 3000)  # the schedule scales with the iterations
    longer = resume_options(quick, iterations=3000)
    assert longer.densify == mine.densify and longer.resolution == 256
    assert resume_options(quick, progress=True) == replace(quick, progress=True)
    assert densify_schedule(PRESETS["default"], 10).refine_every >= 1


def test_the_preset_reaches_the_command_line(avatar_truth_dir, tmp_path, capsys):
    assert main(["avatar", "train", str(avatar_truth_dir), "--out", str(tmp_path / "q"), "--preset", "quick", "--resolution", "64",
                 "--iterations", "2"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith("trained 2 steps (--preset quick, 64 px, ")
    assert "avatar:" in cap.err  # the progress bar (tqdm, on stderr), with loss and PSNR
    st = _state(tmp_path / "q")
    assert st["preset"] == "quick" and np.isclose(st["options"]["densify"]["max_gaussians"], PRESETS["quick"].max_gaussians)
