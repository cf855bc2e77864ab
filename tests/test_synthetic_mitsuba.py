"""Mitsuba 3 ground-truth capture (avatar3d.synthetic.mitsuba_capture): camera and environment conventions, the
small cached capture the reflectance tests use, and its cache."""

import time

import numpy as np
import pytest
import torch

mi = pytest.importorskip("mitsuba")

from avatar3d.models import load_head_model  # noqa: E402
from avatar3d.render.camera import Camera, raster_intrinsics  # noqa: E402
from avatar3d.render.camera_builders import look_at_world_to_cam  # noqa: E402
from avatar3d.render.lighting import EnvironmentMap  # noqa: E402
from avatar3d.render.preview import render_mesh  # noqa: E402
from avatar3d.synthetic.mitsuba_capture import (  # noqa: E402
    MitsubaHead,
    background,
    benchmark_spec,
    capture_parameters,
    held_out_specs,
    mitsuba_environment,
    mitsuba_sensor,
    render_capture,
    small_spec,
)
from avatar3d.synthetic.pbr_maps import make_maps  # noqa: E402


@pytest.fixture(scope="module")
def variant():
    mi.set_variant("scalar_rgb")


@pytest.fixture(scope="module")
def capture(variant):
    """The tests' capture (24 frames at 192^2), from the avatar3d cache when an earlier run made it."""
    t0 = time.perf_counter()
    cap = render_capture(small_spec())
    return cap, time.perf_counter() - t0


def _our_alpha(verts, faces, K, w2c, width, height):
    """(H, W) coverage from our rasterizer (library K -> raster K)."""
    _, a = render_mesh(torch.as_tensor(verts, dtype=torch.float32), faces, raster_intrinsics(torch.as_tensor(K, dtype=torch.float32)),
                       torch.as_tensor(w2c, dtype=torch.float32), width, height, return_alpha=True)
    return a[0, ..., 0].numpy()


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_environment_is_seen_in_the_library_directions(variant):
    """Mitsuba's envmap background along each pixel = EnvironmentMap.sample along the library camera's rays."""
    env = EnvironmentMap.generated("studio", 256, rotation_deg=20)  # key light on one side, fill on the other
    W, H = 48, 32
    K = np.array([[30.0, 0, 20.0], [0, 30.0, 18.0], [0, 0, 1]])
    w2c = look_at_world_to_cam(np.zeros(3), np.array([-0.5, 0.4, 0.6]))
    scene = mi.load_dict({"type": "scene", "integrator": {"type": "path"}, "sensor": mitsuba_sensor(K, w2c, W, H, 16),
                          "emitter": mitsuba_environment(env)})
    got = np.array(mi.render(scene), np.float32)[..., :3]
    want = background(env, K, w2c, W, H)
    mirrored = background(EnvironmentMap(env.pixels[:, ::-1].copy()), K, w2c, W, H)
    rel = np.abs(got - want).mean() / want.mean()
    assert want.max() > 3 * want.min()  # the view holds structure to compare
    assert rel < 0.05, rel
    assert np.abs(got - mirrored).mean() / want.mean() > 4 * rel


def test_off_centre_principal_point_and_wide_frame_line_up_with_our_camera(variant):
    m = load_head_model("builtin")
    maps = make_maps(m, 128)
    W, H = 96, 72
    K = np.array([[80.0, 0, W / 2 + 9.0], [0, 80.0, H / 2 - 6.0], [0, 0, 1]])
    w2c = look_at_world_to_cam(np.array([0.12, 0.05, 0.5]), np.array([0.0, 0.0, 0.0]))
    head = MitsubaHead(m, maps, EnvironmentMap.generated("overcast", 64), mitsuba_sensor(K, w2c, W, H, 4), max_depth=2)
    v = m.v_template.numpy()
    ours = _our_alpha(v, m.faces, K, w2c, W, H) > 0.5
    theirs = head.render(v)[..., 3] > 0.5
    assert ours.sum() > 300 and _iou(ours, theirs) > 0.95


def test_small_capture_is_plausible_and_lines_up_with_our_camera(capture):
    cap, _ = capture
    spec = cap.spec
    rgb, alpha = cap.linear()
    frames = cap.frames()
    P = cap.parameters()
    N, H, W = spec.num_frames, spec.height, spec.width
    assert rgb.shape == (N, H, W, 3) and alpha.shape == (N, H, W) and frames.shape == (N, H, W, 3) and frames.dtype == np.uint8
    assert np.isfinite(rgb).all() and rgb.min() >= 0
    # The head turns +-35 degrees and nods +-15 degrees.
    yaw, pitch = np.degrees(P["pose"][:, 0, 1]), np.degrees(P["pose"][:, 0, 0])
    assert 30 < yaw.max() <= 35 and -35 <= yaw.min() < -30 and 12 < pitch.max() <= 15 and -15 <= pitch.min() < -12
    assert P["vertices"].shape[0] == N and P["expression"][:, P["animated"]].max() > 0.7
    m = load_head_model("builtin")
    env = cap.environment()
    bg = background(env, P["K"], P["world_to_cam"], W, H)
    cam = Camera(torch.as_tensor(P["K"]), torch.as_tensor(P["world_to_cam"]), W, H)
    ious = []
    for i in range(N):
        head = alpha[i] > 0.5
        assert 0.1 < head.mean() < 0.5
        # Head pixels are lit: brighter than the background where the environment is dark.
        dark = (alpha[i] < 0.01) & (bg.mean(-1) < 0.1)
        assert dark.sum() > 100 and rgb[i][head].mean() > 3 * rgb[i][dark].mean()
        # The silhouette is our rasterizer's (IoU) and contains every projected vertex (Camera.project).
        ours = _our_alpha(P["vertices"][i], m.faces, P["K"], P["world_to_cam"], W, H) > 0.5
        ious.append(_iou(ours, head))
        assert ious[-1] > 0.9, (i, ious[-1])
        uv = cam.project(torch.as_tensor(P["vertices"][i], dtype=torch.float64))[0].numpy()
        col, row = np.clip(np.round(uv).astype(int), 0, [W - 1, H - 1]).T
        near = np.pad(alpha[i], 1)  # a vertex on the outline may round to the pixel just outside: 3x3 neighbourhood
        near = np.max([near[1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)
        assert (near[row, col] > 0.2).mean() > 0.999
    print(f"silhouette IoU with our rasterizer: min {min(ious):.3f}, mean {np.mean(ious):.3f}")
    # The maps and the clip are there for the reflectance tests and `avatar3d track`.
    maps = cap.maps()
    assert maps.resolution == spec.map_resolution and cap.video.stat().st_size > 10_000
    import av

    with av.open(str(cap.video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == N


def test_a_second_render_is_a_cache_hit(capture):
    cap, first_s = capture
    t0 = time.perf_counter()
    again = render_capture(small_spec())
    assert again.path == cap.path and time.perf_counter() - t0 < 0.5
    assert render_capture.__defaults__ is not None and small_spec(spp=4).key() != small_spec().key()
    print(f"small capture: {first_s:.1f} s first call, cache at {cap.path}")


def test_benchmark_spec_is_the_bigger_set_under_any_environment():
    s = benchmark_spec("sunset")
    assert (s.num_frames, s.width, s.height, s.environment) == (90, 512, 512, "sunset") and s.spp > small_spec().spp
    assert len({benchmark_spec(e).key() for e in ("studio", "sunset", "overcast")}) == 3
    # Relighting truth: the same frames under three other environments.
    held = held_out_specs(small_spec())
    assert len(held) == 3 and all(h.environment_rotation != 0 or h.environment != "studio" for h in held)
    assert all((h.num_frames, h.seed, h.spp, h.width) == (24, 0, small_spec().spp, 192) for h in held)
    m = load_head_model("builtin")
    P = capture_parameters(m, s)
    assert P["expression"].shape == (90, m.num_expression) and P["K"][0, 2] == (512 - 1) / 2


def test_mitsuba_reads_the_normal_map_in_the_gltf_frame(variant):
    """A plane (normal +z, OBJ UVs u = x, v = y) lit from +y only: a normal map tilted to +v (glTF green up,
    our bitangent n x t) must brighten it, one tilted to -v darken it; likewise +u (red) towards light from +x."""
    from avatar3d.render.lighting import equirect_directions
    from avatar3d.synthetic.mitsuba_capture import mitsuba_material
    from avatar3d.synthetic.pbr_maps import MaterialMaps

    def render(tilt, light_axis):
        n = np.array([0.0, 0.0, 1.0])
        n[:2] = tilt
        n /= np.linalg.norm(n)
        full = lambda x: np.full((4, 4) + np.shape(x), x, np.float32)  # noqa: E731
        maps = MaterialMaps(full([0.5, 0.5, 0.5]), full(0.028), full(0.9), full(0.0), full(n), full(True))
        props = mi.Properties()
        props["bsdf"] = mi.load_dict(mitsuba_material(maps))
        mesh = mi.Mesh("plane", 4, 2, props=props, has_vertex_normals=True, has_vertex_texcoords=True)
        p = mi.traverse(mesh)
        xy = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
        p["vertex_positions"] = np.c_[xy, np.zeros(4)].reshape(-1).tolist()
        p["vertex_normals"] = np.tile([0.0, 0, 1], 4).tolist()
        uv = (xy + 1) / 2
        p["vertex_texcoords"] = np.c_[uv[:, 0], 1 - uv[:, 1]].reshape(-1).tolist()  # as MitsubaHead passes them
        p["faces"] = [0, 1, 2, 0, 2, 3]
        p.update()
        dirs = equirect_directions(32, 64)
        env = np.repeat((dirs @ light_axis > 0.5)[..., None] * 2.0, 3, -1).astype(np.float32)
        w2c = look_at_world_to_cam(np.array([0.0, 0.0, 3.0]), np.zeros(3))
        scene = mi.load_dict({"type": "scene", "integrator": {"type": "path", "hide_emitters": True},
                              "sensor": mitsuba_sensor(np.array([[40.0, 0, 7.5], [0, 40.0, 7.5], [0, 0, 1]]), w2c, 16, 16, 64),
                              "emitter": mitsuba_environment(EnvironmentMap(env)), "plane": mesh})
        return float(np.array(mi.render(scene))[4:12, 4:12, :3].mean())

    up, right = np.array([0.0, 1, 0]), np.array([1.0, 0, 0])
    assert render([0, 0.6], up) > 1.3 * render([0, 0], up) > 1.3 * render([0, -0.6], up)
    assert render([0.6, 0], right) > 1.3 * render([0, 0], right) > 1.3 * render([-0.6, 0], right)
