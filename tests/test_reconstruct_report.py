"""``report.html`` of a reconstruct run (avatar3d.reconstruct.report), opened in headless Chromium.

The full run directory is built from real outputs that are cheap to make: the path-traced capture as the tracking
directory (with a tracking metrics.json, an overlay video and its true PBR maps as the appearance maps), the tiny
trained avatar with the evaluation library's metrics.json and held-out images, head.glb from the exporter,
avatar.ply from the 3DGS writer, previews rendered from the avatar and a reconstruct.json. The page must load every
image in a real browser, refer to nothing outside the run, draw something (pixel variance of a screenshot) and
show missing parts of a half-finished run as "not produced" with their stage's status.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatar3d._tensor import torch_threads
from avatar3d.errors import BadInputError
from avatar3d.reconstruct.report import REPORT_FILE, build_report, write_report
from helpers.browser import dump_dom, result_json, screenshot

#: appended to a copy of the report: writes what the browser made of the page into <pre id="result">
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
               sections: document.querySelectorAll('section').length,
               videos: document.querySelectorAll('video').length,
               overflow: document.documentElement.scrollWidth - window.innerWidth};
  const pre = document.createElement('pre'); pre.id = 'result'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
SECTIONS = ("tracking", "appearance", "training", "heldout", "relighting", "expressions", "exports", "timings", "settings")
HOSTILE = "<script>alert(1)</script>&clip.mp4"  # a video name that must come out as text


# ------------------------------------------------------------------------------------------------ building a run
def _tracking_outputs(track: Path, broken_frame: int = 5) -> None:
    """metrics.json (the true parameters' landmarks as the fit, jittered ones as the detections, one frame without a
    face), fitted_landmarks.npy and overlay.mp4 (the crops)."""
    from avatar3d.data.sequence import TrackedSequence
    from avatar3d.models import load_head_model
    from avatar3d.tracking.fitting import project_landmarks
    from avatar3d.tracking.outputs import write_metrics, write_overlay
    from avatar3d.tracking.pipeline import FITTED_FILE

    seq = TrackedSequence.load(track)
    names = list(seq.frame_names)
    g = np.random.default_rng(0)
    with torch_threads(1):
        fitted = project_landmarks(load_head_model(seq.model), seq.shape, seq.expression, seq.pose, seq.transl, seq.K, seq.world_to_cam)
    detected = fitted + g.normal(0, 0.8, fitted.shape)
    valid = np.ones(len(names), bool)
    valid[broken_frame] = False
    write_metrics(track / "metrics.json", fitted, detected, valid, names, {"landmark_fit": 1.0},
                  extra={"model": seq.model, "fps": float(seq.fps), "resolution": int(seq.width)})
    np.save(track / FITTED_FILE, fitted.astype(np.float32))
    frames = [_rgb(track / "images" / f"{n}.png") for n in names]
    write_overlay(track / "overlay.mp4", iter(frames), seq.fps, seq.width, seq.height, progress=False)


def _rgb(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])


def _appearance(capture, out: Path) -> None:
    """The capture's true maps saved as an appearance folder."""
    from avatar3d.appearance.maps import AppearanceMaps
    from avatar3d.render.brdf import F0_PER_SPECULAR

    m = capture.maps()
    AppearanceMaps(albedo=m.albedo, specular=np.clip(m.specular / F0_PER_SPECULAR, 0, 1), roughness=m.roughness, normal=m.normal,
                   displacement=m.displacement, coverage=m.covered.astype(np.float32), sh=np.full((9, 3), 0.1, np.float32),
                   environment=capture.environment()).save(out)


def _previews(run: Path) -> None:
    """Turntable strips and videos, an expressions sheet, the held-out still and video, one more relit still."""
    import cv2

    from avatar3d.avatar.drive import DriveRequest, build_drive, open_avatar
    from avatar3d.avatar.render import render_frames
    from avatar3d.tracking.outputs import write_overlay

    src = open_avatar(run / "avatar")
    out = run / "previews"
    out.mkdir()
    turn = list(render_frames(src.avatar, build_drive(src, DriveRequest(frames=slice(0, 1), yaw=[-40, -20, 0, 20, 40], resolution=96))))
    for env, tint in (("studio", (1.0, 1.0, 1.0)), ("sunset", (1.0, 0.8, 0.6)), ("overcast", (0.8, 0.85, 1.0))):
        frames = [np.round(f * np.asarray(tint)).astype(np.uint8) for f in turn]
        cv2.imwrite(str(out / f"turntable_{env}.png"), np.concatenate(frames, 1)[..., ::-1])
        write_overlay(out / f"turntable_{env}.mp4", iter(frames), 10, frames[0].shape[1], frames[0].shape[0], progress=False)
    faces = list(render_frames(src.avatar, build_drive(src, DriveRequest(frames=slice(0, 6), resolution=96))))
    cv2.imwrite(str(out / "expressions.png"), np.concatenate([np.concatenate(faces[:3], 1), np.concatenate(faces[3:], 1)], 0)[..., ::-1])
    held = sorted((run / "avatar" / "heldout").glob("*.png"))
    shutil.copy(held[0], out / "heldout.png")
    panels = [_rgb(p) for p in held]
    write_overlay(out / "heldout.mp4", iter(panels), 10, panels[0].shape[1], panels[0].shape[0], progress=False)
    cv2.imwrite(str(out / "relit_key_light.png"), turn[2][..., ::-1])


def _reconstruct_json(run: Path, stages: dict, video: str = "d3.mp4") -> None:
    import torch

    from avatar3d import __version__

    info = {"format": "avatar3d-reconstruct", "version": 1, "video": f"/data/videos/{video}",
            "settings": {"model": "builtin", "preset": "quick", "relightable": False, "avatar": {"resolution": 64, "iterations": 40}},
            "versions": {"avatar3d": __version__, "torch": torch.__version__, "numpy": np.__version__}, "stages": stages}
    (run / "reconstruct.json").write_text(json.dumps(info, indent=1))


@pytest.fixture(scope="module")
def full_run(avatar_truth_dir, tiny_avatar, capture, tmp_path_factory) -> Path:
    from avatar3d.avatar.evaluate import evaluate_run
    from avatar3d.export import export
    from avatar3d.export.gaussian_ply import export_avatar_ply

    run = tmp_path_factory.mktemp("reconstruct") / "run"
    track = run / "track"
    shutil.copytree(avatar_truth_dir, track)
    _tracking_outputs(track)
    _appearance(capture, track / "appearance")
    shutil.copytree(tiny_avatar, run / "avatar")
    with torch_threads(1):
        evaluate_run(run / "avatar", track_dir=track, save_images=True)
        export(track, "glb", run / "head.glb")
        export_avatar_ply(run / "avatar", run / "avatar.ply", neutral=True)
        _previews(run)
    done = lambda s, *outs: {"status": "done", "seconds": s, "cpu_seconds": 1.8 * s, "outputs": list(outs)}  # noqa: E731
    previews = sorted(f"previews/{p.name}" for p in (run / "previews").iterdir())
    _reconstruct_json(run, {"track": done(41.5, "track/params.npz", "track/metrics.json", "track/overlay.mp4"),
                            "appearance": done(95.0, "track/appearance/material.json"), "avatar": done(300.2, "avatar/avatar.pt"),
                            "eval": done(12.0, "avatar/metrics.json"), "export": done(8.5, "head.glb", "avatar.ply"),
                            "previews": done(60.0, *previews), "report": {"status": "pending", "seconds": 0.0, "outputs": []}})
    return run


# ------------------------------------------------------------------------------------------------ checks
def _links(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


def _open_in_browser(report: Path, shot: Path) -> dict:
    """The probe's findings for ``report`` in Chromium, and a screenshot in ``shot`` that is not blank."""
    import cv2

    probe = report.with_name("_probe.html")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = result_json(dump_dom(probe))
    screenshot(report, shot, width=1100, height=1600)
    img = cv2.imread(str(shot))
    assert img is not None and float(img.std()) > 20, f"the screenshot {shot} is blank (std {None if img is None else img.std():.1f})"
    return result


def test_full_run_report_renders_every_part(full_run: Path, tmp_path: Path):
    path = write_report(full_run)
    assert path == full_run / REPORT_FILE
    page = path.read_text(encoding="utf-8")
    size = path.stat().st_size
    print(f"report.html of the fixture run: {size / 1e3:.0f} kB")
    assert size < 2_500_000, f"the report is {size / 1e6:.1f} MB: too big to mail"
    assert "not produced" not in page, re.findall(r'<div class="missing">.*?</div>', page)
    assert "could not be drawn" not in page
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in page
    # self-contained: no stylesheet, script or font from elsewhere; every relative link is a file of the run
    links = _links(page)
    assert not [u for u in links if re.match(r"(?i)(https?:)?//", u)]
    assert "<script" not in page and "<link" not in page
    rel = [u for u in links if not u.startswith(("data:", "#"))]
    assert {"track/overlay.mp4", "previews/heldout.mp4", "head.glb", "avatar.ply", "previews/turntable_sunset.mp4"} <= set(rel)
    assert all((full_run / u).is_file() for u in rel), [u for u in rel if not (full_run / u).is_file()]
    # the numbers come from the files: the held-out PSNR of metrics.json, the Gaussians of the PLY, the GLB's contents
    metrics = json.loads((full_run / "avatar" / "metrics.json").read_text())
    assert f"{metrics['rows']['avatar']['psnr']:.2f}" in page
    assert "textured-mesh baseline" in page and metrics["rows"]["baseline"] is not None
    assert re.search(r"morph targets</td><td>[1-9]", page)
    assert "8 min 37 s" in page and "15 min 31 s" in page  # the stages' total wall and CPU time
    result = _open_in_browser(path, tmp_path / "report_full.png")
    # overlay stills 4, NME, maps 6 + light, training, held-out plot + still, 3 turntables, 1 relit, expressions
    assert result["images"] >= 19 and result["broken"] == [], result
    assert result["sections"] == len(SECTIONS) and result["videos"] == 5, result
    assert result["overflow"] <= 0, f"the page is wider than the window by {result['overflow']} px"


def test_half_finished_run_shows_what_is_missing(avatar_truth_dir, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(avatar_truth_dir, run / "track")
    _tracking_outputs(run / "track")
    (run / "track" / "overlay.mp4").unlink()  # the stills then come from the crops and fitted landmarks
    _reconstruct_json(run, {"track": {"status": "done", "seconds": 30.0, "outputs": ["track"]},
                            "appearance": {"status": "failed", "seconds": 2.0, "outputs": [], "error": "the maps <ran out> of memory"},
                            "avatar": {"status": "pending", "seconds": 0.0, "outputs": [], "note": "interrupted at step 120"}},
                      video=HOSTILE)
    page = write_report(run).read_text(encoding="utf-8")
    missing = re.findall(r'<div class="missing"><b>(.*?): not produced</b>.*?</div>', page)
    assert len(missing) >= 10, missing
    assert "the appearance maps" in missing and any(m.startswith("head.glb") for m in missing)
    assert re.search(r"the appearance maps: not produced</b> · stage <code>appearance</code>: <span class=\"badge failed\">failed", page)
    assert "the maps &lt;ran out&gt; of memory" in page  # the stage's error, as text
    assert re.search(r"the training log.*?stage <code>avatar</code>: <span class=\"badge pending\">pending.*?interrupted at step 120", page)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;&amp;clip.mp4" in page
    assert "Landmark error over time" in page and "tracked crops with the fitted landmarks" in page
    result = _open_in_browser(run / REPORT_FILE, tmp_path / "report_half.png")
    assert result["images"] == 5 and result["broken"] == [], result  # 4 crops and the NME chart


def test_unreadable_files_do_not_stop_the_report(tmp_path: Path):
    run = tmp_path / "run"
    (run / "avatar").mkdir(parents=True)
    (run / "track").mkdir()
    (run / "reconstruct.json").write_text("{not json")
    (run / "avatar" / "metrics.json").write_text('{"rows": {"avatar": {"psnr": "nan?"}}, "per_frame": 3}')
    (run / "avatar" / "train_log.csv").write_text("step,seconds,loss,psnr,gaussians\n")
    (run / "track" / "metrics.json").write_text('{"summary": {"nme_mean": null}, "per_frame": [{"nme": "x"}]}')
    (run / "head.glb").write_bytes(b"not a glb at all, just bytes" * 4)
    (run / "avatar.ply").write_bytes(b"\x00\x01")
    (run / "track" / "overlay.mp4").write_bytes(b"\x00" * 64)
    (run / "previews").mkdir()
    (run / "previews" / "turntable_studio.png").write_bytes(b"\x89PNG broken")
    (run / "previews" / "extra.png").write_bytes(b"")
    page = build_report(run)
    assert page.count("<section") == len(SECTIONS)
    assert "head.glb" in page and "not readable" in page
    assert "could not be drawn (ValueError: the training log has no steps yet)" in page
    assert "timings (reconstruct.json): not produced" in page
    assert "the studio turntable (previews/turntable_studio.png): not produced" in page
    with pytest.raises(BadInputError, match="no run folder"):
        write_report(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
