"""Synthetic data with known parameters, for tests, benchmarks and calibration (never used by a stage).

* :mod:`~avatar3d.synthetic.video`: rendered ground truth, a textured head model driven by known
  parameters and seen by a phone camera (PNG frames or an H.264 clip), and the track / refine
  comparisons against it;
* :mod:`~avatar3d.synthetic.toy_head`: a small ellipsoid head model and projected landmark sequences;
* :mod:`~avatar3d.synthetic.flame`: FLAME-format files (``python -m avatar3d.synthetic.flame OUT_DIR``).

These modules import the runtime packages; the runtime packages never import them.
"""
