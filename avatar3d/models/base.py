"""The one interface every head model implements.

A :class:`HeadModel` is a small ``nn.Module`` in the spirit of smplx: all data lives in explicit
buffers, and :meth:`HeadModel.forward` maps parameters to a :class:`HeadOutput` of vertices,
joints and landmarks, batched and differentiable. Units are metres; the head looks down +Z with
+Y up (the glTF convention), so a camera on the +Z axis sees the face.

Implementations (``builtin.py``, ``ict.py``, ``flame.py``) only *build* the buffers; the maths of
shape/expression blending, pose correctives and linear blend skinning is here, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from .lbs import lbs

__all__ = ["HeadModel", "HeadOutput", "HeadModelData", "REGION_NAMES", "STANDARD_JOINTS"]

#: Region masks every model provides (a model may add more).
REGION_NAMES = ("face", "scalp", "eyes", "mouth_interior", "neck_boundary")

#: Joint names used across models (a model has a subset, always starting with "root").
STANDARD_JOINTS = ("root", "neck", "jaw", "eye_left", "eye_right")


@dataclass
class HeadOutput:
    """What :meth:`HeadModel.forward` returns. B = batch, V = vertices, J = joints."""

    vertices: Tensor  #: (B, V, 3) posed vertices in metres
    joints: Tensor  #: (B, J, 3) posed joint locations in metres
    landmarks: Tensor  #: (B, 478, 3) MediaPipe face-mesh points (468 + 10 iris) on the surface
    landmarks68: Tensor  #: (B, 68, 3) iBUG / Multi-PIE 68 points on the surface
    vertices_unposed: Tensor  #: (B, V, 3) after shape + expression (+ correctives), before skinning


@dataclass
class HeadModelData:
    """Plain NumPy arrays a model is built from (what loaders/generators produce).

    V vertices, F triangles, T UV coordinates, S identity modes, E expressions, J joints.
    """

    name: str
    version: str
    v_template: np.ndarray  # (V, 3) float, metres
    faces: np.ndarray  # (F, 3) int
    uvs: np.ndarray  # (T, 2) float in [0, 1], origin bottom-left (OBJ/glTF-v-flipped convention: OBJ)
    uv_faces: np.ndarray  # (F, 3) int into uvs (seams: a vertex may have several UVs)
    shapedirs: np.ndarray  # (V, 3, S) identity basis, metres per unit coefficient
    exprdirs: np.ndarray  # (V, 3, E) expression basis
    expression_names: list[str]
    joint_names: list[str]  # J names, first is "root"
    parents: np.ndarray  # (J,) int, parents[0] == -1
    j_regressor: np.ndarray  # (J, V) joints = j_regressor @ shaped vertices
    lbs_weights: np.ndarray  # (V, J) rows sum to 1
    posedirs: Optional[np.ndarray] = None  # (P, V*3) with P = (J-1)*9, or None
    regions: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (V,) bool
    lmk_faces: Optional[np.ndarray] = None  # (478,) int triangle index
    lmk_bary: Optional[np.ndarray] = None  # (478, 3) barycentric coordinates
    lmk68_faces: Optional[np.ndarray] = None  # (68,) int
    lmk68_bary: Optional[np.ndarray] = None  # (68, 3)
    shape_std: Optional[np.ndarray] = None  # (S,) prior std of identity coefficients (1 = unit PCA)
    expression_range: tuple[float, float] = (0.0, 1.0)  # valid coefficient range (blendshape weights)
    extras: dict = field(default_factory=dict)  # model-specific (e.g. texture space)
    # FLAME/smplx regress joints from the identity+expression mesh; models without that convention
    # (builtin, ICT) regress them from the identity-only mesh so expressions never move the skeleton.
    joints_from_expression: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent array."""
        V = len(self.v_template)
        J = len(self.joint_names)

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ValueError(f"{self.name} head model: {what}")

        need(self.v_template.ndim == 2 and self.v_template.shape[1] == 3, f"v_template must be (V, 3), got {self.v_template.shape}")
        need(self.faces.ndim == 2 and self.faces.shape[1] == 3, f"faces must be (F, 3) triangles, got {self.faces.shape}")
        need(self.faces.size == 0 or (self.faces.min() >= 0 and self.faces.max() < V), f"faces index outside 0..{V - 1}")
        need(self.uv_faces.shape == self.faces.shape, f"uv_faces must match faces {self.faces.shape}, got {self.uv_faces.shape}")
        need(self.uvs.ndim == 2 and self.uvs.shape[1] == 2, f"uvs must be (T, 2), got {self.uvs.shape}")
        need(self.uv_faces.size == 0 or self.uv_faces.max() < len(self.uvs), "uv_faces index outside uvs")
        need(self.shapedirs.shape[:2] == (V, 3), f"shapedirs must be ({V}, 3, S), got {self.shapedirs.shape}")
        need(self.exprdirs.shape[:2] == (V, 3), f"exprdirs must be ({V}, 3, E), got {self.exprdirs.shape}")
        need(len(self.expression_names) == self.exprdirs.shape[2], f"{len(self.expression_names)} expression names for {self.exprdirs.shape[2]} expressions")
        need(J >= 1 and self.joint_names[0] == "root", "first joint must be 'root'")
        need(self.parents.shape == (J,) and self.parents[0] == -1, f"parents must be ({J},) with parents[0] == -1")
        need(self.j_regressor.shape == (J, V), f"j_regressor must be ({J}, {V}), got {self.j_regressor.shape}")
        need(self.lbs_weights.shape == (V, J), f"lbs_weights must be ({V}, {J}), got {self.lbs_weights.shape}")
        if self.posedirs is not None:
            need(self.posedirs.shape == ((J - 1) * 9, V * 3), f"posedirs must be ({(J - 1) * 9}, {V * 3}), got {self.posedirs.shape}")
        for k, m in self.regions.items():
            need(m.shape == (V,), f"region {k!r} mask must be ({V},), got {m.shape}")
        for nm, f, b, n in (("lmk", self.lmk_faces, self.lmk_bary, 478), ("lmk68", self.lmk68_faces, self.lmk68_bary, 68)):
            if f is not None:
                need(f.shape == (n,) and b is not None and b.shape == (n, 3), f"{nm} embedding must be ({n},) faces and ({n}, 3) barycentrics")


def _as_batch(x: Optional[Tensor], B: int, n: int, what: str, ref: Tensor) -> Tensor:
    """Return x as (B, n), zero-filled when None, with a clear error on a wrong length."""
    if x is None:
        return ref.new_zeros(B, n)
    x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] > n:
        raise ValueError(f"{what}: expected shape (B, {n}) (or fewer than {n} leading coefficients), got {tuple(x.shape)}")
    if x.shape[1] < n:  # leading coefficients only, like smplx's num_betas
        x = torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1])], dim=1)
    if x.shape[0] != B:
        if x.shape[0] == 1:
            x = x.expand(B, n)
        else:
            raise ValueError(f"{what}: batch size {x.shape[0]} does not match {B}")
    return x


class HeadModel(nn.Module):
    """A parametric head: identity (shape) + expression blendshapes + skeleton with LBS.

    Build with ``HeadModel(data)`` from a :class:`HeadModelData`; loaders in this package do that
    (``avatar3d.models.load_head_model("builtin")``).

    Buffers (V vertices, F faces, S identity modes, E expressions, J joints):
      ``v_template`` (V,3), ``faces`` (F,3), ``uvs`` (T,2), ``uv_faces`` (F,3), ``shapedirs`` (V,3,S),
      ``exprdirs`` (V,3,E), ``j_regressor`` (J,V), ``lbs_weights`` (V,J), ``parents`` (J,),
      ``posedirs`` (P,3V) when the model has pose correctives, ``region_masks`` (R,V) bool,
      ``lmk_faces``/``lmk_bary`` (478,)/(478,3), ``lmk68_faces``/``lmk68_bary`` (68,)/(68,3).
    """

    def __init__(self, data: HeadModelData, dtype: torch.dtype = torch.float32):
        super().__init__()
        data.validate()
        self.name = data.name
        self.version = data.version
        self.expression_names = list(data.expression_names)
        self.joint_names = list(data.joint_names)
        self.region_names = list(data.regions)
        self.expression_range = tuple(data.expression_range)
        self.extras = dict(data.extras)
        self.joints_from_expression = bool(data.joints_from_expression)

        def f(a):
            return torch.as_tensor(np.asarray(a), dtype=dtype)

        def i(a):
            return torch.as_tensor(np.asarray(a).astype(np.int64))

        self.register_buffer("v_template", f(data.v_template))
        self.register_buffer("faces", i(data.faces))
        self.register_buffer("uvs", f(data.uvs))
        self.register_buffer("uv_faces", i(data.uv_faces))
        self.register_buffer("shapedirs", f(data.shapedirs))
        self.register_buffer("exprdirs", f(data.exprdirs))
        self.register_buffer("j_regressor", f(data.j_regressor))
        self.register_buffer("lbs_weights", f(data.lbs_weights))
        self.register_buffer("parents", i(data.parents))
        self.register_buffer("posedirs", f(data.posedirs) if data.posedirs is not None else None)
        V = len(data.v_template)
        masks = np.stack([data.regions[k] for k in self.region_names]) if self.region_names else np.zeros((0, V), bool)
        self.register_buffer("region_masks", torch.as_tensor(masks.astype(bool)))
        S = data.shapedirs.shape[2]
        self.register_buffer("shape_std", f(data.shape_std) if data.shape_std is not None else torch.ones(S, dtype=dtype))
        for nm in ("lmk_faces", "lmk_bary", "lmk68_faces", "lmk68_bary"):
            a = getattr(data, nm)
            conv = i if nm.endswith("faces") else f
            self.register_buffer(nm, conv(a) if a is not None else None)

    # ------------------------------------------------------------------ sizes and names
    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    @property
    def num_shape(self) -> int:
        return self.shapedirs.shape[2]

    @property
    def num_expression(self) -> int:
        return self.exprdirs.shape[2]

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def has_landmarks(self) -> bool:
        return self.lmk_faces is not None

    def region(self, name: str) -> Tensor:
        """(V,) bool mask of a named region (see ``region_names``)."""
        if name not in self.region_names:
            raise KeyError(f"{self.name} has no region {name!r}; it has {', '.join(self.region_names)}")
        return self.region_masks[self.region_names.index(name)]

    def expression_index(self, name: str) -> int:
        if name not in self.expression_names:
            raise KeyError(f"{self.name} has no expression {name!r}; valid names: {', '.join(self.expression_names)}")
        return self.expression_names.index(name)

    def expression_vector(self, weights: dict[str, float], batch: int = 1) -> Tensor:
        """(batch, E) expression coefficients from ``{name: weight}`` (others 0)."""
        e = self.v_template.new_zeros(batch, self.num_expression)
        for k, w in weights.items():
            e[:, self.expression_index(k)] = float(w)
        return e

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        shape: Optional[Tensor] = None,
        expression: Optional[Tensor] = None,
        pose: Optional[Tensor] = None,
        transl: Optional[Tensor] = None,
        *,
        global_orient: Optional[Tensor] = None,
        neck_pose: Optional[Tensor] = None,
        jaw_pose: Optional[Tensor] = None,
        eye_pose: Optional[Tensor] = None,
        batch_size: Optional[int] = None,
        shaped: Optional[Tensor] = None,
    ) -> HeadOutput:
        """Pose the head.

        Args:
            shape: (B, S) identity coefficients (fewer than S leading ones are zero-padded).
            expression: (B, E) expression coefficients (blendshape weights for ARKit models).
            pose: (B, J, 3) axis-angle rotation of every joint in ``joint_names`` order (radians).
            transl: (B, 3) translation in metres, applied last.
            global_orient, neck_pose, jaw_pose: (B, 3) axis-angle; override the matching joint of
                ``pose``. A joint the model lacks raises ``ValueError`` unless the value is all zero.
            eye_pose: (B, 6) left then right eye axis-angle.
            batch_size: B when no argument carries it.
            shaped: (B, V, 3) or (1, V, 3) :meth:`shaped_template` of ``shape``, given by a caller that poses one
                identity many times (an avatar's renders) so the identity blendshape is not recomputed each call.
        Returns:
            :class:`HeadOutput` with (B, V, 3) vertices, (B, J, 3) joints, (B, 478, 3) and (B, 68, 3)
            landmarks (NaN-free zeros if the model has no embedding).
        """
        ref = self.v_template
        B = batch_size or 1
        for t in (shape, expression, pose, transl, global_orient, neck_pose, jaw_pose, eye_pose):
            if t is not None and torch.as_tensor(t).ndim >= 2:
                B = torch.as_tensor(t).shape[0]
                break
        betas = _as_batch(shape, B, self.num_shape, "shape", ref)
        expr = _as_batch(expression, B, self.num_expression, "expression", ref)
        J = self.num_joints
        if pose is None:
            full_pose = ref.new_zeros(B, J, 3)
        else:
            full_pose = torch.as_tensor(pose, dtype=ref.dtype, device=ref.device)
            if full_pose.ndim == 2 and full_pose.shape[1] == J * 3:
                full_pose = full_pose.view(-1, J, 3)
            if full_pose.ndim != 3 or full_pose.shape[1:] != (J, 3):
                raise ValueError(f"pose: expected shape (B, {J}, 3) for joints {self.joint_names}, got {tuple(full_pose.shape)}")
            if full_pose.shape[0] != B:
                full_pose = full_pose.expand(B, J, 3)
        overrides = {"root": global_orient, "neck": neck_pose, "jaw": jaw_pose}
        if eye_pose is not None:
            ep = _as_batch(eye_pose, B, 6, "eye_pose", ref)
            overrides["eye_left"], overrides["eye_right"] = ep[:, :3], ep[:, 3:]
        cols = list(full_pose.unbind(1))
        for jname, val in overrides.items():
            if val is None:
                continue
            val = _as_batch(val, B, 3, f"{jname} pose", ref)
            if jname not in self.joint_names:
                if bool((val != 0).any()):
                    raise ValueError(f"{self.name} has no '{jname}' joint (joints: {', '.join(self.joint_names)})")
                continue
            cols[self.joint_names.index(jname)] = val
        full_pose = torch.stack(cols, 1)

        v_shaped = self.shaped_template(betas) if shaped is None else shaped.to(ref).expand(B, -1, -1)
        v_expr = v_shaped + torch.einsum("vce,be->bvc", self.exprdirs, expr)
        # Joints come from the identity-shaped mesh unless the model says otherwise (FLAME/smplx
        # regress them after expression blendshapes too: ``joints_from_expression``).
        v_joints = v_expr if self.joints_from_expression else v_shaped
        verts, joints, v_unposed = lbs(v_expr, v_joints, full_pose, self.j_regressor, self.parents, self.lbs_weights, self.posedirs)
        if transl is not None:
            t = _as_batch(transl, B, 3, "transl", ref)[:, None]
            verts, joints = verts + t, joints + t
        return HeadOutput(
            vertices=verts,
            joints=joints,
            landmarks=self.surface_points(verts, self.lmk_faces, self.lmk_bary, 478),
            landmarks68=self.surface_points(verts, self.lmk68_faces, self.lmk68_bary, 68),
            vertices_unposed=v_unposed,
        )

    def shaped_template(self, shape: Tensor) -> Tensor:
        """(B, V, 3) the unposed mesh of identities ``shape`` (B, S) (fewer leading coefficients are zero-padded), no
        expression, metres."""
        betas = _as_batch(shape, shape.shape[0] if shape.ndim == 2 else 1, self.num_shape, "shape", self.v_template)
        return self.v_template[None] + torch.einsum("vcs,bs->bvc", self.shapedirs, betas)

    def surface_points(self, verts: Tensor, face_idx: Optional[Tensor], bary: Optional[Tensor], n: int) -> Tensor:
        """(B, n, 3) points given by triangle indices + barycentrics on (B, V, 3) vertices."""
        if face_idx is None:
            return verts.new_zeros(verts.shape[0], n, 3)
        tri = verts[:, self.faces[face_idx]]  # (B, n, 3 corners, 3)
        return (tri * bary[None, :, :, None]).sum(2)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, version={self.version!r}, vertices={self.num_vertices}, faces={len(self.faces)}, "
            f"shape={self.num_shape}, expression={self.num_expression}, joints={self.joint_names}"
        )

