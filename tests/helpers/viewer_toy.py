"""A small synthetic head (ellipsoid + a few blendshapes + 5-joint skeleton) for viewer tests, masks
around its mouth and forehead in a rendered frame, and a synthetic tracking folder of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import trimesh
from PIL import Image

from avatar3d.data.sequence import TrackedSequence
from avatar3d.models.base import HeadModel, HeadModelData
from avatar3d.viewer.scene import project

if TYPE_CHECKING:  # the headless renderer needs Open3D; the parameter tests do not
    from avatar3d.viewer.headless import HeadlessRenderer

JAW_REGION_Y = -0.02  # vertices below this on the front move with jawOpen
FOREHEAD_Y = 0.05


def toy_head_data(subdivisions: int = 4) -> HeadModelData:
    """An ellipsoidal 'head' (~15 x 20 x 18 cm) with jawOpen / browInnerUp / eyeBlinkLeft / mouthSmileLeft."""
    ico = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = np.asarray(ico.vertices) * np.array([0.075, 0.1, 0.09])
    f = np.asarray(ico.faces)
    V = len(v)
    x, y, z = v.T
    front = np.clip(z / 0.09, 0, 1)
    jaw_w = np.clip((JAW_REGION_Y - y) / 0.03, 0, 1) * front
    E = np.zeros((V, 3, 4))
    E[:, 1, 0] = -0.03 * jaw_w  # jawOpen: the lower front drops 3 cm
    E[:, 2, 0] = -0.005 * jaw_w
    E[:, 1, 1] = 0.012 * np.clip((y - 0.03) / 0.03, 0, 1) * front  # browInnerUp
    eye = np.exp(-((x - 0.03) ** 2 + (y - 0.025) ** 2) / 0.0001) * front
    E[:, 1, 2] = -0.006 * eye  # eyeBlinkLeft
    smile = np.exp(-((x - 0.025) ** 2 + (y + 0.035) ** 2) / 0.0002) * front
    E[:, 0, 3], E[:, 1, 3] = 0.006 * smile, 0.006 * smile  # mouthSmileLeft
    S = np.zeros((V, 3, 3))
    S[:, 0, 0], S[:, 1, 1], S[:, 2, 2] = 0.01 * x / 0.075, 0.01 * y / 0.1, 0.01 * z / 0.09  # width, height, depth
    joints = np.array([[0, 0, 0], [0, -0.08, -0.01], [0, -0.02, 0.0], [0.03, 0.025, 0.07], [-0.03, 0.025, 0.07]])
    # Regressor: each joint is the mean of its nearest 8 vertices' offset-compensated position.
    jr = np.zeros((5, V))
    for j, p in enumerate(joints):
        near = np.argsort(np.linalg.norm(v - p, axis=1))[:8]
        jr[j, near] = 1 / 8
    # Shift the template so regressed joints land where we want (mean of near vertices != p).
    W = np.zeros((V, 5))
    W[:, 2] = jaw_w
    W[:, 1] = 1 - jaw_w
    u = np.arctan2(x, z) / (2 * np.pi) + 0.5
    vv = (y / 0.1 + 1) / 2
    uvs = np.stack([u, vv], 1)
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32] = (200, 60, 50)  # top half of the image = top of the head (v near 1)
    tex[32:] = (60, 90, 200)
    faces_front = np.where(v[f].mean(1)[:, 2] > 0.05)[0]
    lmk_faces = faces_front[np.linspace(0, len(faces_front) - 1, 478).astype(int)]
    return HeadModelData(
        name="toy", version="1", v_template=v, faces=f, uvs=uvs, uv_faces=f.copy(), shapedirs=S, exprdirs=E,
        expression_names=["jawOpen", "browInnerUp", "eyeBlinkLeft", "mouthSmileLeft"],
        joint_names=["root", "neck", "jaw", "eye_left", "eye_right"], parents=np.array([-1, 0, 1, 1, 1]),
        j_regressor=jr, lbs_weights=W, lmk_faces=lmk_faces, lmk_bary=np.full((478, 3), 1 / 3),
        regions={"face": z > 0}, extras={"albedo": tex},
    )


def toy_head() -> HeadModel:
    return HeadModel(toy_head_data())


def region_mask(points: np.ndarray, r: HeadlessRenderer, radius: int = 3) -> np.ndarray:
    """(H, W) bool: discs around the projected points."""
    m = np.zeros((r.height, r.width), np.uint8)
    for x, y in project(points, r.K, r.world_to_cam).round().astype(int):
        cv2.circle(m, (int(x), int(y)), radius, 1, -1)
    return m.astype(bool)


def mouth_and_forehead(toy, r: HeadlessRenderer) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) bool masks around the toy head's front mouth/jaw and forehead vertices."""
    v = toy.v_template.numpy()
    front = v[:, 2] > 0.04
    return region_mask(v[front & (v[:, 1] < JAW_REGION_Y - 0.02)], r), region_mask(v[front & (v[:, 1] > FOREHEAD_Y)], r)


def rasterize_silhouette(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, w2c: np.ndarray, w: int, h: int) -> np.ndarray:
    """Reference mask, independent of Open3D: fill every projected triangle (OpenCV camera)."""
    uv = project(verts, K, w2c)
    m = np.zeros((h, w), np.uint8)
    pts = (uv[faces] * 16).round().astype(np.int32)  # 4 fractional bits, as cv2's shift=4 expects
    for tri in pts:  # one by one: fillPoly on all of them would apply the even-odd rule to overlaps
        cv2.fillConvexPoly(m, tri, 255, lineType=cv2.LINE_8, shift=4)
    return m


def synthetic_sequence(model, directory, n: int = 3, size: int = 160) -> TrackedSequence:
    E, J = model.num_expression, model.num_joints
    expr = np.zeros((n, E), np.float32)
    expr[:, 0] = np.linspace(0, 1, n)
    pose = np.zeros((n, J, 3), np.float32)
    pose[:, 0, 1] = np.deg2rad(np.linspace(-25, 25, n))  # head turns
    pose[:, 0, 0] = np.deg2rad(10)
    transl = np.tile(np.array([0.01, -0.005, 0.0], np.float32), (n, 1))
    f = 2.2 * size
    K = np.tile(np.array([[f, 0, size / 2 + 3], [0, f, size / 2 - 2], [0, 0, 1]], np.float32), (n, 1, 1))
    # Camera 0.55 m in front of the face, slightly rolled (not the viewer's own frontal camera).
    a = np.deg2rad(8)
    Rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    R = Rz @ np.diag([1.0, -1.0, -1.0])
    w2c = np.eye(4, dtype=np.float32)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ np.array([0.0, 0.0, 0.55])
    seq = TrackedSequence(model="toy", model_version="1", fps=25.0, shape=np.zeros(model.num_shape, np.float32), expression=expr,
                          pose=pose, transl=transl, K=K, world_to_cam=np.tile(w2c, (n, 1, 1)), width=size, height=size,
                          joint_names=list(model.joint_names), expression_names=list(model.expression_names))
    seq.save(directory)
    (directory / "images").mkdir()
    (directory / "masks").mkdir()
    faces = model.faces.numpy()
    with torch.no_grad():
        verts = model(expression=torch.from_numpy(expr), pose=torch.from_numpy(pose), transl=torch.from_numpy(transl)).vertices.numpy()
    for i in range(n):
        mask = rasterize_silhouette(verts[i], faces, K[i].astype(float), w2c.astype(float), size, size)
        Image.fromarray(mask).save(directory / "masks" / f"{i:06d}.png")
        img = np.dstack([mask // 2 + 40] * 3).astype(np.uint8)
        Image.fromarray(img).save(directory / "images" / f"{i:06d}.png")
    return seq
