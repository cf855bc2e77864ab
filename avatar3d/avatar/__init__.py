"""The Gaussian head avatar (issue #14): Gaussians bound to the tracked head model's triangles, trained on a tracking directory.

Modules: :mod:`.binding` (triangle frames, posing), :mod:`.surface` (where Gaussians start), :mod:`.appearance` (the colour
interface and SH colour), :mod:`.model` (:class:`~.model.GaussianHead`), :mod:`.strategy` (densification), :mod:`.dataset`
(frames in memory), :mod:`.backproject` (starting colours), :mod:`.metrics` (PSNR, SSIM), :mod:`.train` (training, files).
"""
