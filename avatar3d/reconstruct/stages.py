"""The stages of a reconstruct run, one small object each: track -> appearance -> avatar -> eval -> export -> previews
-> report. Each calls the library function behind its own command (``avatar3d track``, ``appearance``, ``avatar
train|eval|export``, ``export``) and resumes through it (the tracker, the maps and the trainer checkpoint and resume);
:meth:`Stage.done` says whether its outputs are there, :meth:`Stage.run` makes them.

Layout of the run directory ``DIR`` (:class:`RunContext` names the paths): ``track/`` (with ``track/appearance/``),
``avatar/`` (``avatar.pt``, ``metrics.json``, ``train_log.csv``, ``train_curve.png``, ``heldout/``), ``head.glb``,
``avatar.ply``, ``previews/``, ``report.html``, ``reconstruct.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from .record import RunRecord
from .settings import Plan

__all__ = ["RunContext", "StageResult", "Stage", "STAGES", "stage_names"]


@dataclass
class RunContext:
    """One run: its folder, video, sizes, flags and record."""

    path: Path
    video: Path
    model: str
    plan: Plan
    relightable: bool
    record: RunRecord
    progress: bool = True

    @property
    def track_dir(self) -> Path:
        return self.path / "track"

    @property
    def appearance_dir(self) -> Path:
        return self.track_dir / "appearance"

    @property
    def avatar_dir(self) -> Path:
        return self.path / "avatar"

    @property
    def previews_dir(self) -> Path:
        return self.path / "previews"


@dataclass
class StageResult:
    """What a stage made: ``outputs`` (paths relative to the run folder), a ``note`` in words, and its ``status``
    (``pending`` for a stage this build cannot run yet)."""

    outputs: list[str]
    note: str = ""
    status: str = "done"
    details: dict = field(default_factory=dict)


class Stage:
    """A stage: ``name``, the ``outputs`` that must exist for it to count as done, and :meth:`run`."""

    name = ""

    def outputs(self, run: RunContext) -> list[str]:
        raise NotImplementedError

    def done(self, run: RunContext) -> bool:
        """Recorded as done and every output still there."""
        return run.record.status(self.name) == "done" and all((run.path / f).exists() for f in self.outputs(run))

    def run(self, run: RunContext, restart: bool) -> StageResult:
        """Make the outputs; ``restart``: redo rather than resume what an earlier run left."""
        raise NotImplementedError


class TrackStage(Stage):
    name = "track"

    def outputs(self, run: RunContext) -> list[str]:
        return ["track/params.npz", "track/transforms.json", "track/metrics.json", "track/overlay.mp4"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from ..tracking.pipeline import TrackOptions, track

        p = run.plan
        s = track(run.video, run.track_dir, TrackOptions(model=run.model, fps=p.fps, max_frames=p.max_frames, resolution=p.track_resolution,
                                                         photometric=p.photometric, resume=not restart, progress=run.progress))
        note = (f"{s['frames']} frames ({s['failures']} without a face), landmark NME {s['nme_mean'] * 100:.2f}% of the "
                f"inter-ocular distance")
        return StageResult(["track"], note, details={"warnings": s.get("warnings", [])})


class AppearanceStage(Stage):
    name = "appearance"

    def outputs(self, run: RunContext) -> list[str]:
        return ["track/appearance/material.json", "track/appearance/albedo.png"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from ..appearance.estimate import AppearanceOptions
        from ..appearance.pipeline import run_appearance

        r = run_appearance(run.track_dir, run.appearance_dir, AppearanceOptions(resolution=run.plan.appearance_resolution),
                           progress=run.progress, resume=not restart)
        return StageResult(["track/appearance"], f"{r.resolution}x{r.resolution} maps, {r.observed_fraction * 100:.0f}% of the UV "
                                                 f"layout observed")


def avatar_options(run: RunContext):
    """The trainer's options: the plan's avatar preset with its overrides, relightable when asked."""
    from ..avatar.presets import preset_options

    p = run.plan
    options = preset_options(p.avatar_preset, p.avatar_resolution, p.avatar_iterations, progress=run.progress)
    return replace(options, relightable=True) if run.relightable else options


class AvatarStage(Stage):
    name = "avatar"

    def outputs(self, run: RunContext) -> list[str]:
        return ["avatar/avatar.pt", "avatar/train_log.csv", "avatar/train_curve.png"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from ..avatar.train import train_avatar

        r = train_avatar(run.track_dir, run.avatar_dir, avatar_options(run), resume=not restart, restart=restart)
        return StageResult(["avatar"], f"{r.steps} steps, training PSNR {r.psnr():.2f} dB, {r.avatar.num_gaussians} Gaussians")


class EvalStage(Stage):
    name = "eval"

    def outputs(self, run: RunContext) -> list[str]:
        return ["avatar/metrics.json"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from ..avatar.evaluate import evaluate_run

        r = evaluate_run(run.avatar_dir, save_images=True)
        a = r.rows()["avatar"]
        return StageResult(["avatar/metrics.json", "avatar/heldout"],
                           f"held-out PSNR {a['psnr']:.2f} dB, SSIM {a['ssim']:.3f} on {len(r.frames)} frames")


class ExportStage(Stage):
    name = "export"

    def outputs(self, run: RunContext) -> list[str]:
        return ["head.glb", "avatar.ply"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from ..export import export_files
        from ..export.gaussian_ply import export_avatar_ply

        _, stats = export_files(run.track_dir, "glb", run.path / "head.glb", appearance=run.appearance_dir)
        ply = export_avatar_ply(run.avatar_dir, run.path / "avatar.ply", neutral=True)
        note = f"head.glb: {stats.vertices} vertices, {stats.morph_targets} morph targets, {stats.joints} joints"
        note += f", {stats.frames} animation frames" if stats.frames else ""
        return StageResult(self.outputs(run), note + f"; avatar.ply: {ply.gaussians} Gaussians (neutral)",
                           details={"notes": list(stats.notes)})


class PreviewsStage(Stage):
    name = "previews"

    def outputs(self, run: RunContext) -> list[str]:
        from .previews import ENVIRONMENTS, expected_files

        return [f"previews/{f}" for f in expected_files(ENVIRONMENTS)]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        from .previews import write_previews

        files, note = write_previews(run.avatar_dir, run.appearance_dir, run.previews_dir, run.plan, progress=run.progress)
        return StageResult([f"previews/{f.name}" for f in files], note)


class ReportStage(Stage):
    name = "report"

    def outputs(self, run: RunContext) -> list[str]:
        return ["report.html"]

    def run(self, run: RunContext, restart: bool) -> StageResult:
        writer = _report_writer()
        if writer is None:
            return StageResult([], "the HTML report writer (avatar3d.reconstruct.report) is not part of this build yet", "pending")
        path = Path(writer(run.path))
        return StageResult([path.relative_to(run.path).as_posix() if path.is_relative_to(run.path) else path.name])


def _report_writer() -> Optional[callable]:
    """``avatar3d.reconstruct.report.write_report`` when this build has it."""
    import importlib

    try:
        report = importlib.import_module(f"{__package__}.report")
    except ModuleNotFoundError as e:
        if e.name != f"{__package__}.report":
            raise
        return None
    return getattr(report, "write_report", None)


STAGES: tuple[Stage, ...] = (TrackStage(), AppearanceStage(), AvatarStage(), EvalStage(), ExportStage(), PreviewsStage(), ReportStage())


def stage_names() -> list[str]:
    return [s.name for s in STAGES]
