"""``reconstruct(video, out, options)``: the stages of :mod:`.stages` in order, in one locked, resumable run folder.

* **checks first**: the video is opened and decoded (one sentence when it is missing or unreadable) and the output
  folder checked (a file, or a folder that holds something other than a reconstruct run: one sentence) before
  anything is written; the folder is then a :class:`~avatar3d.data.rundir.RunDirectory` (a second run into it stops
  with one sentence naming the first).
* **one run per folder**: ``reconstruct.json`` (:mod:`.record`) records the video's SHA-256 and the settings; a run
  with another video or other settings stops with one sentence (a new ``--out``, or ``--restart`` to redo it);
  ``resume`` takes the recorded settings.
* **resumable**: a stage recorded ``done`` whose outputs exist is reused; the others run through their library
  functions, which resume where an interrupted run stopped (the tracker's stages, the appearance maps, the trainer's
  checkpoint); once a stage is redone, the stages after it are redone too. ``reconstruct.json`` is rewritten
  atomically after every stage (status, seconds, outputs).
* **stops**: Ctrl-C (SIGINT) records the stage as ``pending`` ("interrupted") and raises :class:`ReconstructStopped`;
  the environment variable ``AVATAR3D_RECONSTRUCT_STOP_AFTER=<stage>`` (a comma-separated list also works) stops the
  same way right after that stage is recorded done: how the tests interrupt a run between any two stages.
* **failures**: a stage that fails is recorded ``failed`` with its sentence; earlier outputs stay. A new folder that
  a bad input stopped before any stage finished (e.g. a video without a face) is removed again.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.atomic import file_sha256
from ..data.rundir import LOCK_FILE, RunDirectory
from ..errors import Avatar3DError, BadInputError
from .progress import RunProgress, stage_estimates
from .record import RECORD_FILE, RunRecord
from .settings import ReconstructOptions
from .stages import STAGES, RunContext, Stage, avatar_options, stage_names

__all__ = ["reconstruct", "ReconstructResult", "ReconstructStopped", "STOP_AFTER_ENV"]

STOP_AFTER_ENV = "AVATAR3D_RECONSTRUCT_STOP_AFTER"


class ReconstructStopped(KeyboardInterrupt):
    """The run stopped in (or, ``after``, right after) stage ``stage``; running the same command again continues it."""

    def __init__(self, stage: str, index: int, total: int, out: Path, after: bool = False):
        where = f"after stage {index}/{total} ({stage})" if after else f"in stage {index}/{total} ({stage})"
        super().__init__(f"stopped {where}")
        self.stage, self.index, self.total, self.out, self.after = stage, index, total, out, after


@dataclass
class ReconstructResult:
    """What :func:`reconstruct` did: the run folder, its record, the stages run now and those reused."""

    path: Path
    record: RunRecord
    ran: list[str]
    reused: list[str]
    seconds: float

    def output(self, rel: str) -> Optional[Path]:
        p = self.path / rel
        return p if p.exists() else None


# ---------------------------------------------------------------------------------------------- checks
def _check_video(video: str | Path) -> tuple[Path, int]:
    """The video's path and the number of frames the tracker will take (one sentence when it cannot be read)."""
    from ..capture.video import open_source

    p = Path(video)
    if not p.exists():
        raise BadInputError(f"{p} does not exist; give a video file of a head (mp4, mov, webm)")
    if p.is_dir():
        raise BadInputError(f"{p} is a folder; reconstruct takes one video file of a head (mp4, mov, webm)")
    return p, len(open_source(p))


def _check_out(out: Path) -> bool:
    """True when ``out`` is new (or empty); one sentence when it is a file or holds something else than a run."""
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out} is a file; give a folder for the run with --out")
    if not out.exists():
        return True
    entries = {p.name for p in out.iterdir()}
    if entries - {LOCK_FILE} and RECORD_FILE not in entries:
        raise BadInputError(f"{out} already holds other files and is not a reconstruct run (it has no {RECORD_FILE}); "
                            f"choose a new or empty folder with --out")
    return not (entries - {LOCK_FILE})


def _settings_sentence(out: Path, record: RunRecord, settings: dict, digest: str) -> Optional[str]:
    """One sentence when ``record`` is another run than the one asked for, else None."""
    if record.data.get("video_sha256") != digest:
        what = f"a run of another video ({Path(record.data.get('video', '?')).name})"
    elif record.settings != settings:
        keys = sorted(k for k in {*settings, *record.settings} if settings.get(k) != record.settings.get(k))
        what = f"a run with other settings ({', '.join(keys)})"
    else:
        return None
    return f"{out} holds {what}: choose a new --out, or pass --restart to redo it with these (or --resume to continue it as it was)"


def _options(record: Optional[RunRecord], options: ReconstructOptions, out: Path) -> ReconstructOptions:
    """``--resume``: the recorded settings (one sentence when there is no run to continue)."""
    if not options.resume:
        return options
    if record is None:
        raise BadInputError(f"{out} holds no reconstruct run to resume; leave out --resume to start one")
    return ReconstructOptions.from_settings(record.settings, progress=options.progress)


# ---------------------------------------------------------------------------------------------- the run
def reconstruct(video: str | Path, out: str | Path, options: ReconstructOptions = ReconstructOptions()) -> ReconstructResult:
    """Run (or continue) every stage for ``video`` into ``out`` (see the module docstring).

    Raises:
        BadInputError / Avatar3DError: one sentence (bad video or folder, another run's settings, a failed stage);
        RunDirectoryBusyError: another run holds ``out``; ReconstructStopped: Ctrl-C or the stop hook.
    """
    t0 = time.perf_counter()
    video, frames = _check_video(video)
    out = Path(out)
    fresh = _check_out(out)
    if not options.resume:
        options.settings()  # a bad flag is one sentence before the folder is touched
    digest = file_sha256(video)
    with RunDirectory(out):
        record = RunRecord.read(out)
        options = _options(record, options, out)
        settings = options.settings()
        if options.resume and record.data.get("video_sha256") != digest:
            raise BadInputError(f"{out} is a run of another video ({Path(record.data.get('video', '?')).name}); give that video to "
                                f"--resume it, or choose a new --out")
        if record is not None and not options.restart:
            sentence = _settings_sentence(out, record, settings, digest)
            if sentence:
                raise BadInputError(sentence)
        if record is None:
            record = RunRecord.new(out, video, digest, settings, stage_names())
            record.save()
        elif options.restart:
            record.reset(stage_names(), settings, video, digest)
        run = RunContext(out, video, settings["model"], options.resolved_plan(), settings["relightable"], record, options.progress)
        try:
            ran, reused = _run_stages(run, frames, options.restart)
        except BadInputError:
            if fresh and not any(record.status(s) == "done" for s in stage_names()):
                _empty(out)  # nothing of value was made: leave no half-made folder behind
            raise
    return ReconstructResult(out, record, ran, reused, time.perf_counter() - t0)


def _empty(out: Path) -> None:
    """Remove everything in ``out`` but the lock (RunDirectory then removes the folder as it unlocks)."""
    for p in out.iterdir():
        if p.name == LOCK_FILE:
            continue
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _estimates(run: RunContext, frames: int) -> dict[str, float]:
    options = avatar_options(run)
    width = options.resolution or run.plan.track_resolution
    return stage_estimates(run.plan, frames, options.iterations, width, run.relightable)


def _stop_after() -> set[str]:
    return {s.strip() for s in os.environ.get(STOP_AFTER_ENV, "").split(",") if s.strip()}


def _run_stages(run: RunContext, frames: int, restart: bool) -> tuple[list[str], list[str]]:
    from ..capture.video import open_source

    if run.plan.fps or run.plan.max_frames:
        frames = len(open_source(run.video, fps=run.plan.fps, max_frames=run.plan.max_frames))
    progress = RunProgress(_estimates(run, frames), run.progress)
    ran: list[str] = []
    reused: list[str] = []
    upstream_redone = restart
    for k, stage in enumerate(STAGES, 1):
        if not restart and not upstream_redone and stage.done(run):
            progress.reused(stage.name)
            reused.append(stage.name)
            continue
        redo = restart or (upstream_redone and run.record.status(stage.name) == "done")
        _run_stage(stage, run, progress, k, redo)
        ran.append(stage.name)
        upstream_redone = True
        if stage.name in _stop_after():
            raise ReconstructStopped(stage.name, k, len(STAGES), run.path, after=True)
    return ran, reused


def _run_stage(stage: Stage, run: RunContext, progress: RunProgress, k: int, redo: bool) -> None:
    """Run one stage and record how it went (done, pending when interrupted or not in this build, failed)."""
    progress.begin(stage.name)
    t, cpu = time.perf_counter(), time.process_time()
    try:
        result = stage.run(run, redo)
    except KeyboardInterrupt:
        run.record.set_stage(stage.name, "pending", time.perf_counter() - t, cpu_seconds=time.process_time() - cpu,
                             note="interrupted; run the same command again to continue")
        raise ReconstructStopped(stage.name, k, len(STAGES), run.path) from None
    except Exception as e:
        sentence = str(e) if isinstance(e, Avatar3DError) else f"{type(e).__name__}: {e}"
        run.record.set_stage(stage.name, "failed", time.perf_counter() - t, cpu_seconds=time.process_time() - cpu, error=sentence)
        raise
    seconds = time.perf_counter() - t
    extra = {k2: v for k2, v in result.details.items() if v}
    # CPU seconds of this process (all its threads) beside the wall time: on a shared machine they measure the work
    run.record.set_stage(stage.name, result.status, seconds, result.outputs, cpu_seconds=time.process_time() - cpu,
                         note=result.note or None, **extra)
    progress.end(stage.name, seconds, result.note)
