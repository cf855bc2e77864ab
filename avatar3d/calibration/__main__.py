"""``python -m avatar3d.calibration [MODEL]``: regenerate a head model's detector response file."""

from .detector_response import main

main()
