"""Open an HTML page in headless Chromium (Debian's ``chromium``, installed by the set-up) from Python tests.

A page reports what it found by writing into its own DOM (e.g. ``<pre id="result">{json}</pre>``);
:func:`dump_dom` loads it, lets its scripts run for ``budget_ms`` of virtual time and returns the
serialised DOM, and :func:`result_json` pulls that JSON back out. Local files load each other
(``--allow-file-access-from-files``), so a page beside a GLB or beside ``node_modules/three`` can
``fetch``/``import`` them. :func:`require_chromium` skips a test with a reason only when no Chromium
binary exists (outside the set-up's machines); CI installs it, so there the tests always run.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
THREE_DIR = REPO_ROOT / "node_modules" / "three"  #: three.js (a dev dependency in package.json)
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> Optional[str]:
    """Path of a Chromium/Chrome executable, or None."""
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium executable; skips the calling test when there is none."""
    exe = chromium_binary()
    if exe is None:
        pytest.skip("headless Chromium is not installed (bash scripts/run.sh setup installs Debian's chromium)")
    return exe


def _command(exe: str, profile: str, budget_ms: int) -> list[str]:
    return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--allow-file-access-from-files", "--no-first-run", "--mute-audio",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]


def dump_dom(page: Path, budget_ms: int = 10000, timeout_s: float = 120.0) -> str:
    """The DOM of ``page`` (a local HTML file) after its scripts ran for ``budget_ms`` ms of virtual time."""
    exe = require_chromium()
    with tempfile.TemporaryDirectory(prefix="avatar3d-chromium-") as profile:
        cmd = _command(exe, profile, budget_ms) + ["--dump-dom", Path(page).resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(page: Path, out_png: Path, width: int = 1280, height: int = 2000, budget_ms: int = 10000,
               timeout_s: float = 120.0) -> Path:
    """Render ``page`` to ``out_png`` (what a person opening it would see) and return the PNG's path."""
    exe = require_chromium()
    with tempfile.TemporaryDirectory(prefix="avatar3d-chromium-") as profile:
        cmd = _command(exe, profile, budget_ms) + [f"--window-size={width},{height}", "--hide-scrollbars",
                                                   f"--screenshot={Path(out_png).resolve()}", Path(page).resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not Path(out_png).exists():
        raise RuntimeError(f"chromium screenshot failed ({done.returncode}): {done.stderr[-2000:]}")
    return Path(out_png)


def result_json(dom: str, element_id: str = "result") -> dict:
    """The JSON a page wrote into ``<... id="{element_id}">``; raises AssertionError when it is missing."""
    m = re.search(rf'id="{re.escape(element_id)}"[^>]*>(.*?)</', dom, flags=re.S)
    assert m is not None, f'the page wrote no element id="{element_id}"; DOM tail: {dom[-1500:]}'
    return json.loads(html.unescape(m.group(1)))
