"""Photometric refinement lowers the masked image error against the landmark-only fit (real video)."""

from __future__ import annotations

import cv2
import numpy as np

from avatar3d.capture.stage import run_capture
from avatar3d.tracking.fitting import CropCameras, fit_landmarks
from avatar3d.tracking.photometric import PhotometricConfig, refine_photometric


def test_photometric_refinement_beats_landmark_only(ict_archive, videos_dir, tmp_path, out_dir):
    from avatar3d.models import load_head_model

    model = load_head_model(f"ict={ict_archive}")
    cap = run_capture(videos_dir / "d3.mp4", tmp_path, max_frames=4, progress=False)
    fit = fit_landmarks(model, cap.landmarks, cap.valid, CropCameras(cap.boxes, cap.source_size, cap.resolution), progress=False)
    imgs = np.stack([cv2.imread(str(tmp_path / "images" / f"{n}.png"))[..., ::-1] for n in cap.names])
    masks = np.stack([cv2.imread(str(tmp_path / "masks" / f"{n}.png"), cv2.IMREAD_GRAYSCALE) for n in cap.names])
    args = (model, imgs, masks, cap.landmarks, cap.valid, fit.shape, fit.expression, fit.pose, fit.transl, fit.K, fit.world_to_cam)
    small = dict(resolution=64, texture_size=32, iters_appearance=15, iters_joint=15)
    refined = refine_photometric(*args, PhotometricConfig(**small))
    # Baseline with the same number of iterations, geometry frozen at the landmark fit.
    baseline = refine_photometric(*args, PhotometricConfig(**small, refine_geometry=False))
    assert refined.error_refined < baseline.error_refined, (refined.error_refined, baseline.error_refined)
    assert refined.error_refined < refined.error_landmark_only
    assert 0.0 < refined.error_refined < 0.1  # mean absolute intensity error on face pixels
    assert refined.albedo.shape == (32, 32, 3) and np.isfinite(refined.sh).all()
    # Geometry stays anchored: small changes only.
    assert np.abs(refined.expression - fit.expression).max() < 0.5
    cv2.imwrite(str(out_dir / "photometric_albedo_d3.png"), (refined.albedo[..., ::-1] * 255).astype(np.uint8))
