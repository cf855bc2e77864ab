"""A head model reduced to its landmark points: fast batched landmark positions for fitting.

Fitting hundreds of frames at once only needs the 478 landmark points, which are barycentric
combinations of a few hundred vertices of a 10-30k vertex mesh. Every per-vertex quantity the
forward pass uses (template, identity/expression/pose-corrective bases, skinning weights) is
linear in the vertex, so we mix those rows into per-point rows once and skin the points directly.
This equals :meth:`HeadModel.forward`'s landmarks up to blending the skinning weights inside a
triangle instead of the skinned corners (a difference far below a micrometre for real meshes).

Points are kept internally as (B, 3, P) ("structure of arrays"): every coordinate is then one
contiguous (B, P) plane, so the skinning and projection below are a handful of large elementwise
operations instead of many tiny 3x3 products. :func:`projected_landmark_loss` fuses skinning,
pinhole projection and the robust landmark term with a hand-written backward pass: it is the
inner loop of :func:`~avatar3d.tracking.fitting.fit_landmarks` (hundreds of iterations over all
frames), where autograd's generic graph cost several times more than the arithmetic.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..models.base import HeadModel
from ..models.lbs import batch_rodrigues, rigid_transforms
from .detector_model import load_response

__all__ = ["LandmarkHead", "landmark_head", "skin_points", "projected_landmark_loss"]


class LandmarkHead(nn.Module):
    """The 478 landmarks (and optionally extra vertices) of a :class:`HeadModel`, batched.

    Args:
        model: a head model with a 478-point embedding (``model.has_landmarks``).
        extra_vertices: (K,) vertex indices also returned by :meth:`forward`, or None.
        response: the detector's view of the model (:func:`avatar3d.tracking.detector_model.load_response`):
            ``expression`` (E, 478, 3) and ``shape`` (S, 478, 3) metres per unit coefficient replace
            the mesh's own blendshape and identity motion of the landmark points and ``offset``
            (478, 3) metres moves their rest position (extra vertices keep the mesh's); an optional
            ``correction`` (:class:`~avatar3d.tracking.detector_model.DetectorCorrection`) adds its
            non-linear part as a function of expressions and joint rotations; or None.
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
        self.num_points = int(tri.shape[0])

        def mix(a: Tensor) -> Tensor:  # (V, ...) per-vertex rows -> (P, ...) per-point rows
            rows = a[tri]  # (P, 3, ...)
            b = bary.view(bary.shape + (1,) * (rows.ndim - 2))
            return (rows * b).sum(1).contiguous()

        def soa(a: Tensor) -> Tensor:  # (P, 3, K) -> (K, 3P), coordinate-major: rows view as (3, P)
            return a.permute(2, 1, 0).reshape(a.shape[2], -1).contiguous()

        template, shapedirs, exprdirs = mix(model.v_template), mix(model.shapedirs), mix(model.exprdirs)  # (P, 3), (P, 3, S), (P, 3, E)
        #: True when the landmark rows come from the detector's view of the model (``response``)
        self.uses_response = response is not None
        if response is not None:
            L = self.num_landmarks
            _check_response(response, model.num_expression, model.num_shape, L)
            template[:L] += response["offset"].to(template.dtype)
            shapedirs[:L] = response["shape"].to(shapedirs.dtype).permute(1, 2, 0)
            exprdirs[:L] = response["expression"].to(exprdirs.dtype).permute(1, 2, 0)
        #: the non-linear part of the detector's view (landmark points only), or None
        self.correction = response.get("correction") if response is not None else None
        if self.correction is not None:
            # The table's offset is MediaPipe's view of the neutral face, measured directly; the network,
            # trained on random expression mixtures, is only right about what changes from there. At the
            # neutral face it added a bias of its own (inner lips 0.024 inter-ocular distances apart where
            # MediaPipe sees them closed), so closed lips could not be fitted closed: it is anchored at zero there.
            with torch.no_grad():
                rest = self.correction(torch.zeros(1, model.num_expression), torch.eye(3).expand(1, model.num_joints, 3, 3))
            self.register_buffer("correction_rest", rest)  # (1, 3, L) metres
        self.register_buffer("p_template", template.T.contiguous())  # (3, P)
        self.register_buffer("shapedirs", soa(shapedirs))  # (S, 3P)
        self.register_buffer("exprdirs", soa(exprdirs))  # (E, 3P): the batched blend is one GEMM
        if self.correction is not None:
            # The network's last layer is linear in its hidden features h (B, rank): its weights become rows below the
            # expression rows, its bias (less the neutral anchor) part of the template, so the corrected points are
            # one GEMM of [expression, h] (fewer passes over the (B, 3P) points in the fit's inner loop).
            basis, L, unit = self.correction.basis, self.num_landmarks, self.correction.unit
            rank = basis.weight.shape[1]
            rows = torch.zeros(rank, 3, self.num_points, dtype=template.dtype)
            rows[:, :, :L] = (basis.weight.detach().T * unit).reshape(rank, 3, L)
            offset = torch.zeros(3, self.num_points, dtype=template.dtype)
            offset[:, :L] = (basis.bias.detach() * unit).reshape(3, L) - self.correction_rest[0]
            self.register_buffer("mixdirs", torch.cat([self.exprdirs, rows.reshape(rank, -1)]))  # (E + rank, 3P)
            self.register_buffer("p_template_corrected", self.p_template + offset)  # (3, P)
        w = mix(model.lbs_weights)
        # Rows sum to 1 (up to float rounding, renormalised): the translation can then be part of the blend.
        self.register_buffer("weights_t", (w / w.sum(1, keepdim=True)).T.contiguous())  # (J, P)
        self.register_buffer("parents", model.parents.clone())
        self.parent_list = [int(p) for p in model.parents]  #: (J,) parents as ints, the root's first (-1)
        if model.posedirs is not None:
            n = model.posedirs.shape[0]
            pd = mix(model.posedirs.view(n, -1, 3).permute(1, 2, 0))  # (P, 3, n)
            self.register_buffer("posedirs", soa(pd))  # (n, 3P)
        else:
            self.posedirs = None
        # Joints depend on identity only: J(beta) = J_template + J_dirs beta (exact, linear).
        self.register_buffer("j_template", model.j_regressor @ model.v_template)
        self.register_buffer("j_dirs", torch.einsum("jv,vcs->jcs", model.j_regressor, model.shapedirs))
        self.num_shape = model.num_shape
        self.num_expression = model.num_expression
        self.num_joints = model.num_joints

    def joints(self, shape: Tensor) -> Tensor:
        """Rest joint locations (J, 3) for an (S,) identity, or (B, J, 3) for (B, S) identities."""
        if shape.ndim == 1:
            return self.j_template + torch.einsum("jcs,s->jc", self.j_dirs, shape)
        return self.j_template[None] + torch.einsum("jcs,bs->bjc", self.j_dirs, shape)

    def rest_points(self, shape: Tensor, expression: Tensor, rot: Optional[Tensor] = None, correct: bool = True) -> Tensor:
        """(B, 3, P) unposed points: identity + expression blendshapes (+ pose correctives and the detector
        correction, which need ``rot``).

        Args:
            shape: (S,) shared or (B, S) per item. expression: (B, E). rot: (B, J, 3, 3) local joint rotations.
            correct: add :attr:`correction` (when there is one and ``rot`` is given).
        """
        B, P = expression.shape[0], self.num_points
        corrected = correct and self.correction is not None and rot is not None
        template = self.p_template_corrected if corrected else self.p_template
        if shape.ndim == 1:
            base = (template.reshape(-1) + shape @ self.shapedirs)[None]  # (1, 3P), shared by the batch
        else:
            base = template.reshape(1, -1) + shape @ self.shapedirs  # (B, 3P)
        if corrected:  # the network's hidden layer and the expressions through one GEMM (see __init__)
            c = self.correction
            v = torch.addmm(base, torch.cat([expression, c.net(c.features(expression, rot))], 1), self.mixdirs)
        else:
            v = torch.addmm(base, expression, self.exprdirs)
        if self.posedirs is not None and rot is not None and self.num_joints > 1:
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
            v = v + (rot[:, 1:] - eye).reshape(B, -1) @ self.posedirs
        v = v.view(B, 3, P)
        return v

    def skin_transforms(self, shape: Tensor, rot: Tensor) -> Tensor:
        """(B, J, 3, 4) transforms taking rest-pose points to posed points (model frame, no translation).

        Args:
            shape: (S,) or (B, S) identity. rot: (B, J, 3, 3) local joint rotations.
        """
        B = rot.shape[0]
        j = self.joints(shape)
        j = j[None].expand(B, -1, -1) if j.ndim == 2 else j
        return rigid_transforms(rot, j, self.parents)[1][:, :, :3, :]

    def camera_transforms(self, shape: Tensor, rot: Tensor, transl: Tensor, world_to_cam: Tensor) -> Tensor:
        """(B, J, 3, 4) joint transforms taking rest-pose points into the OpenCV camera frame.

        Skinning, the model translation (B, 3) metres and the (4, 4) ``world_to_cam`` composed on
        the J joints, so the per-point work (:func:`projected_landmark_loss`) is one affine map.
        Equal to ``world_to_cam`` after :meth:`skin_transforms` and the translation, chained as 3x4 maps with
        the camera folded into the root (the fit's inner loop: a third of the graph nodes of 4x4 products).
        """
        Rc, tc = world_to_cam[:3, :3], world_to_cam[:3, 3]
        j = self.joints(shape)  # (J, 3) or (B, J, 3) rest joints
        j = j[None].expand(rot.shape[0], -1, -1) if j.ndim == 2 else j
        Rs = [torch.matmul(Rc, rot[:, 0])]  # joint k's rotation into the camera
        ts = [(j[:, 0] + transl) @ Rc.T + tc]  # joint k's posed position in the camera
        for k, p in enumerate(self.parent_list[1:], 1):
            Rs.append(torch.bmm(Rs[p], rot[:, k]))
            ts.append(ts[p] + torch.bmm(Rs[p], (j[:, k] - j[:, p])[..., None])[..., 0])
        R = torch.stack(Rs, 1)  # (B, J, 3, 3)
        t = torch.stack(ts, 1) - (R @ j[..., None])[..., 0]  # the rest joint location removed: applies to rest points
        return torch.cat([R, t[..., None]], -1)

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """Posed points.

        Args:
            shape: (S,) identity shared by the batch, or (B, S) per item. expression: (B, E).
            pose: (B, J, 3) axis-angle.
            transl: (B, 3) metres.
        Returns:
            (B, 478, 3) landmarks and (B, K, 3) extra vertices (K = 0 when none), metres.
        """
        B, J = expression.shape[0], self.num_joints
        rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, J, 3, 3)
        A = self.skin_transforms(shape, rot)
        A = torch.cat([A[..., :3], A[..., 3:] + transl[:, None, :, None]], -1)
        pts = skin_points(A, self.rest_points(shape, expression, rot), self.weights_t).transpose(1, 2)
        n = self.num_landmarks
        return pts[:, :n], pts[:, n:]


def landmark_head(model: HeadModel, response: bool = True, correction: bool = True) -> LandmarkHead:
    """The :class:`LandmarkHead` the fit compares with detections: with MediaPipe's measured view of the
    model (:func:`~avatar3d.tracking.detector_model.load_response`) where one ships and ``response`` is
    on, and its non-linear correction where ``correction`` is also on (the fit passes
    ``FitConfig.detector_response`` / ``detector_correction``; NME and refinement use the defaults)."""
    return LandmarkHead(model, response=load_response(model, correction=correction) if response else None)


def blend_transforms(A: Tensor, weights_t: Tensor) -> Tensor:
    """(B, J, 3, 4) joint transforms, (J, P) skinning weights -> (B, 3, 4, P) per-point transforms (one GEMM)."""
    B, J = A.shape[:2]
    return (A.reshape(B, J, 12).transpose(1, 2).reshape(B * 12, J) @ weights_t).view(B, 3, 4, -1)


def _apply(T: Tensor, v: Tensor) -> Tensor:
    """Per-point affine transforms (B, 3, 4, P) applied to points (B, 3, P) -> (B, 3, P)."""
    if torch.is_grad_enabled() and (T.requires_grad or v.requires_grad):
        return (T[:, :, :3] * v[:, None]).sum(2) + T[:, :, 3]
    # In place, one coordinate plane at a time: no (B, 3, 3, P) temporary (2.5x faster on a CPU).
    cam = T[:, :, 3].clone()
    for k in range(3):
        cam.addcmul_(T[:, :, k], v[:, None, k])
    return cam


def skin_points(A: Tensor, v: Tensor, weights_t: Tensor) -> Tensor:
    """Linear blend skinning of (B, 3, P) points with (B, J, 3, 4) joint transforms and (J, P) weights -> (B, 3, P)."""
    return _apply(blend_transforms(A, weights_t), v)


class _ProjectedLandmarkLoss(torch.autograd.Function):
    """Skinning + pinhole projection + weighted pseudo-Huber residual, with an analytic backward.

    Autograd of the same expression records ~40 nodes on (B, P)-sized tensors (slices, broadcasts,
    zero-filled slice gradients); here the backward pass is ~15 fused elementwise operations and
    two GEMMs, and only the tensors it needs are kept.
    """

    @staticmethod
    def forward(ctx, v: Tensor, A: Tensor, focal: Tensor, pp: Tensor, target: Tensor, weights_t: Tensor,
                point_w: Tensor, scale: float, delta: float) -> Tensor:
        # (Autograd is off in here, so the (B, P) planes below are updated in place: fewer
        # allocations of the 0.7 MB-per-plane tensors of a 350-frame batch.)
        T = blend_transforms(A, weights_t)
        x, y, z = _apply(T, v).unbind(1)
        iz = z.clamp_min(1e-6).reciprocal_()
        fz = focal[:, None] * iz
        ru = (x * fz).add_(pp[:, :1]).sub_(target[:, 0]).mul_(scale)  # residual in inter-ocular units
        rv = (y * fz).add_(pp[:, 1:]).sub_(target[:, 1]).mul_(scale)
        s = (ru * ru).addcmul_(rv, rv).add_(delta * delta).sqrt_()
        per_frame = (s - delta) @ point_w  # (B,): sum_p w_p rho_p
        ctx.save_for_backward(v, T, x, y, iz, fz, ru, rv, s, focal, weights_t, point_w)
        ctx.scale = scale
        return per_frame

    @staticmethod
    def backward(ctx, g: Tensor):
        v, T, x, y, iz, fz, ru, rv, s, focal, weights_t, point_w = ctx.saved_tensors
        B, P = x.shape
        c = (g[:, None] * point_w[None]).mul_(ctx.scale).div_(s).mul_(fz)  # d rho / d r, / |r|, times d u / d x
        g_cam = torch.empty(B, 3, P, dtype=x.dtype, device=x.device)
        gx, gy = torch.mul(c, ru, out=g_cam[:, 0]), torch.mul(c, rv, out=g_cam[:, 1])  # d loss / d camera x, y
        gxy = (gx * x).addcmul_(gy, y)
        torch.mul(gxy, iz, out=g_cam[:, 2]).neg_()  # through the perspective division
        g_focal = (gxy / focal[:, None]).sum(1) if ctx.needs_input_grad[2] else None
        g_v = g_A = None
        if ctx.needs_input_grad[0]:  # g_v[k] = sum_i T[i, k] g_cam[i], accumulated in place
            g_v = T[:, 0, :3] * g_cam[:, 0:1]
            g_v.addcmul_(T[:, 1, :3], g_cam[:, 1:2]).addcmul_(T[:, 2, :3], g_cam[:, 2:3])
        if ctx.needs_input_grad[1]:  # d/dT = g_cam (x) [v; 1], pulled back through the blend (two GEMMs)
            J, W = weights_t.shape[0], weights_t.T
            g_lin = ((g_cam[:, :, None] * v[:, None]).view(B * 9, P) @ W).view(B, 3, 3, J)
            g_t = (g_cam.view(B * 3, P) @ W).view(B, 3, 1, J)
            g_A = torch.cat([g_lin, g_t], 2).permute(0, 3, 1, 2)
        return g_v, g_A, g_focal, None, None, None, None, None, None


def projected_landmark_loss(v: Tensor, A: Tensor, focal: Tensor, pp: Tensor, target: Tensor, weights_t: Tensor,
                            point_w: Tensor, scale: float, delta: float) -> Tensor:
    """Per-frame robust landmark term of posed, projected points (differentiable in v, A and focal).

    ``sum_p point_w[p] * (sqrt(|r_p|² + delta²) - delta)`` with ``r_p = (uv_p - target_p) * scale``.

    Args:
        v: (B, 3, P) rest points (:meth:`LandmarkHead.rest_points`).
        A: (B, J, 3, 4) joint transforms to the OpenCV camera frame (skinning, translation and
            world_to_cam composed), metres.
        focal: (B,) focal lengths in pixels. pp: (B, 2) principal points in pixels.
        target: (B, 2, P) detected pixels. weights_t: (J, P) skinning weights. point_w: (P,) weights.
        scale: 1 / pixel unit of the residual (e.g. 1 / inter-ocular distance). delta: pseudo-Huber width.
    Returns:
        (B,) loss per frame.
    """
    return _ProjectedLandmarkLoss.apply(v, A, focal, pp, target, weights_t, point_w, float(scale), float(delta))


def project_points(v: Tensor, A: Tensor, focal: Tensor, pp: Tensor, weights_t: Tensor) -> Tensor:
    """(B, P, 2) pixels of the points :func:`projected_landmark_loss` compares (same arguments)."""
    cam = skin_points(A, v, weights_t)
    uv = cam[:, :2] * (focal[:, None] / cam[:, 2].clamp_min(1e-6))[:, None] + pp[:, :, None]
    return uv.transpose(1, 2)


def _check_response(response: dict[str, Tensor], E: int, S: int, L: int) -> None:
    """Raise ValueError unless ``response`` has ``expression`` (E, L, 3), ``shape`` (S, L, 3) and ``offset`` (L, 3)."""
    want = {"expression": (E, L, 3), "shape": (S, L, 3), "offset": (L, 3)}
    bad = {k: tuple(response[k].shape) if k in response else None for k in want if k not in response or tuple(response[k].shape) != want[k]}
    if bad:
        raise ValueError(f"response tables must have shapes {want}, got {bad}")
