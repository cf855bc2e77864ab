#!/usr/bin/env python
"""Stand-alone entry for the avatar3d viewer (same as ``avatar3d view``).

    python viewers/avatar3d_viewer.py builtin
    python viewers/avatar3d_viewer.py out/track_d0 --frame 12 --screenshot f12.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from avatar3d.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["view", *sys.argv[1:]]))
