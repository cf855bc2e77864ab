"""``avatar3d appearance``: a tracking directory in, PBR maps out, as a locked, resumable run.

Three stages, each with a progress bar (``progress``):

1. **check** (:class:`TrackingInput`): the tracking directory has ``params.npz``, its head model loads
   and has a UV layout, at least one frame was tracked, and every frame has its image and mask; the
   bytes read give the input's fingerprint (SHA-256 of ``params.npz`` and of every frame's image and mask);
2. **estimate**: :func:`~.estimate.estimate_appearance` (a bar per pass over the frames, and a line or bar per
   step where the estimator reports them through ``progress=``);
3. **save**: :meth:`~.maps.AppearanceMaps.save`, every file at once (all or nothing).

Any bad input stops the run in stage 1 with one sentence (:class:`~avatar3d.errors.BadInputError`),
before the output folder is created or touched.

The output folder (default ``TRACK_DIR/appearance/``) is a :class:`~avatar3d.data.rundir.RunDirectory`:
locked for the run (a second run into it stops with one sentence) and recorded in its ``manifest.json``
as stage ``appearance`` with its settings (the options, the input fingerprint, the package version).
A rerun whose settings match the manifest *and* ``material.json``'s ``source`` is a no-op ("up to
date"); any change recomputes. The new maps replace the old ones only once all of them are written,
so a failed or interrupted run leaves a good earlier result as it was; and as ``material.json`` carries
its own ``source``, a run killed between writing the maps and recording them is not taken for up to date.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import __version__
from ..data.frames import TrackedFrames
from ..data.rundir import RunDirectory
from ..data.sequence import PARAMS_FILE, TrackedSequence
from ..errors import Avatar3DError, BadInputError, os_error_sentence
from ..models.base import HeadModel
from .estimate import AppearanceOptions, estimate_appearance
from .maps import AppearanceMaps

__all__ = ["STAGE", "DEFAULT_SUBDIR", "MAX_RESOLUTION", "AppearanceRun", "TrackingInput", "ProgressFrames", "StepBars", "run_appearance",
           "default_output"]

STAGE = "appearance"  #: the manifest's stage name
DEFAULT_SUBDIR = "appearance"  #: the default output folder, inside the tracking directory
MAX_RESOLUTION = 4096  #: texels per side: 4096^2 maps already take several GB while fusing
MATERIAL_FILE = "material.json"


@dataclass(frozen=True)
class AppearanceRun:
    """What :func:`run_appearance` did: the output folder ``path``, the ``files`` there (relative names),
    the maps' ``resolution``, the number of ``frames``, the ``observed_fraction`` of the UV layout some
    frame saw, the run's wall-clock ``seconds``, and ``up_to_date`` (nothing recomputed)."""

    path: Path
    files: list[str]
    resolution: int
    frames: int
    observed_fraction: float
    seconds: float
    up_to_date: bool

    @property
    def material(self) -> Path:
        return self.path / MATERIAL_FILE


def default_output(track_dir: str | Path) -> Path:
    """``TRACK_DIR/appearance``: where the maps go without ``--out``."""
    return Path(track_dir) / DEFAULT_SUBDIR


def _log(msg: str, progress: bool) -> None:
    if progress:
        from tqdm import tqdm

        tqdm.write(msg)


class TrackingInput:
    """A tracking directory checked for the appearance stage: its sequence, head model and frames.

    Raises :class:`BadInputError` (one sentence naming the directory and what to do) when the directory
    is missing or not a tracking directory, ``params.npz`` is unreadable, the head model cannot be loaded
    or has no UV layout, no frame was tracked, or ``images/`` / ``masks/`` or a frame's file is missing.
    :meth:`fingerprint` reads every frame's files (the check that they exist and the input's hash).
    """

    def __init__(self, track_dir: str | Path, model: Optional[HeadModel] = None):
        self.directory = Path(track_dir)
        self.sequence = self._load_sequence()
        self._check_frames_tracked()
        self.model = model if model is not None else self._load_model()
        self.frames = TrackedFrames(self.directory, sequence=self.sequence)
        for sub in ("images", "masks"):
            if not (self.directory / sub).is_dir():
                raise BadInputError(f"{self.directory} has no {sub}/ folder, so it is an incomplete tracking directory; "
                                    f"run 'avatar3d track' into it again")

    def _load_sequence(self) -> TrackedSequence:
        d = self.directory
        if not d.exists():
            raise BadInputError(f"{d} does not exist; give the folder that 'avatar3d track VIDEO --out DIR' wrote")
        if not d.is_dir():
            raise BadInputError(f"{d} is a file; give the folder that 'avatar3d track VIDEO --out DIR' wrote")
        if not (d / PARAMS_FILE).is_file():
            raise BadInputError(f"{d} is not a tracking directory (it has no {PARAMS_FILE}); create one with "
                                f"'avatar3d track VIDEO --out {d}'")
        return TrackedSequence.load(d)  # BadInputError when corrupt

    def _check_frames_tracked(self) -> None:
        seq = self.sequence
        if seq.num_frames == 0:
            raise BadInputError(f"{self.directory} holds no frames; track a video with a visible face into it")
        if seq.valid is not None and not np.asarray(seq.valid, bool).any():
            raise BadInputError(f"{self.directory} has no valid frame: no face was found in any of its {seq.num_frames} frames, "
                                f"so there is no colour to fuse; track a video where the face is visible")

    def _load_model(self) -> HeadModel:
        from ..models import load_head_model

        spec = self.sequence.model
        try:
            model = load_head_model(spec)
        except (Avatar3DError, ValueError, OSError, ImportError) as e:
            reason = os_error_sentence(e) if isinstance(e, OSError) and not isinstance(e, Avatar3DError) else str(e)
            raise BadInputError(f"{self.directory} was tracked with head model '{spec}', which cannot be loaded here "
                                f"({reason.rstrip('.')})") from None
        if getattr(model, "uvs", None) is None or getattr(model, "uv_faces", None) is None:
            raise BadInputError(f"head model '{spec}' of {self.directory} has no UV layout, so it cannot carry texture maps")
        return model

    def __len__(self) -> int:
        return len(self.frames)

    def fingerprint(self, progress: bool = False) -> dict[str, Any]:
        """SHA-256 of ``params.npz`` and of every frame's image and mask (names and bytes), reading each once.

        Raises :class:`BadInputError` for the first frame whose image or mask is missing.
        """
        from tqdm import tqdm

        params = hashlib.sha256((self.directory / PARAMS_FILE).read_bytes()).hexdigest()
        h = hashlib.sha256()
        for i in tqdm(range(len(self)), desc="check", unit="frame", disable=not progress, leave=False, dynamic_ncols=True):
            for sub, what in (("images", "image"), ("masks", "mask")):
                f = self.frames.file(sub, i)
                if f is None:
                    raise BadInputError(f"frame {i} ({self.frames.name(i)}) of {self.directory} has no {what} in {sub}/; "
                                        f"the tracking directory is incomplete: run 'avatar3d track' into it again")
                h.update(f"{sub}/{f.name}\0".encode())
                h.update(f.read_bytes())
        return {"params_sha256": params, "frames_sha256": h.hexdigest(), "frames": len(self), "model": self.sequence.model,
                "model_version": str(self.sequence.model_version)}


class ProgressFrames(TrackedFrames):
    """:class:`TrackedFrames` that advance a progress bar as the estimator reads images: one bar per pass
    over the video (a read of an earlier frame than the last one starts the next pass)."""

    def __init__(self, frames: TrackedFrames, bar):
        super().__init__(frames.directory, sequence=frames.sequence)
        self.bar, self.passes, self._last = bar, 1, -1

    def image(self, i: int) -> Optional[np.ndarray]:
        i = self._check(i)
        if i <= self._last:
            self.passes += 1
            self.bar.reset()
            self.bar.set_description(f"estimate (pass {self.passes})")
        self._last = i
        out = super().image(i)
        self.bar.update(1)
        return out


class StepBars:
    """``progress(step, done, total)`` for the estimator: a line when a step starts and a bar for steps with
    several units (e.g. the reflectance fit's iterations); ``close()`` ends the last bar."""

    def __init__(self, enabled: bool):
        self.enabled, self.step, self.bar = enabled, None, None

    def __call__(self, step: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if step != self.step:
            self.close()
            self.step = step
            tqdm.write(f"      {step}")
            if total > 1:
                self.bar = tqdm(total=total, desc=step, leave=False, dynamic_ncols=True, position=1)
        if self.bar is not None:
            self.bar.update(max(0, done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _estimate(frames: TrackedFrames, model: HeadModel, options: AppearanceOptions, steps: StepBars) -> AppearanceMaps:
    """:func:`estimate_appearance`, with its per-step progress where it reports one (``progress=``)."""
    import inspect

    if "progress" in inspect.signature(estimate_appearance).parameters:
        try:
            return estimate_appearance(frames, model, options, progress=steps)
        finally:
            steps.close()
    return estimate_appearance(frames, model, options)


def _settings(options: AppearanceOptions, fingerprint: dict) -> dict:
    """The run's settings as JSON values (what the manifest and material.json store, compared as is)."""
    raw = {"options": asdict(options), "input": fingerprint, "avatar3d": __version__}
    return json.loads(json.dumps(raw, sort_keys=True, default=str))


def _written_files(maps: AppearanceMaps) -> list[str]:
    """The files :meth:`AppearanceMaps.save` writes, as named by its material.json."""
    meta = maps.manifest()
    return sorted({*(m["file"] for m in meta["maps"].values()), meta["lighting"], meta["environment"], MATERIAL_FILE})


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, (int, np.integer)) or not 16 <= int(resolution) <= MAX_RESOLUTION:
        raise BadInputError(f"the map resolution must be a whole number of texels from 16 to {MAX_RESOLUTION} "
                            f"(1024 or 2048 for use, 256 or 512 for quick runs), got {resolution!r}")


def _check_output(track_dir: Path, out: Path) -> None:
    if out.resolve() == track_dir.resolve():
        raise BadInputError(f"the appearance maps cannot go into the tracking directory {track_dir} itself (its albedo.png and "
                            f"manifest belong to the tracker); leave out --out to write {default_output(track_dir)}")


class _Stage:
    """The manifest side of the run: is the output up to date, record what was written, drop stale files."""

    def __init__(self, run: RunDirectory, settings: dict):
        self.run, self.settings = run, settings

    def up_to_date(self) -> Optional[dict]:
        """material.json's content when the folder holds a complete result of these settings, else None."""
        rec = self.run.stage(STAGE)
        if not rec or not rec.get("complete") or rec.get("settings") != self.settings:
            return None
        if not all((self.run.path / f).is_file() for f in rec.get("files", [])):
            return None
        try:
            meta = json.loads((self.run.path / MATERIAL_FILE).read_text())
        except (OSError, ValueError):
            return None
        return meta if meta.get("source") == self.settings else None

    def record(self, files: list[str]) -> None:
        """Record ``files`` as the stage's, and remove what an earlier run listed that this one did not write."""
        old = self.run.stage(STAGE) or {}
        self.run.record_stage(STAGE, files, self.settings)
        root = self.run.path.resolve()
        for rel in set(old.get("files", [])) - set(files):
            p = self.run.path / rel
            if p.resolve().is_relative_to(root) and p.resolve() != root and p.is_file():
                p.unlink()


def run_appearance(track_dir: str | Path, out: Optional[str | Path] = None, options: AppearanceOptions = AppearanceOptions(),
                   progress: bool = True, resume: bool = True, model: Optional[HeadModel] = None) -> AppearanceRun:
    """Estimate the appearance maps of a tracking directory and write them to ``out`` (see the module docstring).

    Args:
        track_dir: what ``avatar3d track --out`` wrote.
        out: the output folder; None: ``track_dir/appearance``.
        options: :class:`~.estimate.AppearanceOptions` (``resolution``: texels per side).
        progress: progress bars and stage lines (tqdm, on stderr / stdout as the tracker's).
        resume: False recomputes even when the folder is up to date (``--restart``).
        model: the head model when the caller holds it (None: loaded from ``params.npz``'s spec).
    Returns:
        :class:`AppearanceRun`.
    Raises:
        BadInputError: unusable input (one sentence); RunDirectoryBusyError: another run writes ``out``;
        Avatar3DError: ``out`` cannot be written.
    """
    t_start = time.perf_counter()
    _check_resolution(options.resolution)
    track_dir = Path(track_dir)
    out = default_output(track_dir) if out is None else Path(out)
    _log(f"[1/3] check: {track_dir}", progress)
    source = TrackingInput(track_dir, model)
    _check_output(track_dir, out)
    fingerprint = source.fingerprint(progress)
    settings = _settings(options, fingerprint)
    with ExitStack() as held:
        try:
            run = held.enter_context(RunDirectory(out))  # removed again if the run fails before writing anything
        except OSError as e:
            if isinstance(e, Avatar3DError):
                raise
            raise Avatar3DError(f"cannot write the appearance maps: {os_error_sentence(e)}; choose another folder with --out") from None
        stage = _Stage(run, settings)
        meta = stage.up_to_date() if resume else None
        if meta is not None:
            stats = meta.get("stats", {})
            return AppearanceRun(out, sorted(run.stage(STAGE)["files"]), int(meta.get("resolution", options.resolution)), len(source),
                                 float(stats.get("observed_fraction", float("nan"))), time.perf_counter() - t_start, True)
        return _compute(source, run, stage, options, progress, t_start)


def _compute(source: TrackingInput, run: RunDirectory, stage: _Stage, options: AppearanceOptions, progress: bool,
             t_start: float) -> AppearanceRun:
    """Stages 2-3 inside the locked output folder."""
    from tqdm import tqdm

    t_check = time.perf_counter() - t_start
    n = len(source)
    _log(f"[2/3] estimate: {n} frames, {source.sequence.model} head, {options.resolution}x{options.resolution} maps", progress)
    t0 = time.perf_counter()
    valid = n if source.sequence.valid is None else int(np.count_nonzero(source.sequence.valid))
    with tqdm(total=valid, desc="estimate", unit="frame", disable=not progress, leave=False, dynamic_ncols=True, position=0) as bar:
        maps = _estimate(ProgressFrames(source.frames, bar), source.model, options, StepBars(progress))
    t_estimate = time.perf_counter() - t0
    _log(f"[3/3] save: {run.path}", progress)
    t0 = time.perf_counter()
    if "observed_fraction" not in maps.stats:  # the share of the UV layout some frame saw (0 = prior-filled)
        maps.stats["observed_fraction"] = float(np.mean(np.asarray(maps.coverage) > 0))
    maps.stats["timings_s"] = {"check": round(t_check, 3), "estimate": round(t_estimate, 3)}
    maps.source = stage.settings
    try:
        maps.save(run.path)
    except OSError as e:
        if isinstance(e, Avatar3DError):
            raise
        raise Avatar3DError(f"cannot write the appearance maps: {os_error_sentence(e)}") from None
    files = _written_files(maps)
    stage.record(files)
    return AppearanceRun(run.path, files, maps.resolution, n, float(maps.stats["observed_fraction"]), time.perf_counter() - t_start, False)
