"""How MediaPipe reports a head model: the landmarks the fit should expect, measured on renders.

MediaPipe's face mesh is a learned face. On renders of the built-in head (mean identity, three head
turns, :func:`measure_response`) it reports 0.6-0.8 of jawOpen's chin and lip motion and also drops
the mouth corners by 4-7 px, which the mesh's jawOpen does not move; browInnerUp ~0.4; cheekPuff
and noseSneer ~0.1; and on the neutral mean face its points sit up to ~1 cm from the embedding
(flatter than the mesh). A landmark fit that compares detections with the mesh's own landmarks
explains an open jaw as jawOpen ~0.22 (true 0.8) plus mouthLowerDown / mouthStretch / mouthRight
(rendered ground truth: chin 7 mm off, face RMS 2.13 mm), and the flat face as a longer focal length
(565 px for 441).

So the fit gets MediaPipe's view of the model instead: for every expression and identity
coefficient and every landmark a model-space displacement per unit coefficient, plus an offset of
the neutral landmarks, lifted from MediaPipe's measured 2D motion at the three head turns (least
squares through each view's projection Jacobian, pulled towards the mesh's own displacement where
the views leave it undetermined, e.g. depth). :class:`~avatar3d.tracking.landmark_model.LandmarkHead`
uses these rows for its landmark points; the coefficients keep their meaning, so vertices, exports
and renders are unchanged. Measured effect: rendered ground truth 2.13 -> 1.23 mm (focal 464 px),
other identities 2.5 / 2.7 -> 1.8 / 1.9 mm, real-video NME 2.2-3.2% -> 1.7-2.6% (the table is
measured on renders, and describes MediaPipe on real faces too).

The table is linear, and MediaPipe is not (a smile under an open jaw, the far side of a turned
head): the same file also holds a small network trained on 24,000 random renders that adds the
non-linear rest (:mod:`~avatar3d.calibration.detector_correction`).

The neutral face's depth is the one thing the table measures poorly and the network well. Three
turns of ±0.25 rad barely separate a landmark's depth from its position, so the table's offset keeps
the mesh's depth where MediaPipe's face is flatter; the network, trained on turns to ±0.5 rad, learned
that flattening as a constant output. The fit anchors the network at zero for the neutral face (so that
it cannot hold the lips apart there), which also threw that depth away: the face the fit compared with
MediaPipe was deeper than MediaPipe's, and the perspective that depth implies put the focal length
7.7% too long on the rendered ground truth (1.077x; 1.017x with the network's depth, a second identity
1.023x; face RMS 1.115 -> 1.062 mm). :func:`fold_neutral_depth` therefore moves the network's neutral
depth into the offset: in-plane the offset stays measured (the lips still close), its depth is the network's.
On the shared videos the built-in head's NME moved by -0.017 to +0.018 points (2026-12-08).

Only models with an albedo texture can be measured (the built-in head). Table and network ship as
``tracking/data/detector_response_<model>.npz``, which the fit reads through
:mod:`avatar3d.tracking.detector_model`, and are ignored, with a warning, when the model's version or
expressions changed (regenerate: ``python -m avatar3d.calibration builtin``: ~2 min for the table,
~17 min on 2 cores for the network's renders, ~1 min to train it; ``--fold-depth`` folds the network's
neutral depth into a shipped file made before that step existed, once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .._tensor import f32
from ..models.base import HeadModel
from ..tracking.detector_model import RESPONSE_TABLES, response_path

__all__ = ["measure_response", "projection_jacobian", "save_response", "fold_neutral_depth", "neutral_depth", "main", "RESPONSE_YAWS"]

#: Head turns (radians about the vertical axis) the response is measured at.
RESPONSE_YAWS = (-0.25, 0.0, 0.25)


def measure_response(model: HeadModel, yaws: Sequence[float] = RESPONSE_YAWS, amplitude: float = 0.8, shape_amplitude: float = 2.5,
                     prior: float = 0.5, expressions: Optional[Sequence[str]] = None, identity: bool = True, width: int = 360,
                     height: int = 640, distance: float = 0.35, progress: bool = False,
                     shapes: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
    """MediaPipe's view of ``model``'s expression and identity bases, lifted to model-space landmark motion.

    Renders the mean-identity neutral head, each expression at ``amplitude`` and each identity
    coefficient at ``shape_amplitude`` standard deviations (the phone-clip look of
    :mod:`~avatar3d.synthetic.video`, without sensor noise) at each yaw, runs MediaPipe in
    still-image mode and, per landmark, solves for the rest-frame displacement d (metres) minimising
    ``sum_views |J_v d - m_v|^2 + prior * s^2 |d - t|^2``: m_v is the detected pixel motion, J_v the
    projection Jacobian of that view, t the mesh's own displacement and s the pixels per metre at
    the head (``prior`` weighs the mesh like that many views of it).

    Args:
        amplitude: expression value rendered; shape_amplitude: identity coefficients rendered, in std.
        prior: weight of the mesh's own displacement, in views.
        expressions: names to measure (None: all); the others, and the identity when ``identity`` is
            False, keep the mesh's own displacement (quick partial measurements, e.g. in tests).
        shapes: identity coefficients to measure when ``identity`` is on (None: all).
    Returns:
        ``expression`` (E, 478, 3) metres per unit coefficient, ``shape`` (S, 478, 3) metres per unit
        coefficient, ``offset`` (478, 3) where MediaPipe puts the neutral mean face's landmarks
        relative to the embedding (metres, rest frame; pulled towards 0 like the motions).
    Raises:
        ValueError: the model has no texture or no landmark embedding, or MediaPipe missed a render.
    """
    from ..capture.landmarks import FaceLandmarker
    from ..render.camera import project
    from ..render.camera_builders import centred_K, front_camera, phone_focal
    from ..synthetic.video import render_frames

    if "albedo" not in model.extras or not model.has_landmarks:
        raise ValueError(f"head model {model.name!r} needs an albedo texture and a landmark embedding to measure the detector's response")
    E, S, J = model.num_expression, model.num_shape, model.num_joints
    names = list(model.expression_names)
    unknown = [n for n in (expressions or []) if n not in names]
    if unknown:
        raise ValueError(f"head model {model.name!r} has no expression(s) {unknown}")
    ei = np.array([names.index(n) for n in expressions] if expressions is not None else np.arange(E), int)
    si = (np.arange(S) if shapes is None else np.asarray(shapes, int)) if identity else np.zeros(0, int)
    focal = phone_focal(width, height)
    K = centred_K(focal, width, height)
    w2c = front_camera(distance)
    # Frame 0 the reference, then one frame per measured expression, then one per identity coefficient.
    ne, ns = len(ei), len(si)
    M = 1 + ne + ns
    expr = np.zeros((M, E))
    expr[1 + np.arange(ne), ei] = amplitude
    shape = np.zeros((M, S))
    std = model.shape_std.detach().double().numpy()
    shape[1 + ne + np.arange(ns), si] = std[si] * shape_amplitude
    unit = np.concatenate([np.full(ne, amplitude), std[si] * shape_amplitude])
    with torch.no_grad():
        rest = model(f32(shape), f32(expr)).landmarks.double().numpy()  # (M, P, 3) unposed
    t3 = np.concatenate([(rest[1:] - rest[:1]) / unit[:, None, None], np.zeros((1,) + rest.shape[1:])])  # (M, P, 3); last: offset
    P = rest.shape[1]
    A = np.zeros((P, 3, 3))
    b = np.zeros((M, P, 3))
    for yaw in yaws:
        pose = np.zeros((M, J, 3))
        pose[:, 0, 1] = yaw
        dets = []
        with FaceLandmarker(video=False) as fl:
            # Each frame rendered on its own with the same background: no sensor noise, so the
            # detections differ only by what the parameters change.
            for k in range(M):
                _, frame, _ = next(render_frames(model, shape[k], expr[k : k + 1], pose[k : k + 1], np.zeros((1, 3)), K, w2c, width,
                                                  height, np.random.default_rng(0), 0.0))
                d = fl(frame)
                if d is None:
                    raise ValueError(f"MediaPipe found no face in calibration render {k} of {model.name!r} at yaw {yaw}")
                dets.append(d[:, :2].astype(np.float64))
        det = np.stack(dets)
        with torch.no_grad():
            ref = project(model(f32(shape[:1]), f32(expr[:1]), f32(pose[:1])).landmarks, f32(K), f32(w2c))[0][0].double().numpy()
        m = np.concatenate([(det[1:] - det[:1]) / unit[:, None, None], (det[:1] - ref[None])])  # (M, P, 2) pixels
        Jv, scale = projection_jacobian(model, pose[0], K, w2c)  # (P, 2, 3) pixels per metre of rest-frame motion
        A += np.einsum("pki,pkj->pij", Jv, Jv)
        b += np.einsum("pki,mpk->mpi", Jv, m)
        if progress:
            print(f"detector response: yaw {yaw:+.2f} done")
    reg = prior * scale**2
    A += reg * np.eye(3)
    b += reg * t3
    d = np.linalg.solve(A[None], b[..., None])[..., 0]
    with torch.no_grad():  # the mesh's own landmark motion per unit, for what was not measured
        rows = torch.eye(max(E, S), dtype=torch.float32)
        own_e = (model(None, rows[:E, :E]).landmarks - model().landmarks).double().numpy()
        own_s = (model(rows[:S, :S]).landmarks - model().landmarks).double().numpy()
    out_e, out_s = own_e.copy(), own_s.copy()
    out_e[ei], out_s[si] = d[:ne], d[ne : ne + ns]
    return dict(expression=out_e.astype(np.float32), shape=out_s.astype(np.float32), offset=d[-1].astype(np.float32))


#: Expressions measured at full amplitude by :func:`remeasure_rows`: MediaPipe's view of a closing eye is
#: far from linear (renders of the built-in head: eyelid gap 0.155 open, 0.108 at blink 0.8, 0.019 at 1.0,
#: in inter-ocular distances), so the slope measured at 0.8 never closed the fitted eye (0.10 at blink 1,
#: where real closed eyes are detected at 0.01-0.03). Measured at 1.0, the table is right at full closure.
FULL_AMPLITUDE = ("eyeBlinkLeft", "eyeBlinkRight")


def remeasure_rows(model: HeadModel, expressions: Sequence[str] = (), shapes: Sequence[int] = (), path: Optional[Path] = None,
                   progress: bool = False) -> Path:
    """Measure some expression and identity rows again and splice them into the shipped response file.

    For a generator change that touches a few blendshapes or identity modes: the other rows, the
    neutral offset and the correction network are kept (the network sees expressions and joint
    rotations, not the identity). :data:`FULL_AMPLITUDE` expressions are measured at 1.0, others at 0.8.
    The file is re-stamped with the model's current version. ~10 s per row on two cores.
    """
    p = Path(path) if path is not None else response_path(model.name)
    with np.load(p) as z:
        old = {k: z[k] for k in z.files}
    tables = {k: old[k].astype(np.float32) for k in RESPONSE_TABLES}
    S = model.num_shape
    if tables["shape"].shape[0] != S:  # modes added at the end: the mesh's own motion until measured
        with torch.no_grad():
            own = (model(torch.eye(S)).landmarks - model().landmarks).numpy()
        tables["shape"] = np.concatenate([tables["shape"], own[tables["shape"].shape[0]:]])[:S]
    names = list(model.expression_names)
    groups = [[e for e in expressions if e in FULL_AMPLITUDE], [e for e in expressions if e not in FULL_AMPLITUDE]]
    for amp, group in zip((1.0, 0.8), groups):
        if group or (amp == 0.8 and len(shapes)):
            r = measure_response(model, amplitude=amp, expressions=group, identity=amp == 0.8 and len(shapes) > 0,
                                 shapes=list(shapes), progress=progress)
            for e in group:
                tables["expression"][names.index(e)] = r["expression"][names.index(e)]
            if amp == 0.8:
                for k in shapes:
                    tables["shape"][k] = r["shape"][k]
    corr = {k: v for k, v in old.items() if k.startswith("correction.")}
    np.savez_compressed(p, **{k: v.astype(np.float16) for k, v in tables.items()}, **corr, model=model.name,
                        version=str(model.version), expression_names=np.array(model.expression_names), yaws=np.array(RESPONSE_YAWS),
                        offset_depth=str(old.get("offset_depth", "measured")))
    return p


def projection_jacobian(model: HeadModel, pose: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, float]:
    """(P, 2, 3) d(pixel)/d(rest-frame landmark displacement) of the mean head at ``pose`` (J, 3), and the mean pixels per metre."""
    from ..models.lbs import batch_rodrigues

    with torch.no_grad():
        out = model(None, None, f32(pose)[None])
        X = out.landmarks[0].double().numpy()  # (P, 3) posed
        R = batch_rodrigues(f32(pose[:1]).double())[0].numpy()  # root rotation: turns rest-frame motion
    c = X @ w2c[:3, :3].T + w2c[:3, 3]
    fx, fy = K[0, 0], K[1, 1]
    z = c[:, 2]
    dpdc = np.zeros((len(c), 2, 3))
    dpdc[:, 0, 0], dpdc[:, 0, 2] = fx / z, -fx * c[:, 0] / z**2
    dpdc[:, 1, 1], dpdc[:, 1, 2] = fy / z, -fy * c[:, 1] / z**2
    return dpdc @ (w2c[:3, :3] @ R), float(np.mean(fx / z))


def save_response(model: HeadModel, response: dict, path: Optional[Path] = None) -> Path:
    """Write a :func:`measure_response` result (plus an optional ``correction``,
    :class:`~avatar3d.tracking.detector_model.DetectorCorrection`) with the model's name, version
    and expression names."""
    p = Path(path) if path is not None else response_path(model.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    # float16: metres per unit to ~0.1% (sub-micrometre), half the size of the shipped file.
    tables = {k: np.asarray(response[k], np.float16) for k in RESPONSE_TABLES}
    extra = response["correction"].to_arrays() if response.get("correction") is not None else {}
    np.savez_compressed(p, **tables, **extra, model=model.name, version=str(model.version),
                        expression_names=np.array(model.expression_names), yaws=np.array(RESPONSE_YAWS),
                        offset_depth=str(response.get("offset_depth", "measured")))
    return p


def neutral_depth(model: HeadModel, correction) -> np.ndarray:
    """(L,) metres: the rest-frame depth (z) a :class:`~avatar3d.tracking.detector_model.DetectorCorrection` adds
    to each landmark at the neutral face, head and eyes straight (what the fit's anchoring at zero removes)."""
    with torch.no_grad():
        rest = correction(torch.zeros(1, model.num_expression), torch.eye(3).expand(1, model.num_joints, 3, 3))
    return rest[0, 2].double().numpy()


def fold_neutral_depth(model: HeadModel, response: dict) -> dict:
    """``response`` with its ``correction``'s neutral depth (:func:`neutral_depth`) added to the ``offset``'s z
    (module docstring: the table measures that depth poorly, the network well) and ``offset_depth`` "correction".

    Raises:
        ValueError: no correction to take the depth from, or the offset already has it (folding twice doubles it).
    """
    if response.get("correction") is None:
        raise ValueError("the response has no detector correction to take the neutral face's depth from")
    if str(response.get("offset_depth", "measured")) != "measured":
        raise ValueError("the response's offset already has the correction's neutral depth")
    off = np.array(response["offset"], np.float64)
    off[:, 2] += neutral_depth(model, response["correction"])
    return {**response, "offset": off.astype(np.float32), "offset_depth": "correction"}


def fold_shipped(model: HeadModel, path: Optional[Path] = None) -> Path:
    """Apply :func:`fold_neutral_depth` to a response file written before that step existed, in place."""
    from ..tracking.detector_model import load_response

    p = Path(path) if path is not None else response_path(model.name)
    with np.load(p) as z:
        folded = str(z["offset_depth"]) if "offset_depth" in z.files else "measured"
    resp = load_response(model, p)
    if resp is None:
        raise ValueError(f"{p} does not match head model {model.name!r} {model.version}: regenerate it instead")
    resp = {k: (v.numpy() if k in RESPONSE_TABLES else v) for k, v in resp.items()}
    return save_response(model, fold_neutral_depth(model, {**resp, "offset_depth": folded}), p)


def main() -> None:
    """``python -m avatar3d.calibration [MODEL]``: measure, train and save the response of a head model."""
    import argparse

    from ..models import load_head_model
    from ..tracking.landmark_model import LandmarkHead

    ap = argparse.ArgumentParser(prog="python -m avatar3d.calibration", description="Measure MediaPipe's response to a head model (linear table, then the non-linear "
                                             "correction trained on random renders) and save it where the fit finds it.")
    ap.add_argument("model", nargs="?", default="builtin")
    ap.add_argument("--samples", type=int, default=24000, help="random renders for the correction (0: table only)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering and detecting the samples")
    ap.add_argument("--cache", type=Path, help="an .npz of samples to reuse (written when missing)")
    ap.add_argument("--fold-depth", action="store_true", help="only fold the shipped file's network depth into its offset "
                                                             "(a file made before that step; once)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    m = load_head_model(args.model)
    if args.fold_depth:
        print(fold_shipped(m))
        return
    resp = measure_response(m, progress=True)
    if args.samples > 0:
        from .detector_correction import sample_detections_parallel, train_correction

        if args.cache is not None and args.cache.is_file():
            samples = dict(np.load(args.cache))
        else:
            samples = sample_detections_parallel(args.model, args.samples, args.workers)
            if args.cache is not None:
                np.savez(args.cache, **samples)
        torch.set_num_threads(max(1, args.workers))
        head = LandmarkHead(m, response={k: torch.as_tensor(v) for k, v in resp.items()})
        resp["correction"], report = train_correction(m, head, samples, progress=True)
        print("detector correction, mean pseudo-Huber px: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))
        resp = fold_neutral_depth(m, resp)
    print(save_response(m, resp))


if __name__ == "__main__":
    main()
