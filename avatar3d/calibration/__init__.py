"""Offline calibration of the tracker against MediaPipe: measured on renders, shipped as data.

* :mod:`~avatar3d.calibration.detector_response`: the linear response table (MediaPipe's landmark
  motion per expression and identity coefficient) and the regeneration command;
* :mod:`~avatar3d.calibration.detector_correction`: random renders and the training of the
  non-linear correction network.

The fit never imports this package: it reads the result through :mod:`avatar3d.tracking.detector_model`.
Regenerate the shipped file with ``python -m avatar3d.calibration [MODEL]``.
"""
