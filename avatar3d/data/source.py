"""A SOURCE argument naming a head: a head-model spec or a tracking output directory.

One resolver for the commands that take either (``view``, ``export``, and the stages that read a
tracked performance); what each does with the result (a viewer, an exporter) stays with it. Video and
image inputs are a different kind of source: :class:`avatar3d.capture.video.FrameSource`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import BadInputError
from .sequence import PARAMS_FILE, TrackedSequence

__all__ = ["HeadSource", "resolve_head_source", "MODEL_SPECS"]

#: how the messages name the head-model specs
MODEL_SPECS = "builtin, ict, ict=PATH, flame=PATH"


@dataclass
class HeadSource:
    """What a SOURCE names: the head model to load and, for a tracking directory, its sequence."""

    model_spec: str  #: spec for ``load_head_model``: SOURCE itself, or the one stored in the sequence
    sequence: Optional[TrackedSequence] = None
    directory: Optional[Path] = None  #: the tracking output directory, when SOURCE was one

    @property
    def is_sequence(self) -> bool:
        return self.sequence is not None


def resolve_head_source(spec: str | Path, known_models: Optional[tuple[str, ...]] = None, what: str = "source") -> HeadSource:
    """Classify ``spec``: a directory must be a tracking output (``params.npz``, loaded here); anything
    else is a head-model spec.

    Args:
        known_models: when given, a spec whose name is not one of these is refused here with one
            sentence (an existing file, or an unknown name); otherwise ``load_head_model`` judges it.
        what: how that sentence names the argument ("export source").
    Raises:
        BadInputError: a directory without ``params.npz`` (or a corrupt one), a file, an unknown name.
    """
    s = str(spec)
    p = Path(s)
    if p.is_dir():
        if not (p / PARAMS_FILE).is_file():
            raise BadInputError(f"{p} is not a tracking or avatar output directory (no {PARAMS_FILE}); pass a head model "
                                f"({MODEL_SPECS}) or create one with 'avatar3d track VIDEO --out {p}'")
        seq = TrackedSequence.load(p)
        return HeadSource(seq.model, seq, p)
    if known_models is not None and s.partition("=")[0].strip().lower() not in known_models:
        if p.exists():
            raise BadInputError(f"{p} is a file; SOURCE must be a head model ({MODEL_SPECS}) or a tracking output directory")
        raise BadInputError(f"unknown {what} {s!r}: expected a head model ({MODEL_SPECS}) or an existing tracking output directory")
    return HeadSource(s)
