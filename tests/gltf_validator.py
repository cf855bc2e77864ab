"""Run the Khronos glTF-Validator (npm package ``gltf-validator``) on files from Python tests.

The package is a dev dependency in the repository's ``package.json`` (install with
``npm ci`` or ``npm install --no-audit --no-fund`` at the repo root). Tests call
:func:`validate` and assert on the returned report; :func:`require_validator` skips a test
with a reason only when ``node`` itself is missing (a missing npm package is a set-up error and
fails loudly, so CI cannot silently stop validating).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "node_modules" / "gltf-validator"

# Validates every file named on the command line (external .bin/.png resolved beside the file),
# prints one JSON array of reports. One node start for many files keeps the tests fast.
_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const validator = require(process.argv[1]);
async function one(file) {
  const data = new Uint8Array(fs.readFileSync(file));
  return validator.validateBytes(data, {
    uri: path.basename(file), maxIssues: 0, writeTimestamp: false,
    externalResourceFunction: (uri) => new Promise((resolve, reject) => {
      fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)),
                  (err, d) => err ? reject(err.toString()) : resolve(new Uint8Array(d)));
    }),
  });
}
(async () => {
  const out = [];
  for (const f of process.argv.slice(2)) out.push(await one(f));
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""


def require_validator() -> str:
    """Path of ``node``; skip the calling test when node is absent, fail when the package is."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the Khronos glTF-Validator (npm gltf-validator) cannot run")
    if not (PACKAGE_DIR / "package.json").is_file():
        pytest.fail(f"npm package gltf-validator missing at {PACKAGE_DIR}: run 'npm ci' (or 'npm install --no-audit --no-fund') in {REPO_ROOT}")
    return node


def validate(*files: str | Path) -> list[dict]:
    """Validator reports (one dict per file, the validator's JSON report format)."""
    node = require_validator()
    r = subprocess.run([node, "-e", _SCRIPT, str(PACKAGE_DIR), *map(str, files)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"gltf-validator failed to run: {r.stderr.strip()}")
    return json.loads(r.stdout)


def summarize(report: dict) -> str:
    """One line per error/warning (severity 0 = error, 1 = warning) for the test output."""
    issues = report.get("issues", {})
    lines = [f"{report.get('uri')}: {issues.get('numErrors', '?')} errors, {issues.get('numWarnings', '?')} warnings, "
             f"{issues.get('numInfos', '?')} infos"]
    for m in issues.get("messages", []):
        if m.get("severity", 3) <= 1:
            kind = "ERROR" if m["severity"] == 0 else "warning"
            lines.append(f"  {kind} {m.get('code')} at {m.get('pointer', '')}: {m.get('message')}")
    return "\n".join(lines)


def assert_valid(*files: str | Path) -> list[dict]:
    """Validate files, print warnings (visible with ``pytest -s`` / in failure output), assert zero errors."""
    reports = validate(*files)
    for rep in reports:
        print(summarize(rep))
        if rep.get("issues", {}).get("numWarnings", 0):
            # Surfaces in pytest's warnings summary, so validator warnings are listed without -s.
            warnings.warn(f"glTF-Validator warnings: {summarize(rep)}", stacklevel=2)
    bad = [summarize(r) for r in reports if r.get("issues", {}).get("numErrors", 1) != 0]
    assert not bad, "glTF-Validator errors:\n" + "\n".join(bad)
    return reports
