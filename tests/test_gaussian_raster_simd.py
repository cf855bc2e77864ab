"""CPU Gaussian kernels: the SIMD builds (baseline x86-64, AVX2, AVX-512) agree, and the fast paths
(ellipse boxes and row spans, 8-pixel chunks at any column, saturation skipping) match the reference.

The benchmark scene never saturates a pixel, so these scenes are chosen to hit what it does not:
opaque layers (early termination, skipped chunks in both passes), needle-thin tilted splats (row
spans), faint splats near the 1/255 cut-off, and image sizes that are not multiples of the tile.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from helpers.gaussian_scenes import assert_close_to_reference, shell_scene

REPO = Path(__file__).resolve().parent.parent


def test_saturated_shell_matches_reference(cpu_ext):
    sc = shell_scene(1500, 61, 50)
    _, alpha, _ = assert_close_to_reference(sc)
    # the point of this scene: many pixels end with transmittance < 2e-4, i.e. they stopped compositing
    # (the next splat would have taken them to <= 1e-4), while others stay translucent
    assert (alpha > 0.9998).float().mean() > 0.15
    assert (alpha < 0.99).any()


def test_thin_tilted_and_faint_splats_match_reference(cpu_ext):
    # needles exercise the per-row ellipse spans; opacities straddle the 1/255 cut-off
    sc = shell_scene(600, 45, 70, opacity=(0.002, 0.6), thin=True, seed=1)
    assert_close_to_reference(sc)
    sc = shell_scene(300, 33, 17, opacity=(0.003, 0.02), seed=2)  # all faint, tiny image, partial tiles
    _, alpha, _ = assert_close_to_reference(sc)
    assert alpha.max() > 0


_CHILD = """
import json, sys, torch
sys.path[:0] = [{repo!r}, {tests!r}]
torch.set_num_threads(2)
from helpers.gaussian_scenes import outputs_and_grads, shell_scene
from avatar3d.render import gaussians as G
sc = shell_scene(1200, 50, 40, opacity=(0.3, 0.99), seed=3)
outs, grads = outputs_and_grads(sc, "cpu")
torch.save({{"outs": outs, "grads": grads}}, sys.argv[1])
print(json.dumps({{"simd": G._cpu_ext().simd()}}))
"""


def test_simd_builds_agree(cpu_ext, tmp_path):
    """Run the same scene with each kernel build this CPU has (AVATAR3D_GS_ISA caps the choice)."""
    results = {}
    for cap in ("base", "avx2", ""):
        env = dict(os.environ, AVATAR3D_GS_ISA=cap)
        out = tmp_path / f"{cap or 'best'}.pt"
        r = subprocess.run([sys.executable, "-c", _CHILD.format(repo=str(REPO), tests=str(REPO / "tests")), str(out)], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        simd = json.loads(r.stdout.strip().splitlines()[-1])["simd"]
        results[simd] = torch.load(out)
    assert "baseline" in results
    names = sorted(results)
    first = results[names[0]]
    for name in names[1:]:
        other = results[name]
        for a, b in zip(first["outs"], other["outs"]):
            assert (a - b).abs().max().item() < 1e-5, name  # FMA contraction differs: not bit-identical
        for k in first["grads"]:
            a, b = first["grads"][k], other["grads"][k]
            assert ((a - b).norm() / b.norm()).item() < 1e-4, (name, k)


_CHILD_THREAD_LIMIT = """
import sys, torch
sys.path[:0] = [{repo!r}, {tests!r}]
from helpers.gaussian_scenes import assert_close_to_reference, shell_scene
for seed in range(5):  # small scenes: their per-thread buffers come from reused (dirty) heap memory
    assert_close_to_reference(shell_scene(60, 40, 30, opacity=(0.3, 0.99), seed=seed))
"""


def test_backward_with_fewer_openmp_threads_than_asked(cpu_ext):
    """OMP_THREAD_LIMIT below OMP_NUM_THREADS: the backward reduces only the per-thread buffers that ran
    (it once summed never-zeroed ones and returned garbage gradients)."""
    env = dict(os.environ, OMP_NUM_THREADS="2", OMP_THREAD_LIMIT="1")
    r = subprocess.run([sys.executable, "-c", _CHILD_THREAD_LIMIT.format(repo=str(REPO), tests=str(REPO / "tests"))], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
