"""A head model reduced to its landmark points: fast batched landmark positions for fitting.

Fitting hundreds of frames at once only needs the 478 landmark points, which are barycentric
combinations of a few hundred vertices of a 10-30k vertex mesh. Every per-vertex quantity the
forward pass uses (template, identity/expression/pose-corrective bases, skinning weights) is
linear in the vertex, so we mix those rows into per-point rows once and skin the points directly.
This equals :meth:`HeadModel.forward`'s landmarks up to blending the skinning weights inside a
triangle instead of the skinned corners (a difference far below a micrometre for real meshes).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..models.base import HeadModel
from ..models.lbs import batch_rodrigues, rigid_transforms

__all__ = ["LandmarkHead"]


class LandmarkHead(nn.Module):
    """The 478 landmarks (and optionally extra vertices) of a :class:`HeadModel`, batched.

    Args:
        model: a head model with a 478-point embedding (``model.has_landmarks``).
        extra_vertices: (K,) vertex indices also returned by :meth:`forward`, or None.
        response: the detector's view of the model (:func:`avatar3d.tracking.detector_response.load_response`):
            ``expression`` (E, 478, 3) and ``shape`` (S, 478, 3) metres per unit coefficient replace
            the mesh's own blendshape and identity motion of the landmark points and ``offset``
            (478, 3) metres moves their rest position (extra vertices keep the mesh's); or None.
    """

    def __init__(self, model: HeadModel, extra_vertices: Optional[Tensor] = None, response: Optional[dict[str, Tensor]] = None):
        super().__init__()
        if not model.has_landmarks:
            raise ValueError(f"head model {model.name!r} has no 478-point landmark embedding to fit")
        tri = model.faces[model.lmk_faces]  # (478, 3) vertex ids
        bary = model.lmk_bary.to(model.v_template.dtype)
        if extra_vertices is not None:
            ev = torch.as_tensor(extra_vertices, dtype=torch.long).reshape(-1)
            tri = torch.cat([tri, ev[:, None].expand(-1, 3)])
            bary = torch.cat([bary, bary.new_tensor([1.0, 0.0, 0.0]).expand(len(ev), 3)])
        self.num_landmarks = int(model.lmk_faces.shape[0])

        def mix(a: Tensor) -> Tensor:  # (V, ...) per-vertex rows -> (P, ...) per-point rows
            rows = a[tri]  # (P, 3, ...)
            b = bary.view(bary.shape + (1,) * (rows.ndim - 2))
            return (rows * b).sum(1).contiguous()

        if response is not None:
            mix = _with_response(mix, model, response, self.num_landmarks)
        self.register_buffer("p_template", mix(model.v_template))
        self.register_buffer("shapedirs", mix(model.shapedirs))  # (P, 3, S)
        # Stored as (E, 3P) so the batched expression blend is one GEMM.
        self.register_buffer("exprdirs", mix(model.exprdirs).permute(2, 0, 1).reshape(model.num_expression, -1).contiguous())
        self.register_buffer("weights", mix(model.lbs_weights))  # (P, J)
        self.register_buffer("parents", model.parents.clone())
        if model.posedirs is not None:
            n = model.posedirs.shape[0]
            pd = mix(model.posedirs.view(n, -1, 3).permute(1, 0, 2))  # (P, n, 3)
            self.register_buffer("posedirs", pd.permute(1, 0, 2).reshape(n, -1).contiguous())
        else:
            self.posedirs = None
        # Joints depend on identity only: J(beta) = J_template + J_dirs beta (exact, linear).
        self.register_buffer("j_template", model.j_regressor @ model.v_template)
        self.register_buffer("j_dirs", torch.einsum("jv,vcs->jcs", model.j_regressor, model.shapedirs))
        self.num_shape = model.num_shape
        self.num_expression = model.num_expression
        self.num_joints = model.num_joints

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """Posed points.

        Args:
            shape: (S,) identity shared by the batch, or (B, S) per item. expression: (B, E).
            pose: (B, J, 3) axis-angle.
            transl: (B, 3) metres.
        Returns:
            (B, 478, 3) landmarks and (B, K, 3) extra vertices (K = 0 when none), metres.
        """
        B = expression.shape[0]
        if shape.ndim == 1:
            p_shaped = (self.p_template + torch.einsum("pcs,s->pc", self.shapedirs, shape))[None]
            joints = (self.j_template + torch.einsum("jcs,s->jc", self.j_dirs, shape))[None].expand(B, -1, -1)
        else:
            p_shaped = self.p_template[None] + torch.einsum("pcs,bs->bpc", self.shapedirs, shape)
            joints = self.j_template[None] + torch.einsum("jcs,bs->bjc", self.j_dirs, shape)
        v = p_shaped + (expression @ self.exprdirs).view(B, -1, 3)
        J = self.num_joints
        rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, J, 3, 3)
        if self.posedirs is not None and J > 1:
            eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
            v = v + ((rot[:, 1:] - eye).reshape(B, -1) @ self.posedirs).view(B, -1, 3)
        _, skin = rigid_transforms(rot, joints, self.parents)
        T = (self.weights @ skin[:, :, :3, :].reshape(B, J, 12)).view(B, -1, 3, 4)  # per-point transforms
        pts = (T[..., :3] * v[:, :, None, :]).sum(-1) + T[..., 3] + transl[:, None]
        n = self.num_landmarks
        return pts[:, :n], pts[:, n:]


def _with_response(mix, model: HeadModel, response: dict[str, Tensor], L: int):
    """``mix`` with the landmark rows of the template, identity and expression bases taken from ``response``."""
    want = {"expression": (model.num_expression, L, 3), "shape": (model.num_shape, L, 3), "offset": (L, 3)}
    bad = {k: tuple(response[k].shape) if k in response else None for k in want if k not in response or tuple(response[k].shape) != want[k]}
    if bad:
        raise ValueError(f"response tables must have shapes {want}, got {bad}")

    def mixed(a: Tensor) -> Tensor:
        out = mix(a)
        if a is model.v_template:
            out[:L] += response["offset"].to(out.dtype)
        elif a is model.shapedirs:  # (P, 3, S)
            out[:L] = response["shape"].to(out.dtype).permute(1, 2, 0)
        elif a is model.exprdirs:  # (P, 3, E)
            out[:L] = response["expression"].to(out.dtype).permute(1, 2, 0)
        return out

    return mixed
