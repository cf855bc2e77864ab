"""What a reconstruct run does: :class:`ReconstructOptions` (the command's flags) and :class:`Plan` (the sizes a preset
picks for every stage), plain data.

==========  ===============  =========  =========  ============================  ========  ================================
preset      track            crop (px)  maps (px)  avatar                        previews  sized for
==========  ===============  =========  =========  ============================  ========  ================================
``quick``   30 fps, <= 300   512        512        256 px, 1200 steps (quick)    256 px    the 4 s demo clip in < 10 min on
            frames                                                                         two cores
``default`` 15 fps           512        1024       512 px, 3600 steps (default)  512 px    a 10-20 s phone clip, ~1 hour
==========  ===============  =========  =========  ============================  ========  ================================

The avatar's own presets (:mod:`avatar3d.avatar.presets`) size the training; a plan may override their resolution
or step count (``avatar_resolution``, ``avatar_iterations``). Timings behind these numbers: see
:mod:`avatar3d.reconstruct.progress`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

from ..errors import BadInputError

__all__ = ["Plan", "PLANS", "DEFAULT_PRESET", "ReconstructOptions", "relight_supported", "parse_model"]


@dataclass(frozen=True)
class Plan:
    """The sizes of every stage of a run.

    Attributes:
        fps: track the video at this frame rate (None: every frame); max_frames: at most this many frames.
        track_resolution: crop side of the tracking (pixels); photometric: the tracker's photometric refinement.
        appearance_resolution: texels per side of the appearance maps.
        avatar_preset: :data:`avatar3d.avatar.presets.PRESETS` name; avatar_resolution / avatar_iterations override it.
        preview_width: width of the rendered previews (pixels); turntable_frames: frames of a turntable (one turn).
    """

    fps: Optional[float] = 15.0
    max_frames: Optional[int] = None
    track_resolution: int = 512
    photometric: bool = False
    appearance_resolution: int = 1024
    avatar_preset: str = "default"
    avatar_resolution: Optional[int] = None
    avatar_iterations: Optional[int] = None
    preview_width: int = 512
    turntable_frames: int = 36


PLANS: dict[str, Plan] = {
    "quick": Plan(fps=30.0, max_frames=300, track_resolution=512, appearance_resolution=512, avatar_preset="quick",
                  preview_width=256, turntable_frames=36),
    "default": Plan(fps=15.0, track_resolution=512, appearance_resolution=1024, avatar_preset="default", preview_width=512,
                    turntable_frames=36),
}
DEFAULT_PRESET = "default"


def relight_supported() -> bool:
    """Whether this build's avatar trainer has the relightable appearance (``AvatarOptions.relightable``)."""
    from ..avatar.train import AvatarOptions

    return "relightable" in {f.name for f in fields(AvatarOptions)}


def parse_model(spec: str) -> str:
    """``builtin``, ``ict``, ``ict=PATH`` or ``flame=PATH`` as given (one sentence for anything else)."""
    s = str(spec).strip()
    kind = s.split("=", 1)[0].lower()
    if kind not in ("builtin", "ict", "flame") or (kind == "builtin" and "=" in s) or (kind == "flame" and "=" not in s):
        raise BadInputError(f"--model takes builtin, ict, ict=PATH or flame=PATH, not {spec!r}")
    return s


@dataclass(frozen=True)
class ReconstructOptions:
    """The flags of ``avatar3d reconstruct``.

    Attributes:
        model: head model spec; preset: a :data:`PLANS` name; plan: sizes set by hand (None: the preset's; tests use
        tiny ones); relightable: train the relightable avatar (None: the default, see :func:`default_relightable`).
        resume: continue the run in the output folder with the settings it recorded; restart: redo every stage.
        progress: the progress display.
    """

    model: str = "builtin"
    preset: str = DEFAULT_PRESET
    plan: Optional[Plan] = None
    relightable: Optional[bool] = None
    resume: bool = False
    restart: bool = False
    progress: bool = True

    def resolved_plan(self) -> Plan:
        if self.plan is not None:
            return self.plan
        if self.preset not in PLANS:
            raise BadInputError(f"unknown preset {self.preset!r}: choose one of {', '.join(PLANS)}")
        return PLANS[self.preset]

    def resolved_relightable(self) -> bool:
        """The relightable flag, checked against this build (one sentence when it cannot train one)."""
        if self.relightable is None:
            return default_relightable()
        if self.relightable and not relight_supported():
            raise BadInputError("this build of avatar3d cannot train a relightable avatar yet (no AvatarOptions.relightable); "
                                "run with --no-relightable")
        return bool(self.relightable)

    def settings(self) -> dict[str, Any]:
        """What reconstruct.json records and a later run compares (JSON values)."""
        return {"model": parse_model(self.model), "preset": self.preset if self.plan is None else "custom",
                "relightable": self.resolved_relightable(), "plan": asdict(self.resolved_plan())}

    @classmethod
    def from_settings(cls, settings: dict[str, Any], **run: Any) -> "ReconstructOptions":
        """The options a run recorded (for ``--resume``), with ``run`` (progress, ...) set."""
        plan = Plan(**{k: v for k, v in settings.get("plan", {}).items() if k in {f.name for f in fields(Plan)}})
        preset = settings.get("preset", DEFAULT_PRESET)
        base = cls(model=settings.get("model", "builtin"), preset=preset if preset in PLANS else DEFAULT_PRESET,
                   plan=None if preset in PLANS and PLANS[preset] == plan else plan, relightable=settings.get("relightable", False))
        return replace(base, **run)


def default_relightable() -> bool:
    """The default of ``--relightable``: on wherever this build has the relightable avatar (what the product promises).
    Measured on the demo clip's track (256 px, one thread): 0.28 CPU seconds a step against 0.14 for the plain colour
    avatar. The quick preset's 1200 steps then fit its 5-minute budget (310 CPU s of one core, about 3.5 minutes on two);
    the default preset's 3600 steps at 512 px take about twice its 30-minute budget (an estimated 50 minutes of one core):
    ``--no-relightable`` halves that."""
    return relight_supported()
