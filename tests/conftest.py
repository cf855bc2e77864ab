"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The CI machine has 2 cores; keep torch from oversubscribing them.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from avatar3d.paths import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real data not found: expected ../shared/data beside the checkout (or $AVATAR3D_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def ict_archive(shared_data: Path) -> Path:
    p = shared_data / "ict-facekit-light.tar.xz"
    if not p.is_file():
        pytest.skip(f"ICT-FaceKit archive not found at {p}")
    return p


@pytest.fixture(scope="session")
def videos_dir(shared_data: Path) -> Path:
    p = shared_data / "videos"
    if not p.is_dir():
        pytest.skip(f"real head videos not found at {p}")
    return p


@pytest.fixture(scope="session")
def out_dir(tmp_path_factory) -> Path:
    """Where tests write images worth looking at (kept under pytest's tmp)."""
    return tmp_path_factory.mktemp("renders")


@pytest.fixture(scope="session")
def builtin():
    """The built-in head model with its 478-point embedding (shared: tests must not modify it)."""
    from avatar3d.errors import Avatar3DError
    from avatar3d.models import load_head_model

    try:
        m = load_head_model("builtin")
    except (ImportError, Avatar3DError) as e:
        pytest.skip(f"built-in head not available: {e}")
    if not m.has_landmarks:
        pytest.skip("built-in head has no landmark embedding (MediaPipe unavailable)")
    return m
