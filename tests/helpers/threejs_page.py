"""An HTML page that loads a GLB with three.js's GLTFLoader, plays its clip with AnimationMixer, samples it and draws it.

The page (written beside the GLB, three.js imported through an import map from ``node_modules/three``) writes
``<pre id="result">{json}</pre>``: per mesh its name, material and morph target names; per sample time the
morph influences by name (of the first skinned mesh), every bone's local quaternion and position; whether
WebGL rendered, the fraction of drawn pixels that differ from the white background and, per material, the
fraction of the image its primitives cover (``coverage``). The canvas sits at the
top-left, so :func:`helpers.browser.screenshot` of the page is the rendered head.
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.browser import THREE_DIR

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "%(three)s/build/three.module.js", "three/addons/": "%(three)s/examples/jsm/"}}</script>
<style>html, body { margin: 0; background: #fff; overflow: hidden } #result { display: none }</style>
</head><body><pre id="result"></pre>
<script type="module">
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';
import { HDRLoader } from 'three/addons/loaders/HDRLoader.js';
// Decode textures through <img> (TextureLoader), not createImageBitmap: headless Chromium's virtual time does not
// wait for createImageBitmap, so a large texture would still be decoding when the DOM is dumped.
window.createImageBitmap = undefined;
const cfg = %(cfg)s;
const out = { meshes: [], samples: [] };
try {
  const gltf = await new GLTFLoader().loadAsync(cfg.glb);
  const meshes = [];
  gltf.scene.traverse((o) => { if (o.isMesh) meshes.push(o); });
  out.meshes = meshes.map((m) => ({ name: m.name, material: m.material.name, skinned: !!m.isSkinnedMesh,
                                    targets: Object.keys(m.morphTargetDictionary || {}) }));
  out.clips = gltf.animations.map((c) => ({ name: c.name, duration: c.duration }));
  const mixer = new THREE.AnimationMixer(gltf.scene);
  if (gltf.animations.length) mixer.clipAction(gltf.animations[0]).play();
  const head = meshes[0];
  for (const t of cfg.times) {
    mixer.setTime(t);
    const influences = {};
    for (const [name, i] of Object.entries(head.morphTargetDictionary || {})) influences[name] = head.morphTargetInfluences[i];
    const agree = meshes.every((m) => (m.morphTargetInfluences || []).every((w, i) => w === head.morphTargetInfluences[i]));
    const bones = head.isSkinnedMesh ? head.skeleton.bones.map((b) => ({ name: b.name, q: b.quaternion.toArray(), p: b.position.toArray() })) : [];
    out.samples.push({ t, influences, bones, primitives_agree: agree });
  }
  mixer.setTime(cfg.render_time);
  const canvas = document.createElement('canvas');
  const gl = canvas.getContext('webgl2', { preserveDrawingBuffer: true });
  out.webgl = !!gl;
  if (gl) {
    const [W, H] = cfg.size;  // fixed: the window's size differs between --dump-dom and --screenshot runs
    const renderer = new THREE.WebGLRenderer({ canvas, context: gl, antialias: true });
    renderer.setSize(W, H, false);
    canvas.style.cssText = `width:${W}px;height:${H}px;display:block`;
    document.body.appendChild(canvas);
    renderer.setClearColor(0xffffff, 1);
    renderer.toneMapping = THREE.NeutralToneMapping;
    const scene = new THREE.Scene();
    if (cfg.env_hdr) {  // an equirectangular .hdr in three.js's layout beside the page lights the head
      const env = await new HDRLoader().loadAsync(cfg.env_hdr);
      env.mapping = THREE.EquirectangularReflectionMapping;
      scene.environment = env;
      renderer.toneMapping = THREE.NoToneMapping;  // the capture's light is calibrated radiance: show it as is
    } else if (cfg.room) {  // image-based light for stills; slow on SwiftShader, so tests use the plain lights
      scene.environment = new THREE.PMREMGenerator(renderer).fromScene(new RoomEnvironment(), 0.04).texture;
      scene.environmentIntensity = 0.8;
    } else {
      scene.add(new THREE.HemisphereLight(0xffffff, 0x806050, 1.6));
    }
    const sun = new THREE.DirectionalLight(0xffffff, cfg.env_hdr ? 0.0 : 1.5);
    sun.position.set(0.5, 1.0, 1.5);
    scene.add(sun, gltf.scene);
    gltf.scene.updateMatrixWorld(true);
    const box = new THREE.Box3().setFromObject(gltf.scene);
    const c = new THREE.Vector3(...cfg.center || box.getCenter(new THREE.Vector3()).toArray());
    const camera = new THREE.PerspectiveCamera(cfg.fov, W / H, 0.01, 10);
    if (cfg.camera) {  // a tracked video's camera: position, look-at target, up, principal-point shift in pixels
      camera.position.set(...cfg.camera.position);
      camera.up.set(...cfg.camera.up);
      camera.lookAt(new THREE.Vector3(...cfg.camera.target));
      camera.setViewOffset(W, H, cfg.camera.offset[0], cfg.camera.offset[1], W, H);
    } else {
      camera.position.set(c.x + cfg.eye[0], c.y + cfg.eye[1], c.z + cfg.eye[2]);
      camera.lookAt(c);
    }
    // An id pass first: each primitive in a flat pure colour (exact after sRGB encoding), pixels counted per
    // material, so a test sees which parts are visible (eyes not hidden under skin, teeth with the jaw open).
    const ids = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]];
    const shaded = meshes.map((m) => m.material), mapping = renderer.toneMapping;
    meshes.forEach((m, i) => { m.material = new THREE.MeshBasicMaterial({ color: new THREE.Color(...ids[i %% 6]) }); });
    renderer.toneMapping = THREE.NoToneMapping;
    renderer.render(scene, camera);
    const idpx = new Uint8Array(W * H * 4);
    gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, idpx);
    out.coverage = {};
    meshes.forEach((m, i) => {
      const [r, g, b] = ids[i %% 6].map((x) => x * 255);
      let n = 0;
      for (let k = 0; k < idpx.length; k += 4) if (idpx[k] === r && idpx[k + 1] === g && idpx[k + 2] === b) n++;
      out.coverage[shaded[i].name] = (out.coverage[shaded[i].name] || 0) + n / (W * H);
      m.material = shaded[i];
    });
    renderer.toneMapping = mapping;
    renderer.render(scene, camera);
    const px = new Uint8Array(W * H * 4);
    gl.readPixels(0, 0, W, H, gl.RGBA, gl.UNSIGNED_BYTE, px);
    let drawn = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] < 245 || px[i + 1] < 245 || px[i + 2] < 245) drawn++;
    out.drawn_fraction = drawn / (W * H);
  }
} catch (e) {
  out.error = String(e) + '\\n' + (e.stack || '');
}
document.getElementById('result').textContent = JSON.stringify(out);
</script></body></html>
"""


def write_page(glb: Path, times: list[float], render_time: float = 0.0, eye=(0.0, 0.0, 0.75), fov: float = 30.0,
               center=None, room: bool = False, size: tuple[int, int] = (320, 320), camera: dict | None = None,
               env_hdr: str | None = None, name: str = "play.html") -> Path:
    """Write the page beside ``glb`` (sampling the clip at ``times`` s, drawing it at ``render_time`` s from a camera at
    ``center`` (default: the scene's bounding-box centre) + ``eye`` metres; ``room``: lit by three.js's RoomEnvironment
    instead of a hemisphere light) on a ``size`` (width, height) pixel canvas at the page's top-left; return its path.
    ``camera`` (``position``, ``target``, ``up``: world xyz; ``offset``: pixel shift of the principal point, and ``fov``
    degrees) replaces that camera, e.g. with a tracked video's. ``env_hdr``: the name of an equirectangular .hdr beside
    the GLB, in three.js's layout (middle column +X, +Z at three quarters), that alone lights the head."""
    cfg = {"glb": Path(glb).name, "times": list(times), "render_time": render_time, "eye": list(eye), "fov": fov,
           "center": None if center is None else list(center), "room": room, "size": list(size), "camera": camera, "env_hdr": env_hdr}
    page = Path(glb).parent / name
    page.write_text(_PAGE % {"three": THREE_DIR.resolve().as_uri(), "cfg": json.dumps(cfg)})
    return page
