"""The data layer: what the stages read and write on disk.

- :mod:`~avatar3d.data.sequence`: ``TrackedSequence``, the fitted parameters of a tracking directory (``params.npz``);
- :mod:`~avatar3d.data.frames`: ``TrackedFrames``, a lazy per-frame reader (image, mask, camera, parameters);
- :mod:`~avatar3d.data.split`: the one train/test split (the last 15% of frames, at least 30, at most half);
- :mod:`~avatar3d.data.source`: a SOURCE argument naming a head model or a tracking directory;
- :mod:`~avatar3d.data.rundir`: ``RunDirectory``, an output folder's lock and manifest;
- :mod:`~avatar3d.data.atomic`: atomic writes under unique temporary names.
"""
