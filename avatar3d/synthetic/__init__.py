"""Synthetic data with known parameters, for tests, benchmarks and calibration (never used by a stage).

* :mod:`~avatar3d.synthetic.video`: rendered ground truth, a textured head model driven by known
  parameters and seen by a phone camera (PNG frames or an H.264 clip), and the track / refine
  comparisons against it;
* :mod:`~avatar3d.synthetic.pbr_maps`: procedural ground-truth material maps (albedo, F0, roughness,
  displacement with pores and wrinkles, tangent normals) in the built-in head's UV layout;
* :mod:`~avatar3d.synthetic.mitsuba_capture`: the head with those maps path traced by Mitsuba 3 under a
  known environment map over a phone-like clip (truth we do not render ourselves), cached by parameters;
* :mod:`~avatar3d.synthetic.toy_head`: a small ellipsoid head model and projected landmark sequences;
* :mod:`~avatar3d.synthetic.flame`: FLAME-format files (``python -m avatar3d.synthetic.flame OUT_DIR``).

These modules import the runtime packages; the runtime packages never import them.
"""
