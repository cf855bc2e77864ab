"""``DIR/report.html``: one self-contained page about a reconstruct run, written from the run directory's files alone.

:func:`write_report` reads the layout that ``avatar3d reconstruct`` writes (``track/`` with ``appearance/``,
``avatar/``, ``head.glb``, ``avatar.ply``, ``previews/``, ``reconstruct.json``) and writes ``report.html`` atomically:
a header (video, head model, preset, date, total time, key numbers), then tracking (overlay stills, landmark error
over time), the appearance maps, training curves, held-out metrics against the textured-mesh baseline, relit
turntables, the expressions sheet, the exports, timings per stage and the versions and settings.

Images are embedded as data URIs (downscaled; JPEG for photographs, PNG for charts) and the videos and exports are
linked by relative path, so the page opens offline, beside the run or mailed alone. Whatever is missing or
unreadable shows as "not produced" with the status of the stage that makes it (from ``reconstruct.json``); a
section that fails to draw says why, and the rest of the page is still written.
"""

from __future__ import annotations

import csv
import json
import struct
import time
from html import escape
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .. import __version__
from ..data.atomic import write_text
from ..errors import BadInputError
from . import report_plots as plots
from . import report_template as T

__all__ = ["write_report", "build_report", "RunFiles", "REPORT_FILE", "turntable_environments"]

REPORT_FILE = "report.html"
MAP_INFO = {"albedo": "diffuse colour (sRGB)", "specular": "specular intensity", "roughness": "roughness",
            "normal": "tangent-space normals", "displacement": "displacement (stretched to its range)",
            "coverage": "how well each texel was seen (black: never)"}
METRIC_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "face_psnr": "face PSNR (dB)", "face_ssim": "face SSIM", "lpips": "LPIPS"}
LOWER_IS_BETTER = {"lpips"}
PHOTO = dict(max_width=1100, max_height=900)  # a full-width still
STRIP = dict(max_width=1600, max_height=600)  # a strip of stills: sharper, as the page shrinks it to the column
THUMB = dict(max_width=320, max_height=320)  # one cell of a grid


class RunFiles:
    """The run directory as the report reads it: files by relative path, parsed JSON cached, ``reconstruct.json``'s
    stages."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._json: dict[str, Optional[dict]] = {}
        self.info = self.json("reconstruct.json") or {}

    def file(self, rel: str) -> Optional[Path]:
        """The path of ``rel`` when it is a non-empty file, else None."""
        p = self.path / rel
        return p if p.is_file() and p.stat().st_size > 0 else None

    def json(self, rel: str) -> Optional[dict]:
        """``rel`` parsed (None: absent or not a JSON object)."""
        if rel not in self._json:
            p = self.file(rel)
            try:
                data = json.loads(p.read_text(encoding="utf-8")) if p else None
            except (OSError, ValueError):
                data = None
            self._json[rel] = data if isinstance(data, dict) else None
        return self._json[rel]

    @property
    def stages(self) -> dict[str, dict]:
        st = self.info.get("stages")
        return {str(k): v for k, v in st.items() if isinstance(v, dict)} if isinstance(st, dict) else {}

    @property
    def settings(self) -> dict:
        s = self.info.get("settings")
        return s if isinstance(s, dict) else {}

    def stage(self, name: str, rel: str = "") -> tuple[str, dict]:
        """The stage that makes ``rel``: the one listing it among its outputs, else stage ``name`` (reconstruct's
        stages: track, appearance, avatar, eval, export, previews, report), else the one listing a folder above it;
        its name and record ({} when unrecorded)."""
        stages = self.stages
        above: list[tuple[int, str]] = []
        for n, st in stages.items():
            for out in st.get("outputs") or []:
                o = str(out).rstrip("/")
                if rel and o == rel:
                    return n, st
                if rel and o and rel.startswith(o + "/"):
                    above.append((len(o), n))
        if name in stages or not above:
            return name, stages.get(name, {})
        n = max(above)[1]
        return n, stages[n]

    def missing(self, what: str, stage: str, rel: str = "") -> str:
        """The "not produced" box for ``what`` (the file or folder ``rel``, made by ``stage``)."""
        name, st = self.stage(stage, rel)
        why = st.get("error") or st.get("note")
        return T.missing(what, name, str(st.get("status", "pending")), str(why) if why else None)

    def status(self, stage: str) -> str:
        return str(self.stage(stage)[1].get("status", "pending"))


# ------------------------------------------------------------------------------------------------ small readers
def _num(x: Any) -> Optional[float]:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _fmt(x: Any, digits: int = 2, suffix: str = "") -> str:
    v = _num(x)
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def video_stills(path: Path, count: int = 4) -> list[np.ndarray]:
    """``count`` evenly spaced frames ((H, W, 3) uint8 RGB) of a video; [] when it cannot be read."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        out = []
        for i in np.linspace(0, max(n - 1, 0), count).round().astype(int) if n > 0 else []:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, frame = cap.read()
            if ok and frame is not None:
                out.append(np.ascontiguousarray(frame[..., ::-1]))
        return out
    finally:
        cap.release()


def crop_stills(track: Path, count: int = 4) -> list[np.ndarray]:
    """``count`` evenly spaced crops ((H, W, 3) uint8 RGB) of a tracking directory, with the fitted landmarks
    (``fitted_landmarks.npy``, (N, P, 2) crop pixels in ``params.npz``'s frame order) drawn red where present."""
    import cv2

    names = sorted(p.stem for p in (track / "images").glob("*.png"))
    try:
        with np.load(track / "params.npz") as z:
            names = json.loads(str(z["meta"]))["frame_names"] or names
    except (OSError, KeyError, ValueError):
        pass
    try:
        marks = np.load(track / "fitted_landmarks.npy")
    except (OSError, ValueError):
        marks = None
    out = []
    for i in np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int) if names else []:
        img = T.read_image(track / "images" / f"{names[i]}.png")
        if img is None:
            continue
        if marks is not None and i < len(marks):
            r = max(1, img.shape[1] // 160)
            for x, y in np.asarray(marks[i])[:, :2]:
                cv2.circle(img, (int(round(x)), int(round(y))), r, (230, 40, 40), -1, cv2.LINE_AA)
        out.append(img)
    return out


def read_train_log(path: Path) -> dict[str, np.ndarray]:
    """``train_log.csv`` (step, seconds, loss, psnr, gaussians) as (n,) float arrays, one per column."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError("the training log has no steps yet")
    return {k: np.asarray([_num(r.get(k)) if _num(r.get(k)) is not None else np.nan for r in rows], np.float64)
            for k in ("step", "seconds", "loss", "psnr", "gaussians")}


def glb_summary(path: Path) -> dict[str, Any]:
    """What a binary glTF holds, from its JSON chunk: meshes, vertices, morph targets, materials, textures, joints and
    animations (name, seconds)."""
    with open(path, "rb") as f:
        magic, _, _ = struct.unpack("<4sII", f.read(12))
        length, kind = struct.unpack("<II", f.read(8))
        if magic != b"glTF" or kind != 0x4E4F534A:
            raise ValueError("not a binary glTF file")
        doc = json.loads(f.read(length))
    acc = doc.get("accessors", [])
    prims = [p for m in doc.get("meshes", []) for p in m.get("primitives", [])]
    anims = []
    for a in doc.get("animations", []):
        ends = [acc[s["input"]].get("max", [0])[0] for s in a.get("samplers", []) if s.get("input", -1) < len(acc)]
        anims.append(f"{a.get('name', 'animation')} ({max(ends, default=0):.1f} s)")
    return {"meshes": len(doc.get("meshes", [])), "vertices": sum(acc[p["attributes"]["POSITION"]]["count"] for p in prims),
            "morph targets": max((len(p.get("targets", [])) for p in prims), default=0),
            "materials": ", ".join(m.get("name", "?") for m in doc.get("materials", [])) or "0",
            "textures": len(doc.get("textures", [])), "joints": sum(len(s.get("joints", [])) for s in doc.get("skins", [])),
            "animations": ", ".join(anims) or "none"}


def ply_summary(path: Path) -> dict[str, Any]:
    """A 3DGS PLY's header: the number of Gaussians and their spherical-harmonics degree."""
    props, count = [], None
    with open(path, "rb") as f:
        for _ in range(400):
            line = f.readline().decode("ascii", "replace").strip()
            if line.startswith("element vertex"):
                count = int(line.split()[-1])
            elif line.startswith("property"):
                props.append(line.split()[-1])
            elif line == "end_header" or not line:
                break
    rest = sum(p.startswith("f_rest_") for p in props)
    degree = int(round(np.sqrt(rest / 3 + 1))) - 1 if rest else 0
    return {"Gaussians": count if count is not None else "?", "SH degree": degree, "properties": len(props)}


# ------------------------------------------------------------------------------------------------ sections
def _header(run: RunFiles) -> str:
    track = (run.json("track/metrics.json") or {}).get("summary", {})
    video = run.info.get("video") or track.get("source") or run.path.name
    model = run.settings.get("model") or track.get("model") or "-"
    preset = run.settings.get("preset") or "-"
    stamp = run.info.get("finished") or run.info.get("date")
    if not stamp:
        p = run.file("reconstruct.json")
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.stat().st_mtime if p else time.time()))
    total = sum(_num(s.get("seconds")) or 0.0 for s in run.stages.values())
    meta = [("model", model), ("preset", preset), ("date", stamp), ("total time", T.human_seconds(total) if run.stages else "-")]
    if isinstance(run.settings.get("relightable"), bool):
        meta.insert(2, ("relightable", "yes" if run.settings["relightable"] else "no"))
    cards = _cards(run, track)
    return (f"<header><h1>{escape(Path(str(video)).name)}</h1><div class=\"meta\">"
            + "".join(f"<span>{escape(k)} <b>{escape(str(v))}</b></span>" for k, v in meta)
            + "</div>" + (f'<div class="cards">{cards}</div>' if cards else "") + "</header>")


def _cards(run: RunFiles, track: dict) -> str:
    cards = []
    rows = (run.json("avatar/metrics.json") or {}).get("rows") or {}
    a, b = rows.get("avatar") or {}, rows.get("baseline") or {}
    if _num(a.get("psnr")) is not None:
        vs = f" (mesh {_fmt(b.get('psnr'), 1)})" if _num(b.get("psnr")) is not None else ""
        cards.append(("held-out PSNR", f"{_fmt(a.get('psnr'), 1)} dB{vs}"))
    if _num(a.get("ssim")) is not None:
        cards.append(("held-out SSIM", _fmt(a.get("ssim"), 3)))
    if _num(track.get("nme_mean")) is not None:
        cards.append(("tracking NME", f"{_fmt(track['nme_mean'] * 100, 2)} %"))
    if track.get("frames"):
        cards.append(("frames tracked", f"{int(track['frames']) - int(track.get('failures') or 0)} / {int(track['frames'])}"))
    return "".join(f"<div><span>{escape(k)}</span><b>{escape(v)}</b></div>" for k, v in cards)


def _tracking(run: RunFiles) -> str:
    metrics = run.json("track/metrics.json")
    has_track = run.file("track/params.npz") or metrics or (run.path / "track" / "images").is_dir()
    if not has_track:
        return run.missing("the tracking", "track", "track")
    parts = []
    overlay = run.file("track/overlay.mp4")
    stills = video_stills(overlay) if overlay else []
    caption = "the fitted head over the video (red: fitted landmarks, green: detected)"
    if not stills:
        stills = crop_stills(run.path / "track")
        caption = "tracked crops with the fitted landmarks (no overlay video)"
    if stills:
        figs = [T.figure(T.image_uri(s, **THUMB), alt=f"tracking still {i + 1}") for i, s in enumerate(stills)]
        parts.append(T.gallery(figs, cls="four") + T.note(caption))
    if overlay:
        parts.append(T.video("track/overlay.mp4", "the whole tracking overlay"))
    if metrics is None:
        parts.append(run.missing("tracking metrics (track/metrics.json)", "track", "track/metrics.json"))
        return "\n".join(parts)
    s = metrics.get("summary") or {}
    per = [r for r in metrics.get("per_frame") or [] if isinstance(r, dict)]
    if per:
        nme = np.asarray([_num(r.get("nme")) if _num(r.get("nme")) is not None else np.nan for r in per])
        valid = np.asarray([bool(r.get("valid", True)) for r in per])
        parts.append("<h3>Landmark error over time</h3>" + T.figure(T.png_uri(plots.nme_plot(nme, valid, _num(s.get("fps")))),
                     "NME: mean distance of the fitted to the detected landmarks over the inter-ocular distance"))
    pct = lambda k: _fmt((_num(s.get(k)) or 0) * 100, 2, " %") if _num(s.get(k)) is not None else "-"  # noqa: E731
    rows = [("frames", s.get("frames", "-")), ("frames without a face", s.get("failures", "-")),
            ("NME mean / median / max", f"{pct('nme_mean')} / {pct('nme_median')} / {pct('nme_max')}"),
            ("landmark error (px)", _fmt(s.get("error_px_mean"), 2)),
            ("jitter fitted / detected (px/frame²)", f"{_fmt(s.get('jitter_fitted_px'))} / {_fmt(s.get('jitter_detected_px'))}"),
            ("head model", f"{s.get('model', '-')} {s.get('model_version', '')}".strip()),
            ("frame rate / crop size", f"{_fmt(s.get('fps'), 1)} fps / {s.get('resolution', '-')} px")]
    parts.append(T.kv_table(rows))
    return "\n".join(parts)


def _appearance(run: RunFiles) -> str:
    folder = "track/appearance"
    material = run.json(f"{folder}/material.json") or {}
    maps = material.get("maps") if isinstance(material.get("maps"), dict) else {}
    figs = []
    for name in list(MAP_INFO) + [k for k in maps if k not in MAP_INFO]:
        info = maps.get(name) if isinstance(maps.get(name), dict) else {}
        p = run.file(f"{folder}/{info.get('file') or name + '.png'}")
        img = T.read_image(p) if p else None
        if img is not None:
            figs.append(T.figure(T.image_uri(img, **THUMB), f"{name}: {MAP_INFO.get(name, '')}".rstrip(": ")))
    env = run.file(f"{folder}/environment.hdr")
    if env:
        try:
            figs.append(T.figure(T.image_uri(_tonemap_hdr(env), **THUMB), "environment: the light of the capture"))
        except Exception:  # noqa: BLE001 - an unreadable light map leaves the others on the page
            pass
    if not figs:
        return run.missing("the appearance maps", "appearance", folder)
    res = material.get("resolution")
    lead = T.note(f"PBR maps in the head model's UV layout ({res} x {res} texels), which head.glb carries.") if res else ""
    return lead + T.gallery(figs)


def _tonemap_hdr(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 sRGB of an equirectangular HDR map, exposed so that its 99th percentile is white."""
    from ..render.color import srgb_encode
    from ..render.lighting import EnvironmentMap

    rad = np.asarray(EnvironmentMap.read(path).pixels, np.float64)
    scale = max(float(np.percentile(rad, 99)), 1e-9)
    return np.round(np.clip(np.asarray(srgb_encode(np.clip(rad / scale, 0, 1))), 0, 1) * 255).astype(np.uint8)


def _training(run: RunFiles) -> str:
    log = run.file("avatar/train_log.csv")
    if log is None:
        curve = run.file("avatar/train_curve.png")
        img = T.read_image(curve) if curve else None
        return T.figure(T.image_uri(img, jpeg=False, **PHOTO), "training curve") if img is not None else \
            run.missing("the training log (avatar/train_log.csv)", "avatar", "avatar/train_log.csv")
    d = read_train_log(log)
    tail = d["psnr"][-50:]
    rows = [("steps", int(np.nanmax(d["step"]))), ("training time", T.human_seconds(_num(np.nanmax(d["seconds"])))),
            ("PSNR of the last 50 steps (trained frames)", _fmt(np.nanmean(tail) if np.isfinite(tail).any() else None, 2, " dB")),
            ("Gaussians at the end", f"{int(d['gaussians'][-1]):,}" if np.isfinite(d["gaussians"][-1]) else "-")]
    fig = T.figure(T.png_uri(plots.training_plot(d["seconds"], d["loss"], d["psnr"])),
                   "loss and PSNR of each step's frames (faint) and their running mean (bold) against wall time")
    return fig + T.kv_table(rows)


def _heldout(run: RunFiles) -> str:
    m = run.json("avatar/metrics.json")
    parts = []
    if m is None:
        parts.append(run.missing("held-out metrics (avatar/metrics.json)", "eval", "avatar/metrics.json"))
    else:
        parts.append(_metrics_table(m))
        per = m.get("per_frame") or {}
        a = (per.get("avatar") or {}).get("psnr")
        b = (per.get("baseline") or {}).get("psnr") if per.get("baseline") else None
        if a:
            names = m.get("frame_names") or [str(i) for i in range(len(a))]
            parts.append(T.figure(T.png_uri(plots.heldout_plot(a, b, names)), "PSNR of each held-out frame"))
    still, caption = run.file("previews/heldout.png"), "video | avatar | textured-mesh baseline | the avatar's error (x4)"
    if still is None:  # the evaluation's own comparison images
        shots = sorted((run.path / "avatar" / "heldout").glob("*.png"))
        still = shots[len(shots) // 2] if shots else None
    img = T.read_image(still) if still else None
    if img is not None:
        parts.append(T.figure(T.image_uri(img, **PHOTO), f"{still.relative_to(run.path).as_posix()}: {caption}", full=True))
    else:
        parts.append(run.missing("the held-out still (previews/heldout.png)", "previews", "previews/heldout.png"))
    if run.file("previews/heldout.mp4"):
        parts.append(T.video("previews/heldout.mp4", "held-out frames: video beside avatar", wide=True))
    return "\n".join(parts)


def _metrics_table(m: dict) -> str:
    rows = m.get("rows") or {}
    a, b, d = (rows.get(k) or {} for k in ("avatar", "baseline", "difference"))
    keys = [k for k in METRIC_LABELS if k in a] + [k for k in a if k not in METRIC_LABELS]
    keys = [k for k in keys if _num(a.get(k)) is not None or _num(b.get(k)) is not None]  # LPIPS without its package: a note
    body, classes = [], []
    for k in keys:
        digits = 2 if "psnr" in k else 3
        diff = _num(d.get(k))
        good = None if diff is None or diff == 0 else (diff < 0) == (k in LOWER_IS_BETTER)
        body.append((METRIC_LABELS.get(k, k), _fmt(a.get(k), digits), _fmt(b.get(k), digits),
                     "-" if diff is None else f"{diff:+.{digits}f}"))
        classes.append(("", "", "", "" if good is None else ("better" if good else "worse")))
    notes = [f"{len(m.get('frames') or [])} held-out frames (never trained on) at {m.get('resolution', '?')} px."]
    base = m.get("baseline") or {}
    notes.append(f"Baseline: {base.get('source', 'none')}.")
    if not (m.get("lpips") or {}).get("available", True):
        notes.append(f"LPIPS: {(m.get('lpips') or {}).get('note', 'unavailable')}.")
    table = T.table(("metric", "avatar", "textured-mesh baseline", "avatar − baseline"), body, (False, True, True, True), classes)
    return table + T.note(" ".join(notes))


def turntable_environments(previews: Path) -> list[str]:
    """The environments of the turntables: the generated ones (:data:`avatar3d.render.lighting.ENVIRONMENTS`, which
    the previews stage renders), then any other ``turntable_<env>.png|mp4`` in ``previews``."""
    from ..render.lighting import ENVIRONMENTS

    found = sorted({p.stem[len("turntable_"):] for p in previews.glob("turntable_*.*") if p.suffix in (".png", ".mp4")})
    return list(ENVIRONMENTS) + [e for e in found if e and e not in ENVIRONMENTS]


def _relighting(run: RunFiles) -> str:
    note = run.stage("previews")[1].get("note")  # e.g. what the turntables show when the avatar cannot be relit
    parts, known = [T.note(str(note))] if note else [], {"heldout.png", "expressions.png"}
    videos = []
    for env in turntable_environments(run.path / "previews"):
        png, mp4 = f"previews/turntable_{env}.png", f"previews/turntable_{env}.mp4"
        known.add(Path(png).name)
        p = run.file(png)
        img = T.read_image(p) if p else None
        parts.append(f"<h3>{escape(env)}</h3>")
        if img is not None:
            parts.append(T.figure(T.image_uri(img, **STRIP), f"a turn of the head under the {env} environment map", full=True))
        else:
            parts.append(run.missing(f"the {env} turntable ({png})", "previews", png))
        if run.file(mp4):
            videos.append(T.video(mp4, f"turntable, {env}"))
    if videos:  # side by side: three players one under the other would fill screens with black
        parts.append("<h3>Turntable videos</h3>" + T.gallery(videos))
    others = [p for p in sorted((run.path / "previews").glob("*.png")) if p.name not in known and p.stat().st_size]
    figs = [T.figure(T.image_uri(img, **PHOTO), p.stem.replace("_", " ")) for p in others if (img := T.read_image(p)) is not None]
    if figs:
        parts.append("<h3>More relit stills</h3>" + T.gallery(figs, cls="wide"))
    return "\n".join(parts)


def _expressions(run: RunFiles) -> str:
    p = run.file("previews/expressions.png")
    img = T.read_image(p) if p else None
    if img is None:
        return run.missing("the expressions sheet (previews/expressions.png)", "previews", "previews/expressions.png")
    return T.figure(T.image_uri(img, **PHOTO), "expressions set by hand, rendered by the avatar", full=True)


def _exports(run: RunFiles) -> str:
    parts = []
    for rel, what, reader, use in (("head.glb", "the head as a mesh (glTF 2.0)", glb_summary, "any glTF viewer or engine"),
                                   ("avatar.ply", "the avatar as 3D Gaussians (neutral)", ply_summary,
                                    "3D Gaussian splatting viewers; `avatar3d view avatar` plays the animated avatar")):
        p = run.file(rel)
        if p is None:
            parts.append(run.missing(f"{rel} ({what})", "export", rel))
            continue
        try:
            facts = list(reader(p).items())
        except Exception as e:  # noqa: BLE001 - a file the report cannot parse is still linked
            facts = [("contents", f"not readable ({e})")]
        parts.append(f"<h3>{T.link(rel)} · {T.human_bytes(p.stat().st_size)}</h3>" + T.note(f"{what}; opens in {use}.")
                     + T.kv_table(facts))
    return "\n".join(parts)


def _timings(run: RunFiles) -> str:
    stages = run.stages
    if not stages:
        return T.missing("timings (reconstruct.json)", None, "pending")
    secs = {k: _num(v.get("seconds")) or 0.0 for k, v in stages.items()}
    cpu = {k: _num(v.get("cpu_seconds")) for k, v in stages.items()}
    top = max(max(secs.values()), 1e-9)
    rows = []
    for name, st in stages.items():
        why = st.get("error") or st.get("note")
        rows.append(f"<tr><td>{escape(name)}</td><td>{T.badge(str(st.get('status', 'pending')))}</td>"
                    f"<td class=\"num\">{escape(T.human_seconds(secs[name]))}</td><td class=\"num\">{escape(T.human_seconds(cpu[name]))}</td>"
                    f"<td style=\"width:35%\"><div class=\"bar\" style=\"width:{100 * secs[name] / top:.1f}%\"></div></td>"
                    f"<td>{escape(str(why)) if why else ''}</td></tr>")
    total_cpu = [c for c in cpu.values() if c is not None]
    foot = (f"<tr><th>total</th><th></th><th class=\"num\">{escape(T.human_seconds(sum(secs.values())))}</th>"
            f"<th class=\"num\">{escape(T.human_seconds(sum(total_cpu)) if total_cpu else '-')}</th><th></th><th></th></tr>")
    head = "<tr><th>stage</th><th>status</th><th>wall time</th><th>CPU time</th><th></th><th>note</th></tr>"
    return (f'<div class="scroll"><table><thead>{head}</thead><tbody>{"".join(rows)}{foot}</tbody></table></div>'
            + T.note("Wall time of each stage (summed over resumed parts); CPU time: of the process, all its threads."))


def _settings(run: RunFiles) -> str:
    if not run.info:
        return T.missing("versions and settings (reconstruct.json)", None, "pending")
    versions = run.info.get("versions") if isinstance(run.info.get("versions"), dict) else {}
    return ("<h3>Settings</h3>" + T.kv_table(_flatten(run.settings)) + "<h3>Versions</h3>"
            + T.kv_table(sorted(versions.items())) + T.note(f"reconstruct.json format version {run.info.get('version', '?')}; "
                                                              f"video {run.info.get('video', '?')}"))


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else v))
    return out


#: (anchor, title, the stage whose status the heading shows, the section's body)
SECTIONS: Sequence[tuple[str, str, Optional[str], Callable[[RunFiles], str]]] = (
    ("tracking", "Tracking", "track", _tracking),
    ("appearance", "Appearance maps", "appearance", _appearance),
    ("training", "Avatar training", "avatar", _training),
    ("heldout", "Held-out frames", "eval", _heldout),
    ("relighting", "Relit turntables", "previews", _relighting),
    ("expressions", "Expressions", "previews", _expressions),
    ("exports", "Exports", "export", _exports),
    ("timings", "Timings", None, _timings),
    ("settings", "Versions and settings", None, _settings),
)


def _guarded(fn: Callable[[RunFiles], str], run: RunFiles) -> str:
    """A section's body, or a sentence saying why it could not be drawn (one bad file never costs the whole page)."""
    try:
        return fn(run)
    except Exception as e:  # noqa: BLE001 - the report must be written whatever the run left behind
        return T.missing(f"this section could not be drawn ({type(e).__name__}: {e})", None, "failed")


def build_report(run_dir: str | Path) -> str:
    """The report's HTML for the run directory ``run_dir``."""
    run = RunFiles(Path(run_dir))
    header = _guarded(_header, run)
    if not header.startswith("<header"):
        header = f"<header><h1>{escape(Path(run_dir).name)}</h1>{header}</header>"
    body = [T.section(a, title, _guarded(fn, run), run.status(stage) if stage and run.stages else None)
            for a, title, stage, fn in SECTIONS]
    video = Path(str(run.info.get("video") or run.path.name)).name
    footer = f"avatar3d {__version__} · written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from the files of {run.path.name}/"
    return T.page(f"avatar3d report: {video}", header, [(a, t) for a, t, _, _ in SECTIONS], body, footer)


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (atomically) from the run directory's files and return its path.

    Raises:
        BadInputError: ``run_dir`` is not a folder.
    """
    if not Path(run_dir).is_dir():
        raise BadInputError(f"there is no run folder {run_dir} to report on; `avatar3d reconstruct VIDEO --out DIR` makes one")
    return write_text(Path(run_dir) / REPORT_FILE, build_report(run_dir))
