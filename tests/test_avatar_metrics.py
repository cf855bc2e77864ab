"""The avatar's SSIM and PSNR (avatar3d.avatar.metrics): closed forms, and scikit-image's numbers where it is installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avatar3d.avatar.metrics import gaussian_window, psnr, ssim


def test_ssim_of_constant_images_is_the_luminance_term():
    a = torch.full((1, 20, 24, 3), 0.3, dtype=torch.float64)
    b = torch.full((1, 20, 24, 3), 0.6, dtype=torch.float64)
    c1 = 0.01**2
    want = (2 * 0.3 * 0.6 + c1) / (0.3**2 + 0.6**2 + c1)
    assert abs(float(ssim(a, b)) - want) < 1e-12
    assert abs(float(ssim(a, a)) - 1.0) < 1e-12


def test_window_is_the_standard_gaussian():
    w = gaussian_window()
    assert w.shape == (11,) and abs(float(w.sum()) - 1) < 1e-6
    x = torch.arange(11.0) - 5
    ref = torch.exp(-x**2 / (2 * 1.5**2))
    assert torch.allclose(w, ref / ref.sum())


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    g = np.random.default_rng(0)
    a = g.random((48, 40, 3))
    b = np.clip(a + 0.1 * g.standard_normal(a.shape), 0, 1)
    c = np.clip(0.7 * a + 0.2 + 0.05 * g.standard_normal(a.shape), 0, 1)
    for x, y in ((a, b), (a, c), (b, c)):
        want = metrics.structural_similarity(x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
        got = float(ssim(torch.as_tensor(x)[None], torch.as_tensor(y)[None]))
        assert abs(got - want) < 1e-9, (got, want)


def test_ssim_per_image_and_gradient():
    a = torch.rand(3, 16, 16, 3, dtype=torch.float64)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1).requires_grad_()
    per = ssim(a, b, per_image=True)
    assert per.shape == (3,) and torch.allclose(per.mean(), ssim(a, b))
    (1 - ssim(a, b)).backward()
    assert torch.isfinite(b.grad).all() and float(b.grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        ssim(a[:, :8], b[:, :8])


def test_psnr_with_and_without_mask():
    a = torch.zeros(2, 8, 8, 3)
    b = torch.full((2, 8, 8, 3), 0.1)
    assert abs(float(psnr(a, b)) - 20.0) < 1e-4
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, :4] = True
    b2 = b.clone()
    b2[:, 4:] = 1.0  # outside the mask: ignored
    assert abs(float(psnr(a, b2, mask)) - 20.0) < 1e-4
    assert float(psnr(a, b2)) < 10 * math.log10(1 / 0.4)


def _realish(g: np.random.Generator, h: int = 96, w: int = 80) -> np.ndarray:
    """(h, w, 3) an avatar target's kind of picture: a white background, a smoothly shaded ellipse with a hard
    silhouette, a few sharp dark features and fine texture, quantised to 8 bits as a video frame is."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = ((x - w / 2) / (0.35 * w)) ** 2 + ((y - h / 2) / (0.42 * h)) ** 2
    shade = np.clip(1.1 - 0.5 * r2 - 0.3 * (x / w), 0, 1)[..., None] * np.array([0.85, 0.62, 0.5])
    shade = shade + 0.03 * g.standard_normal((h, w, 3))  # skin texture
    img = np.where((r2 < 1)[..., None], shade, 1.0)
    for cx, cy in ((0.38, 0.4), (0.62, 0.4)):  # eyes
        img[((x - cx * w) ** 2 + (y - cy * h) ** 2 < (0.05 * w) ** 2)] = (0.1, 0.08, 0.07)
    img[int(0.68 * h):int(0.72 * h), int(0.4 * w):int(0.6 * w)] = (0.5, 0.15, 0.15)  # mouth
    return np.round(np.clip(img, 0, 1) * 255) / 255


def test_ssim_matches_scikit_image_on_random_and_realish_images_in_float32():
    """Our float32 SSIM (what training and evaluation run) against scikit-image's float64 reference, tightly: uniform
    noise pairs, and face-like 8-bit frames against blurred, shifted, noisy and re-coloured versions of themselves."""
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is not installed")
    import cv2

    g = np.random.default_rng(1)
    pairs = [(g.random((33, 57, 3)), g.random((33, 57, 3)))]
    face = _realish(g)
    pairs += [(face, cv2.GaussianBlur(face, (5, 5), 1.0)), (face, np.roll(face, 1, axis=1)),
              (face, np.clip(face + 0.02 * g.standard_normal(face.shape), 0, 1)), (face, np.clip(face * 0.9 + 0.05, 0, 1)),
              (face, _realish(np.random.default_rng(2)))]
    for x, y in pairs:
        want = metrics.structural_similarity(x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False)
        got64 = float(ssim(torch.as_tensor(x)[None], torch.as_tensor(y)[None]))
        got32 = float(ssim(torch.as_tensor(x, dtype=torch.float32)[None], torch.as_tensor(y, dtype=torch.float32)[None]))
        assert abs(got64 - want) < 1e-10, (got64, want)
        assert abs(got32 - want) < 2e-5, (got32, want)
    assert 0.5 < want < 0.99  # the last pair: two different faces, not a trivial score
