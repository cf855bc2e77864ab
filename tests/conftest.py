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


@pytest.fixture(scope="session")
def ict_session(tmp_path_factory, ict_archive: Path) -> dict:
    """ICT-FaceKit extracted once per session into pytest's tmp, with the ICT / embedding caches pointed
    at a private folder (so the first load really parses); shared by test_ict.py and test_embedding.py.
    Returns {"dir": ICT-FaceKit folder, "cache": cache folder, "data": first HeadModelData,
    "first_load_s": seconds, "model": HeadModel}."""
    import tarfile
    import time

    from avatar3d.models import embedding
    from avatar3d.models import ict as ict_mod

    cache = tmp_path_factory.mktemp("ict_cache")

    def cdir(sub: str = "") -> Path:
        p = cache / sub
        p.mkdir(parents=True, exist_ok=True)
        return p

    # Left in place for the session: later ICT users share the warm private cache.
    ict_mod.cache_dir = cdir
    embedding.cache_dir = cdir
    d = tmp_path_factory.mktemp("ict")
    with tarfile.open(ict_archive) as t:
        t.extractall(d, filter="data")
    src = d / "ICT-FaceKit"
    t0 = time.perf_counter()
    data = ict_mod.read_ict_data(src)
    return dict(dir=src, cache=cache, data=data, first_load_s=time.perf_counter() - t0, model=ict_mod.load_ict(src))


@pytest.fixture(scope="module")
def cpu_ext():
    """The C++ CPU Gaussian extension (a build failure fails the test: it must build here)."""
    from avatar3d.render import gaussians as G

    ext = G._cpu_ext()
    if ext is None:
        pytest.fail(f"the CPU Gaussian extension failed to build: {G.extension_error('a3d_gs_cpu')}")
    return ext


# ----------------------------------------------------------------------------- viewer (toy head)
VIEWER_SIZE = 256  # pixels, both sides, of the shared headless renderer
_viewer_cache: dict = {}


@pytest.fixture(scope="module")
def toy():
    """The viewer tests' toy head (tests/helpers/viewer_toy.py); test_export.py has its own ``toy``."""
    from helpers.viewer_toy import toy_head

    return toy_head()


@pytest.fixture
def renderer(toy):
    """A shared 256x256 renderer, re-created if another test's renderer replaced it (one per process)."""
    from avatar3d.errors import Avatar3DError
    from avatar3d.viewer.headless import HeadlessRenderer, check_offscreen_support
    from avatar3d.viewer.mesh import HeadMesh
    from avatar3d.viewer.params import HeadParams
    from avatar3d.viewer.scene import Lighting

    try:
        check_offscreen_support()
    except Avatar3DError as e:
        pytest.skip(str(e))
    r = _viewer_cache.get("r")
    if r is None or r.renderer is None:
        r = _viewer_cache["r"] = HeadlessRenderer(HeadMesh(toy), VIEWER_SIZE, VIEWER_SIZE)
        r.render(HeadParams.neutral(toy), Lighting())  # frames the neutral head: the camera stays fixed after
    return r


@pytest.fixture(scope="session")
def capture():
    """The small path-traced capture of the built-in head (24 frames at 192^2, Mitsuba; rendered once, then cached)."""
    pytest.importorskip("mitsuba")
    from avatar3d.synthetic.mitsuba_capture import render_capture, small_spec

    return render_capture(small_spec())


@pytest.fixture(scope="session")
def truth_dir(capture, tmp_path_factory) -> Path:
    """A tracking directory holding the capture's frames, alpha masks and TRUE parameters (read-only for tests)."""
    from avatar3d.synthetic.relight_truth import truth_directory

    return truth_directory(capture, tmp_path_factory.mktemp("truth") / "track")


@pytest.fixture(scope="session")
def avatar_truth_dir(capture, tmp_path_factory) -> Path:
    """The capture as a tracking directory with its TRUE parameters, frames listed even then odd (the held-out end of
    the split holds poses between trained ones: the capture is a single head turn); read-only for tests."""
    from avatar3d.synthetic.relight_truth import truth_directory

    order = list(range(0, 24, 2)) + list(range(1, 24, 2))
    return truth_directory(capture, tmp_path_factory.mktemp("avatar_truth") / "track", order)


@pytest.fixture(scope="session")
def tiny_avatar(avatar_truth_dir, tmp_path_factory) -> Path:
    """An avatar directory trained for seconds on :func:`avatar_truth_dir` (64 px, ~3k Gaussians, 40 steps): for the
    bookkeeping of render / eval / export / view, not for quality; read-only for tests."""
    from avatar3d._tensor import torch_threads
    from avatar3d.avatar.model import HeadInit
    from avatar3d.avatar.train import AvatarOptions, train_avatar

    out = tmp_path_factory.mktemp("tiny_avatar") / "avatar"
    with torch_threads(1):
        train_avatar(avatar_truth_dir, out, AvatarOptions(resolution=64, iterations=40, init=HeadInit(uv_resolution=24), densify=None))
    return out


@pytest.fixture(scope="session")
def relit_avatar(tiny_avatar, tmp_path_factory) -> Path:
    """:func:`tiny_avatar` with a relightable appearance (reflectance not fitted): for the plumbing of relit render,
    view and export, not for relighting quality; read-only for tests."""
    from tests.helpers.relight_double import relightable_copy

    return relightable_copy(tiny_avatar, tmp_path_factory.mktemp("relit_avatar") / "avatar")
