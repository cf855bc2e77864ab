"""Full-resolution detail pass (avatar3d.appearance.detail): statistics, height integration, and scores on the Mitsuba capture.

* **Conventions** (exact shading, no image): the frames' real geometry from the small capture's true parameters,
  every seen texel's colour replaced by ``albedo x E(n') / pi`` of a known height map (``n'`` the bump-mapped
  normal in the posed tangent frame). The pass must give the height back (sign, scale, tangent frames):
  normal error to the truth far below the flat normal's, displacement correlation high.
* **Path-traced capture** (24 frames at 192^2, 16 spp): normal-map angular error (degrees, mean over observed face
  texels at coverage > 0.5) to the true detailed normals, the truth resampled to the map size by area-averaging the
  true displacement map (512^2) to R^2 and taking :func:`~avatar3d.synthetic.pbr_maps.tangent_normals` there;
  the base mesh's normals (flat tangent normal) as the reference. Measured at R = 256 (this machine):

  | input | flat (base mesh) | detail pass | ratio |
  |---|---|---|---|
  | true parameters | 0.338 deg | 0.337 deg | 0.998 |
  | tracked (landmark fit; crops read at 192 px) | 0.339 deg | 0.339 deg | 1.002 |
  | true parameters, slope prior 0.02 (3x looser) | 0.338 deg | 0.430 deg | 1.27 |

  The issue's target (30% lower than the base mesh) is **not reachable at 192^2 input**: a pixel there is ~2.1 mm
  on the face, the true detail (pores, 0.45 mm wide folds) is below it; even an oracle holding the true
  displacement blurred to 2 mm only gets 20% lower (0.269 deg at 256^2; at 128^2 the flat error is 0.140 deg and
  that oracle's 0.062 deg, but the pass's estimate does not correlate with the truth there either). What the pass
  sees at this input is dominated by unmodelled effects (eye sockets, nostrils, brow and lip edges under
  sub-pixel misregistration), so its default slope prior keeps such texels flat (the map is no worse than the
  mesh) rather than baking those artefacts in. The exact-shading test shows the estimator itself recovers
  detail that the images resolve (0.30x the flat error).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar3d.appearance.detail import DetailOptions, DetailPass, DetailStatistics, irradiance_quadric
from avatar3d.appearance.fusion import UNIT_DC, FusionOptions, fuse_appearance
from avatar3d.appearance.heightfield import HeightIntegrator, TangentGeometry, tangent_normals, uv_gradient
from avatar3d.appearance.texel_stream import FrameTexels, TexelStream
from avatar3d.appearance.uvmap import UVTexels
from avatar3d.data.frames import TrackedFrames
from avatar3d.data.sequence import TrackedSequence
from avatar3d.errors import BadInputError
from avatar3d.models import load_head_model
from avatar3d.render.lighting import irradiance_basis

RES = 256


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between unit vectors (..., 3)."""
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin")


def test_irradiance_quadric_is_exact():
    L = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    n = torch.randn(50, 3, generator=torch.Generator().manual_seed(2))
    Y = torch.cat([n, torch.ones(50, 1)], 1)
    got = torch.einsum("ki,cij,kj->kc", Y, irradiance_quadric(L), Y)
    assert torch.allclose(got, irradiance_basis(n) @ L, atol=1e-4)


def test_integrator_recovers_a_height_from_its_slopes(model):
    """Exact slopes of a smooth bump pattern integrate back to it (up to the screening of wide detail)."""
    tx = UVTexels(model, 128)
    geom = TangentGeometry(model, tx)
    u, v = np.meshgrid((np.arange(128) + 0.5) / 128, 1 - (np.arange(128) + 0.5) / 128)
    h = torch.as_tensor(3e-4 * np.sin(2 * np.pi * 8 * u) * np.sin(2 * np.pi * 6 * v))
    g = uv_gradient(h).reshape(-1, 2)[tx.index]
    slopes = torch.stack([(g * geom.grad_t).sum(-1), (g * geom.grad_b).sum(-1)], -1)
    got = HeightIntegrator(geom, scale_texels=40)(slopes, torch.ones(tx.count))
    inside = tx.to_image(torch.ones(tx.count, 1))[..., 0] > 0
    a, b = got[inside].numpy(), h.float()[inside].numpy()
    assert np.corrcoef(a, b)[0, 1] > 0.97
    assert 0.8 < a.std() / b.std() < 1.1
    n_true, n_got = tangent_normals(h, geom).numpy(), tangent_normals(got, geom).numpy()
    assert _angle(n_got, n_true)[inside.numpy()].mean() < 0.25 * _angle(np.array([0, 0, 1.0]), n_true)[inside.numpy()].mean()


class _ExactShading:
    """Replaces every observation's colour by ``albedo x E(n') / pi`` of a known height (the model without images)."""

    def __init__(self, stream: TexelStream, geom: TangentGeometry, height: torch.Tensor, albedo: torch.Tensor, L: torch.Tensor):
        g = uv_gradient(height).reshape(-1, 2)[geom.texels.index]
        self.slopes = torch.stack([(g * geom.grad_t).sum(-1), (g * geom.grad_b).sum(-1)], -1).float()
        self.stream, self.albedo, self.L = stream, albedo, L

    def __iter__(self):
        for o in self.stream:
            s = self.slopes[o.texel]
            n = torch.nn.functional.normalize(o.normal - s[:, :1] * o.tangent - s[:, 1:] * o.bitangent, dim=-1)
            colour = self.albedo[o.texel] * (irradiance_basis(n) @ self.L) / np.pi
            yield FrameTexels(o.frame, o.texel, colour, o.normal, o.tangent, o.bitangent, o.view, o.weight)


def test_detail_from_exact_shading(truth_dir, model):
    """Sign, scale and tangent frames: the statistics and integration recover a known height from exact shading."""
    R = 128
    frames = TrackedFrames(truth_dir)
    L = torch.zeros(9, 3)
    L[0], L[2], L[3], L[1] = UNIT_DC, 1.2, 0.6, 0.3  # a light from above, to one side
    dp = DetailPass(frames, model, R, L, options=DetailOptions(noise=0.002, slope_prior=0.2, detail_scale=0.1, edge_contrast=None))
    tx = dp.texels
    geom = TangentGeometry(model, tx)
    u, v = np.meshgrid((np.arange(R) + 0.5) / R, 1 - (np.arange(R) + 0.5) / R)
    height = torch.as_tensor(3e-4 * np.sin(2 * np.pi * 8 * u) * np.sin(2 * np.pi * 6 * v))
    albedo = torch.full((tx.count, 3), 0.5) * torch.tensor([1.0, 0.8, 0.7])
    source = _ExactShading(TexelStream(frames, model, tx), geom, height, albedo, L)
    stats = DetailStatistics(tx.count, L)
    for o in source:
        stats.add(o)
    a, slopes, conf, seen = stats.solve(0.002, 0.2)
    got = HeightIntegrator(geom, 0.1 / (float(geom.Ju.norm(dim=-1).median()) / R))(slopes, conf * seen)
    where = (tx.to_image(seen.float()[:, None])[..., 0] > 0).numpy()
    n_true, n_got = tangent_normals(height, geom).numpy(), tangent_normals(got, geom).numpy()
    err, flat = _angle(n_got, n_true)[where].mean(), _angle(np.array([0, 0, 1.0]), n_true)[where].mean()
    corr = np.corrcoef(got.numpy()[where], height.numpy()[where])[0, 1]
    print(f"exact shading: normal error {err:.3f} deg vs flat {flat:.3f} deg; displacement correlation {corr:.3f}")
    assert err < 0.4 * flat  # measured 0.23 x
    assert corr > 0.9  # measured 0.95
    assert torch.allclose(a[seen], albedo[seen], rtol=0.05, atol=0.01)


def _normal_scores(dp: DetailPass, maps, model, capture):
    """(pass error, flat error, texel count): mean angle (degrees) to the truth over observed face texels."""
    import cv2

    from avatar3d.synthetic.pbr_maps import tangent_normals as true_normals
    from avatar3d.synthetic.pbr_maps import uv_geometry

    R = dp.texels.resolution
    disp = cv2.resize(capture.maps().displacement, (R, R), interpolation=cv2.INTER_AREA)
    truth = true_normals(disp, uv_geometry(model, R))
    tx = dp.texels
    face = tx.to_image(model.region("face")[tx.faces].all(1).float()[:, None])[..., 0].numpy() > 0
    where = face & dp.observed.numpy() & (maps.coverage.numpy() > 0.5)
    est = maps.normal.numpy()
    return _angle(est, truth)[where].mean(), _angle(np.array([0, 0, 1.0]), truth)[where].mean(), int(where.sum())


def _run(directory, model):
    frames = TrackedFrames(directory, resolution=192)  # the capture's own size (the tracker writes 512 px crops of it)
    light = fuse_appearance(frames, model, FusionOptions(resolution=128)).lighting
    dp = DetailPass(frames, model, RES, light)
    return dp, dp.run()


def _save(maps, path) -> None:
    import cv2

    cv2.imwrite(str(path), np.round((maps.normal.numpy() * 0.5 + 0.5) * 255).astype(np.uint8)[..., ::-1])


def test_detail_with_true_parameters(truth_dir, model, capture, out_dir):
    dp, maps = _run(truth_dir, model)
    _save(maps, out_dir / "appearance_detail_normal_truth.png")
    err, flat, count = _normal_scores(dp, maps, model, capture)
    print(f"true parameters: normal error {err:.3f} deg, base mesh {flat:.3f} deg ({err / flat:.3f}x) over {count} texels; {dp.timings}")
    assert count > 8000
    assert err <= 1.02 * flat  # measured 1.00x (the 30% target is out of reach at 192^2 input: see the docstring)
    # Shapes and conventions of the result.
    assert maps.albedo.shape == (RES, RES, 3) and maps.coverage.shape == (RES, RES)
    assert maps.displacement.shape == (RES, RES) and maps.normal.shape == (RES, RES, 3)
    assert torch.allclose(maps.normal.norm(dim=-1), torch.ones(RES, RES), atol=1e-4)
    assert float(maps.normal[..., 2].min()) > 0
    assert bool((maps.coverage[~dp.observed] == 0).all())
    assert float(maps.displacement.abs().max()) < 2e-3


@pytest.fixture(scope="module")
def tracked_dir(capture, tmp_path_factory):
    from avatar3d.tracking.pipeline import TrackOptions, track

    out = tmp_path_factory.mktemp("tracked")
    track(capture.video, out, TrackOptions(overlay=False, progress=False))
    return out


def test_detail_after_tracking(tracked_dir, model, capture, out_dir):
    dp, maps = _run(tracked_dir, model)
    _save(maps, out_dir / "appearance_detail_normal_tracked.png")
    err, flat, count = _normal_scores(dp, maps, model, capture)
    print(f"tracked: normal error {err:.3f} deg, base mesh {flat:.3f} deg ({err / flat:.3f}x) over {count} texels; {dp.timings}")
    assert count > 8000
    assert err <= 1.02 * flat  # measured 1.002x


def test_no_valid_frame_is_one_clear_error(truth_dir, model):
    seq = TrackedSequence.load(truth_dir)
    seq.valid = np.zeros(seq.num_frames, bool)
    with pytest.raises(BadInputError, match="no valid tracked frame"):
        DetailPass(TrackedFrames(truth_dir, sequence=seq), model, 64, torch.zeros(9, 3)).run()
