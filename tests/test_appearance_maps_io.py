"""AppearanceMaps on disk (avatar3d.appearance.maps): what save() writes, load() reads back, and all or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avatar3d.appearance.maps import MAP_FILES, AppearanceMaps
from avatar3d.errors import BadInputError
from avatar3d.render.color import srgb_encode
from avatar3d.render.lighting import EnvironmentMap

R = 64


def random_maps(seed: int = 0) -> AppearanceMaps:
    """Maps with every texel different: noise albedo, unit normals facing out, a fine displacement (+-1 mm)."""
    g = np.random.default_rng(seed)
    u = lambda *s: g.random(s).astype(np.float32)  # noqa: E731
    n = g.normal(size=(R, R, 3)) * [0.3, 0.3, 1]
    n[..., 2] = np.abs(n[..., 2]) + 0.2
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    yy, xx = np.mgrid[:R, :R] / R
    disp = 1e-3 * np.sin(40 * xx) * np.cos(25 * yy) + 2e-6 * g.normal(size=(R, R))  # micrometre detail on a millimetre relief
    return AppearanceMaps(albedo=u(R, R, 3), specular=u(R, R), roughness=u(R, R), normal=n.astype(np.float32),
                          displacement=disp.astype(np.float32), coverage=u(R, R), sh=g.normal(size=(9, 3)).astype(np.float32),
                          model="builtin", exposure=np.linspace(0.9, 1.1, 5, dtype=np.float32), frame_names=[f"{i:06d}" for i in range(5)],
                          stats={"residual": 0.01}, source={"input": {"params_sha256": "ab" * 32}, "options": {"resolution": R}})


def test_save_then_load_round_trips_within_quantisation(tmp_path):
    import cv2

    maps = random_maps()
    assert maps.save(tmp_path / "m") == tmp_path / "m" / "material.json"
    back = AppearanceMaps.load(tmp_path / "m")
    q8 = 0.5 / 255 + 1e-6
    assert np.abs(srgb_encode(back.albedo) - srgb_encode(maps.albedo)).max() <= q8  # 8-bit in sRGB
    for name in ("specular", "roughness", "coverage"):
        assert np.abs(getattr(back, name) - getattr(maps, name)).max() <= q8, name
    assert np.degrees(np.arccos(np.clip((back.normal * maps.normal).sum(-1), -1, 1))).max() < 0.5
    # Displacement: 16 bits over its range, 256 times finer than 8 bits would be (micrometre detail survives).
    span = float(maps.displacement.max() - maps.displacement.min())
    err = np.abs(back.displacement.astype(np.float64) - maps.displacement).max()
    assert err <= 0.5 * span / 65535 * 1.01 + 1e-9 and err < span / 255 / 100
    assert np.array_equal(back.sh, maps.sh) and np.array_equal(back.exposure, maps.exposure)
    assert back.frame_names == maps.frame_names and back.model == "builtin" and back.ior == pytest.approx(1.4)
    assert back.stats == maps.stats and back.source == maps.source
    assert back.environment is not None and back.environment.pixels.shape[2] == 3
    # The files themselves: bit depths and channels as material.json says.
    meta = json.loads((tmp_path / "m" / "material.json").read_text())
    for name, (file, space, ch, bits) in MAP_FILES.items():
        info = meta["maps"][name]
        assert (info["file"], info["colour_space"], info["channels"], info["bits"]) == (file, space, ch, bits)
        img = cv2.imread(str(tmp_path / "m" / file), cv2.IMREAD_UNCHANGED)
        assert img.dtype == (np.uint16 if bits == 16 else np.uint8) and (img.shape[2] if img.ndim == 3 else 1) == ch, name
    assert meta["maps"]["displacement"]["scale_m"] == pytest.approx(span, rel=1e-6)
    with np.load(tmp_path / "m" / "lighting.npz") as z:
        assert z["sh"].shape == (9, 3) and int(z["bands"]) == 3


def _failing_environment(monkeypatch):
    """EnvironmentMap.write fails part-way (a full disk) after the PNGs' temporary files are written."""
    def full_disk(self, path):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(EnvironmentMap, "write", full_disk)


def test_a_failing_save_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    random_maps(0).save(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _failing_environment(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        random_maps(1).save(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # old maps intact, no temporary files
    with pytest.raises(OSError):
        random_maps(1).save(tmp_path / "new" / "m")
    assert not (tmp_path / "new").exists()  # nothing, not even the folder


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(BadInputError, match="has no material.json"):
        AppearanceMaps.load(tmp_path)
    random_maps().save(tmp_path)
    (tmp_path / "roughness.png").unlink()
    with pytest.raises(BadInputError, match="roughness.png is missing"):
        AppearanceMaps.load(tmp_path / "material.json")
