"""Differentiable head renderer: the textured, SH-lit :class:`~avatar3d.models.base.HeadModel`, albedo initialisation.

Shared by every stage that renders the tracked head differentiably (the photometric refinement of
tracking, which keeps its losses, appearance maps, avatars). Everything here is built from the
differentiable mesh ops in :mod:`avatar3d.render.mesh` (rasterize -> interpolate -> texture -> antialias).
Shapes: B frames in a batch, V vertices of the model, Vs vertices of the drawn sub-mesh, r x r render
resolution, T x T albedo texture.

Speed (issue #4, 0.5 s per frame on two CPU cores), all exact to float rounding: the renderer draws
only the triangles near the front of the face, and :class:`SubmeshPoser` poses only their vertices
for the one identity of the sequence (for ICT 21k of 27k vertices; the 100-mode identity blend done
once instead of at every step; vertices rigid to one joint skinned by one matmul per joint); vertex
normals are one sparse matmul; :class:`RasterCache` keeps the passes of geometry that no longer
changes, with their SH basis and their antialiasing as a sparse linear map
(:meth:`HeadRenderer.aa_weights`), for the many appearance-only steps.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from ..geometry import incidence, vertex_normals
from ..models.base import HeadModel
from ..models.lbs import batch_rodrigues, rigid_transforms
from .camera import raster_intrinsics, world_to_clip
from .lighting import SH_C, irradiance_basis
from .mesh import antialias, interpolate, rasterize, texture, triangle_adjacency

__all__ = ["HeadRenderer", "SubmeshPoser", "RasterCache", "front_triangles", "skinning_groups", "white_sh", "backproject_albedo"]


class HeadRenderer:
    """Renders the posed head with an albedo texture and SH lighting at ``r`` x ``r`` pixels.

    Args:
        model: the head model (needs ``uvs`` / ``uv_faces``).
        K: (N, 3, 3) crop intrinsics in crop pixels (OpenCV, pixel centres at integers).
        world_to_cam: (4, 4) OpenCV extrinsics shared by all frames.
        crop: crop side in pixels; r: render side in pixels.
        region: model region whose pixels are compared (weight channel of :meth:`raster`).

    Draws the Vs-vertex sub-mesh ``vertex_ids`` (model vertex per row); :meth:`raster` takes model
    or sub-mesh vertices.
    """

    def __init__(self, model: HeadModel, K: Tensor, world_to_cam: Tensor, crop: int, r: int, region: str = "face",
                 crop_margin: Optional[float] = 0.15):
        self.model, self.r = model, int(r)
        keep = front_triangles(model, crop_margin) if crop_margin is not None else torch.ones(len(model.faces), dtype=torch.bool)
        faces = model.faces[keep]
        # The posed sub-mesh: vertices of the kept triangles, of the landmark triangles (one posing
        # gives both) and of the compared region (whose projected box bounds the silhouette term).
        # ``vertex_ids`` maps sub-mesh rows to model vertices.
        used = [faces.reshape(-1), torch.nonzero(model.region(region))[:, 0]]
        if model.lmk_faces is not None:
            used.append(model.faces[model.lmk_faces].reshape(-1))
        vid = torch.unique(torch.cat(used))
        # Ordered by skinning group (rows rigid to one joint, joint by joint, then blended rows), so
        # SubmeshPoser skins each group with one small matmul on a contiguous slice.
        self.vertex_ids = vid[torch.argsort(skinning_groups(model.lbs_weights[vid]), stable=True)]
        self.num_model_vertices = model.num_vertices
        remap = torch.full((model.num_vertices,), -1, dtype=torch.long)
        remap[self.vertex_ids] = torch.arange(len(self.vertex_ids))
        self.faces = remap[faces].contiguous()
        self.tri = self.faces.to(torch.int32).contiguous()
        self.uv_tri = model.uv_faces[keep].to(torch.int32).contiguous()
        uv = model.uvs.float()
        self.uv = torch.stack([uv[:, 0], 1 - uv[:, 1]], -1).contiguous()  # OBJ origin bottom-left -> row 0 at the top
        self.adj = triangle_adjacency(self.tri)
        # Vertex normals as one sparse (Vs, F) incidence matmul: ~3x faster than three index_adds.
        self._incidence = incidence(self.faces, len(self.vertex_ids))
        self.region_idx = model.region(region)[self.vertex_ids]  #: (Vs,) bool, sub-mesh rows in the compared region
        self.region_w = self.region_idx.float()[:, None]  # (Vs,1)
        Kr = raster_intrinsics(K.float())
        Kr[:, :2] *= self.r / float(crop)
        self.K = Kr
        self.w2c = world_to_cam.float()

    def submesh(self, verts: Tensor) -> Tensor:
        """(B,Vs,3) sub-mesh vertices from (B,V,3) model vertices; (B,Vs,3) input is returned as is."""
        if verts.shape[1] == self.num_model_vertices and len(self.vertex_ids) != self.num_model_vertices:
            return verts[:, self.vertex_ids]
        if verts.shape[1] != len(self.vertex_ids):
            raise ValueError(f"verts must be (B, {self.num_model_vertices}, 3) model or (B, {len(self.vertex_ids)}, 3) sub-mesh "
                             f"vertices, got {tuple(verts.shape)}")
        return verts

    def normals(self, verts: Tensor) -> Tensor:
        """(B,Vs,3) unit area-weighted vertex normals (of the drawn triangles) in the camera frame, no gradient.

        ``verts`` as :meth:`raster`. :func:`avatar3d.geometry.vertex_normals` on the drawn triangles.
        """
        with torch.no_grad():
            return vertex_normals(self.submesh(verts.detach()), self.faces, self._incidence) @ self.w2c[:3, :3].T

    def raster(self, verts: Tensor, idx: np.ndarray, normals: Optional[Tensor] = None) -> dict:
        """Geometry-only pass for frames ``idx``: clip positions, rast, texture uv, camera normals, region weight.

        ``verts``: (B,V,3) model vertices or (B,Vs,3) sub-mesh vertices (:class:`SubmeshPoser`).
        ``normals`` (B,Vs,3) from :meth:`normals` may be passed to reuse them across steps: they
        carry no gradient (shading is a weak, noisy cue for geometry at this resolution, and their
        scatter-adds cost a fifth of a step) and barely change within a few steps.
        """
        verts = self.submesh(verts)
        pos = world_to_clip(verts, self.K[idx], self.w2c, self.r, self.r)
        rast, _ = rasterize(pos, self.tri, (self.r, self.r))
        uvp = interpolate(self.uv, rast, self.uv_tri)[0]
        n_cam = self.normals(verts) if normals is None else normals
        attrs = torch.cat([n_cam, self.region_w[None].expand(verts.shape[0], -1, -1)], -1).contiguous()
        pix = interpolate(attrs, rast, self.tri)[0]
        cover = (rast[..., 3:4] > 0).float()
        return dict(pos=pos, rast=rast, uv=uvp, normal=torch.nn.functional.normalize(pix[..., :3], dim=-1, eps=1e-12),
                    region=pix[..., 3:4].detach().clamp(0, 1) * cover, cover=cover)

    def shade(self, ras: dict, tex: Tensor, sh: Tensor) -> tuple[Tensor, Tensor]:
        """(B,r,r,3) antialiased image on black and (B,r,r,1) antialiased coverage from a :meth:`raster` pass."""
        albedo = texture(tex[None], ras["uv"], filter_mode="linear", boundary_mode="clamp")
        basis = ras.get("sh_basis")
        if basis is None:
            basis = irradiance_basis(ras["normal"])
            if not basis.requires_grad:  # a geometry-frozen pass is shaded many times: keep it (a graph could not be reused)
                ras["sh_basis"] = basis
        # (B,r,r,9) @ (9,3): the same irradiance as render.shading.sh_irradiance, as one matmul.
        shaded = albedo * (basis @ sh) * ras["cover"]
        img = torch.cat([shaded, ras["cover"]], -1)
        if "aa_weights" in ras:  # frozen geometry (RasterCache): antialiasing is a fixed sparse linear map
            if "aa_sparse" not in ras:
                ras["aa_sparse"] = _aa_sparse(ras["aa_weights"])
            tg, src, w = ras["aa_sparse"]
            flat = img.reshape(-1, img.shape[-1])
            aa = flat.index_add(0, tg, flat[src] * w[:, None]).view(img.shape)
        else:
            # One antialias call for colour and coverage: both get silhouette-edge gradients to pos.
            aa = antialias(img.contiguous(), ras["rast"], ras["pos"], self.tri, self.adj)
        return aa[..., :3], aa[..., 3:4]

    def aa_weights(self, ras: dict) -> Tensor:
        """(B,r,r,5) weights of the antialias map of a :meth:`raster` pass, as seen by 5 probe colours.

        ``antialias`` changes a pixel only by blends with its 4 neighbours, with weights that depend
        on the geometry alone, so for a fixed geometry it is a linear map with a 5-point stencil.
        Pixel (y, x) gets probe class (x + 2y) mod 5, which differs across every stencil; one
        antialias call on the 5 one-hot probe channels then reads each pixel's weight on itself and
        on each neighbour (:func:`_aa_sparse` turns them into a sparse map).
        """
        with torch.no_grad():
            B, r = ras["rast"].shape[0], ras["rast"].shape[1]
            probe = torch.nn.functional.one_hot(_probe_classes(r), 5).float()
            return antialias(probe[None].expand(B, -1, -1, -1).contiguous(), ras["rast"], ras["pos"], self.tri, self.adj)


def _probe_classes(r: int) -> Tensor:
    y, x = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    return (x + 2 * y) % 5


def _aa_sparse(weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse form ``out[tg] += w * img[src]`` (flat pixel indices) of the antialias map of (B,r,r,5) probe weights."""
    B, r = weights.shape[:2]
    cls = _probe_classes(r)
    probe = torch.nn.functional.one_hot(cls, 5).to(weights.dtype)
    hit = torch.nonzero((weights != probe).any(-1))  # (M,3) b, y, x of the few pixels antialiasing changes
    b, y, x = hit.unbind(1)
    wm, cm = weights[b, y, x], cls[y, x]  # (M,5), (M,)
    tg0 = (b * r + y) * r + x
    tgs, srcs, ws = [], [], []
    # (dy, dx, class shift): self, right, left, down, up
    for dy, dx, k in ((0, 0, 0), (0, 1, 1), (0, -1, -1), (1, 0, 2), (-1, 0, -2)):
        w = wm.gather(1, ((cm + k) % 5)[:, None])[:, 0]
        if k == 0:
            w = w - 1.0  # the identity part is the image itself
        keep = (w != 0) & (y + dy >= 0) & (y + dy < r) & (x + dx >= 0) & (x + dx < r)
        tgs.append(tg0[keep])
        srcs.append(tg0[keep] + dy * r + dx)
        ws.append(w[keep])
    return torch.cat(tgs), torch.cat(srcs), torch.cat(ws)


class RasterCache:
    """Geometry-only passes (:meth:`HeadRenderer.raster`, no gradient) of one fixed geometry, kept for all frames.

    The landmark-fit geometry is rasterized by the albedo back-projection, stage 1, the fair
    baseline's passes, its polish and both error evaluations; the final refined geometry by the
    polish and the final errors. Each frame is rasterized once, when first asked for, and later
    calls for consecutive frames get views of the stored tensors. Above ``max_bytes`` (long clips)
    nothing is stored and every call rasterizes.

    Args:
        rend: the renderer; verts_fn: ``idx -> (B,Vs,3)`` geometry of frames ``idx``;
        num_frames: N; max_bytes: memory cap of the store.
    """

    _KEYS = ("pos", "rast", "uv", "region", "cover", "sh_basis", "aa_weights")

    def __init__(self, rend: "HeadRenderer", verts_fn: Callable[[np.ndarray], Tensor], num_frames: int, max_bytes: float = 512e6):
        self.rend, self.verts_fn, self.N = rend, verts_fn, int(num_frames)
        r, Vs = rend.r, len(rend.vertex_ids)
        per_frame = 4 * (Vs * 4 + r * r * (4 + 2 + 1 + 1 + 9 + 5))  # float32 channels of _KEYS
        self.enabled = self.N * per_frame <= max_bytes
        self.store: dict[str, Tensor] = {}
        self.done = np.zeros(self.N, bool)

    def _raster(self, idx: np.ndarray) -> dict:
        with torch.no_grad():
            ras = self.rend.raster(self.verts_fn(idx), idx)
            ras["sh_basis"] = irradiance_basis(ras["normal"])
            ras["aa_weights"] = self.rend.aa_weights(ras)
        return ras

    def __call__(self, idx: np.ndarray) -> dict:
        """Raster dict (keys of :meth:`HeadRenderer.raster` but ``normal``, plus ``sh_basis``) of frames ``idx``."""
        idx = np.asarray(idx)
        if not self.enabled:
            return self._raster(idx)
        todo = idx[~self.done[idx]]
        if len(todo):
            ras = self._raster(todo)
            if not self.store:
                self.store = {k: ras[k].new_empty((self.N,) + ras[k].shape[1:]) for k in self._KEYS}
            for k in self._KEYS:
                self.store[k][torch.as_tensor(todo)] = ras[k]
            self.done[todo] = True
        if len(idx) and np.all(np.diff(idx) == 1):  # consecutive frames (all mini-batches): views, no copy
            return {k: v[int(idx[0]):int(idx[-1]) + 1] for k, v in self.store.items()}
        it = torch.as_tensor(idx)
        return {k: v[it] for k, v in self.store.items()}

    def forget(self, frames: np.ndarray) -> None:
        """Drop the stored passes of ``frames`` ((N,) bool or indices) whose geometry changed: redone when next asked for."""
        self.done[np.asarray(frames)] = False


class SubmeshPoser:
    """Poses only the sub-mesh a :class:`HeadRenderer` draws, for one fixed identity.

    The same maths as :meth:`HeadModel.forward` (expression blendshapes, pose correctives, linear
    blend skinning, translation), restricted to ``vertex_ids``: the identity blend and the joint
    locations are computed once, and the expression basis is stored as one (E, 3 Vs) matrix so
    a step is a single matmul (and its gradient another).

    Args:
        model: the head model; vertex_ids: (Vs,) model vertices to pose (``HeadRenderer.vertex_ids``,
            which includes the landmark triangles' vertices); shape: (S,) identity coefficients.
    """

    def __init__(self, model: HeadModel, vertex_ids: Tensor, shape: Tensor):
        with torch.no_grad():
            beta = torch.as_tensor(shape, dtype=model.v_template.dtype).reshape(-1)
            if beta.shape[0] > model.num_shape:
                raise ValueError(f"shape must have at most {model.num_shape} coefficients, got {beta.shape[0]}")
            beta = torch.cat([beta, beta.new_zeros(model.num_shape - beta.shape[0])])
            v_shaped = model.v_template + torch.einsum("vcs,s->vc", model.shapedirs, beta)  # (V,3)
            self.joints = model.j_regressor @ v_shaped  # (J,3)
            # FLAME-style models regress joints after the expression blend too: keep that linear part.
            self.joint_dirs = torch.einsum("jv,vce->jce", model.j_regressor, model.exprdirs) if model.joints_from_expression else None
            vid = torch.as_tensor(vertex_ids, dtype=torch.long)
            Vs, E = len(vid), model.num_expression
            # Rows are posed sorted by skinning group (HeadRenderer's order already is: no reordering).
            key = skinning_groups(model.lbs_weights[vid])
            order = torch.argsort(key, stable=True)
            self.unsort = None if torch.equal(order, torch.arange(Vs)) else torch.argsort(order)
            vs, key = vid[order], key[order]
            ends = torch.cumsum(torch.bincount(key, minlength=model.num_joints + 1), 0).tolist()
            #: (joint or J for blended, first row, end row) per non-empty group
            self.groups = [(j, a, b) for j, (a, b) in enumerate(zip([0] + ends[:-1], ends)) if b > a]
            self.v = v_shaped[vs].contiguous()  # (Vs,3)
            self.dirs = model.exprdirs[vs].permute(2, 0, 1).reshape(E, Vs * 3).contiguous()  # (E, 3Vs)
            self.weights = model.lbs_weights[vs].contiguous()  # (Vs,J)
            self.posedirs = None
            if model.posedirs is not None:
                self.posedirs = model.posedirs.view(model.posedirs.shape[0], -1, 3)[:, vs].reshape(model.posedirs.shape[0], -1)
            self.parents = model.parents
            self.lmk_tri = self.lmk_bary = None
            if model.lmk_faces is not None:
                remap = torch.full((model.num_vertices,), -1, dtype=torch.long)
                remap[vid] = torch.arange(Vs)
                self.lmk_tri = remap[model.faces[model.lmk_faces]]  # (478,3) sub-mesh rows
                if bool((self.lmk_tri < 0).any()):
                    raise ValueError("vertex_ids must include the vertices of the landmark triangles")
                self.lmk_bary = model.lmk_bary

    def __call__(self, expression: Tensor, pose: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
        """expression (B,E), pose (B,J,3) axis-angle, transl (B,3) m -> (B,Vs,3) vertices, (B,478,3) landmarks (m)."""
        B, J = pose.shape[:2]
        v = self.v + (expression @ self.dirs).view(B, -1, 3)
        rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, J, 3, 3)
        if self.posedirs is not None and J > 1:
            feat = (rot[:, 1:] - torch.eye(3, dtype=pose.dtype)).reshape(B, -1)
            v = v + (feat @ self.posedirs).view(B, -1, 3)
        joints = self.joints.expand(B, -1, -1)
        if self.joint_dirs is not None:
            joints = joints + torch.einsum("jce,be->bjc", self.joint_dirs, expression)
        skin = rigid_transforms(rot, joints, self.parents)[1][:, :, :3]  # (B,J,3,4)
        parts = []
        for j, a, b in self.groups:
            if j < J:  # rigid to joint j: R_j v + t_j as one batched matmul
                parts.append(torch.baddbmm(skin[:, j, None, :, 3], v[:, a:b], skin[:, j, :, :3].transpose(1, 2)))
            else:  # blended: per-vertex transform from the skinning weights
                T = (self.weights[a:b] @ skin.reshape(B, J, 12)).view(B, -1, 3, 4)
                parts.append((T[..., :3] * v[:, a:b, None, :]).sum(-1) + T[..., 3])
        verts = (torch.cat(parts, 1) if len(parts) > 1 else parts[0]) + transl[:, None]
        if self.unsort is not None:
            verts = verts[:, self.unsort]
        if self.lmk_tri is None:
            return verts, verts.new_zeros(B, 478, 3)
        return verts, (verts[:, self.lmk_tri] * self.lmk_bary[None, :, :, None]).sum(2)


def skinning_groups(weights: Tensor) -> Tensor:
    """(V,) group of each row of (V,J) skinning weights: the joint it is rigidly bound to (weight 1), or J when blended."""
    rigid = weights.max(1)
    return torch.where(rigid.values >= 1.0, rigid.indices, torch.full_like(rigid.indices, weights.shape[1]))


def front_triangles(model: HeadModel, margin: float) -> Tensor:
    """(F,) bool: triangles near the front of the face, the only ones the refinement needs to draw.

    Keeps triangles with a vertex inside the rest-pose box of the 478 MediaPipe landmarks (the face
    proper, the same for every model), grown by ``margin`` x its size in x/y and reaching half its
    depth range further back, which keeps the eyeballs and the front of the mouth interior that occlude
    the face. Teeth are dropped: they only show inside the mouth, which is not compared. Scalp, neck
    and the back of the head are hidden behind the face or covered by hair (masked out) in the views
    a face tracker sees.
    """
    with torch.no_grad():
        lm = model(None, None, None).landmarks[0]
    v = model.v_template
    lo, hi = lm.min(0).values, lm.max(0).values
    pad = (hi - lo) * margin
    lo, hi = lo - pad, hi + pad
    lo[2] = lm[:, 2].min() - 0.5 * (hi[2] - lo[2])
    hi[2] = float("inf")
    inside = ((v >= lo) & (v <= hi)).all(1)
    keep = inside[model.faces].any(1)
    if "teeth" in model.region_names:
        keep &= ~model.region("teeth")[model.faces].all(1)
    return keep


def white_sh() -> Tensor:
    """(9,3) SH lighting with irradiance 1 for every normal (constant band only)."""
    sh = torch.zeros(9, 3)
    sh[0] = 1.0 / SH_C[0]
    return sh


def backproject_albedo(raster_fn: Callable[[np.ndarray], dict], img: Tensor, msk: Tensor, size: int, batch: int) -> Tensor:
    """(size,size,3) albedo: mean of the crop pixels each texel sees (interior of the mask), holes filled smoothly.

    ``raster_fn(idx)`` gives the :meth:`HeadRenderer.raster` pass of frames ``idx`` (a
    :class:`RasterCache`); img (N,r,r,3), msk (N,r,r,1) in [0,1].
    A good start lets few appearance iterations suffice.
    """
    import cv2

    acc = torch.zeros(size * size, 3, dtype=torch.float64)
    cnt = torch.zeros(size * size, dtype=torch.float64)
    N = img.shape[0]
    with torch.no_grad():
        for s in range(0, N, batch):
            idx = np.arange(s, min(N, s + batch))
            ras = raster_fn(idx)
            ok = (ras["rast"][..., 3] > 0) & (msk[idx, ..., 0] > 0.99)  # interior: no background bleeding in
            t = ras["uv"][ok].clamp(0, 1 - 1e-6)
            ti = (t[:, 1] * size).long() * size + (t[:, 0] * size).long()
            acc.index_add_(0, ti, img[idx][ok].double())
            cnt.index_add_(0, ti, torch.ones_like(ti, dtype=torch.float64))
    if cnt.sum() == 0:
        return torch.full((size, size, 3), 0.5)
    acc_np, cnt_np = acc.view(size, size, 3).numpy(), cnt.view(size, size).numpy()
    out = np.where(cnt_np[..., None] > 0, acc_np / np.maximum(cnt_np, 1)[..., None], 0.0)
    filled = cnt_np > 0
    mean = acc_np.sum((0, 1)) / cnt_np.sum()
    for sigma in (1.5, 4.0, 12.0, 40.0):  # push-pull style: ever wider normalised blurs fill the holes
        if filled.all():
            break
        k = int(6 * sigma) | 1
        num = cv2.GaussianBlur(np.ascontiguousarray(out * filled[..., None]), (k, k), sigma)
        den = cv2.GaussianBlur(filled.astype(np.float64), (k, k), sigma)
        grow = (~filled) & (den > 1e-3)
        out[grow] = num[grow] / den[grow][:, None]
        filled = filled | grow
    out[~filled] = mean
    return torch.as_tensor(out, dtype=torch.float32).clamp(0, 1)
