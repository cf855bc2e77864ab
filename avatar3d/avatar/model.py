"""The Gaussian head avatar: Gaussians bound to a head model's triangles, driven by its parameters.

:class:`GaussianHead` is an ``nn.Module`` with explicit state (smplx style):

* buffers: ``shape`` (S,) the tracked identity, ``parent`` (N,) each Gaussian's triangle, ``mouth_triangles``
  (F,) bool (the mouth interior, teeth and lips, for the trainer's mouth weight), ``offset_bound`` (F,) how far
  (triangle units) a triangle's Gaussians may sit from it before the offset regulariser pulls (1 on the face;
  :data:`FREE_OFFSET_M` on the scalp, ears and neck, whose Gaussians may stand for hair), ``expr_index`` (K,) the
  expression coefficients that drive the Gaussians' own blendshapes (those that vary in the training
  frames: a blendshape per coefficient and Gaussian costs N x 3 numbers to store and step);
* ``params`` (an ``nn.ParameterDict``), every entry per Gaussian (first dimension N), so densification and
  checkpoints treat them alike:

  ============== =========== =================================================================
  ``offset``     (N, 3)      mean in the parent triangle's frame, triangle units (:mod:`.binding`)
  ``rotation``   (N, 4)      local rotation, wxyz (normalised when posed)
  ``log_scale``  (N, 3)      log of the standard deviations, triangle units
  ``opacity``    (N,)        logit of the opacity
  ``expr_offset`` (N, K, 3)  offset per unit of each driving coefficient (linear blendshapes, start at 0)
  (appearance)               the :class:`~avatar3d.avatar.appearance.Appearance`'s fields (e.g. SH colour)
  ============== =========== =================================================================

* the appearance's tensors that are not per Gaussian (``appearance.<name>``: a relightable appearance's light and
  self-shadowing; :meth:`~avatar3d.avatar.appearance.Appearance.state`);
* the head model (a submodule, not part of :meth:`GaussianHead.avatar_state`: it is loaded by name).

:meth:`GaussianHead.posed_head` poses the mesh with (expression, pose, transl) and the Gaussians on it,
:meth:`GaussianHead.colours` gives them their colours seen from each frame's camera (the appearance's
:class:`~avatar3d.avatar.appearance.ShadingInputs`), and :meth:`GaussianHead.forward` does both and splats them
with :func:`avatar3d.render.gaussians.rasterize_gaussians` into each frame's camera over a white background.
Shapes: B frames, N Gaussians, E expressions (K of them drive blendshapes), J joints, S identity coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ..models.base import HeadModel
from ..render.camera import Camera
from ..render.gaussians import rasterize_gaussians
from .appearance import Appearance, ShadingInputs, SHAppearance
from .binding import PosedGaussians, bind_points, pose_on_mesh, triangle_frames
from .surface import neutral_vertices, sample_texture, surface_samples

__all__ = ["GaussianHead", "HeadInit", "AvatarRender", "PosedHead", "driving_expressions", "free_triangles", "GEOMETRY_LRS", "MOUTH_REGIONS",
           "SURFACE_REGIONS", "FREE_OFFSET_M"]

#: Adam learning rates of the geometry fields (GaussianAvatars' values; offsets in triangle units).
GEOMETRY_LRS = {"offset": 5e-3, "rotation": 1e-3, "log_scale": 1.7e-2, "opacity": 5e-2, "expr_offset": 1e-3}
#: Regions whose triangles (and one ring of neighbours: the lips) count as the mouth.
MOUTH_REGIONS = ("mouth_interior", "teeth")
#: Regions whose Gaussians stay on the surface (within one triangle size); the rest (scalp, ears, neck) may move off it.
SURFACE_REGIONS = ("face", "eyes", "mouth_interior", "teeth")
#: How far (metres) a Gaussian of a free triangle may move from it before the offset regulariser pulls it back:
#: long hair hangs a hand's width from the scalp, a collar below the neck.
FREE_OFFSET_M = 0.25


@dataclass
class HeadInit:
    """How :meth:`GaussianHead.initialise` places the first Gaussians.

    Attributes:
        uv_resolution: one Gaussian per texel of this UV grid (R = 128: ~12k on the built-in head).
        fill_triangles: one more at the centroid of each triangle without a texel (eyes, lips, teeth).
        opacity: initial opacity of every Gaussian.
        spread: in-plane standard deviation as a fraction of the sample spacing.
        thickness: standard deviation along the normal as a fraction of the in-plane one (flat discs).
        grey: the colour where no texture is given.
    """

    uv_resolution: int = 128
    fill_triangles: bool = True
    opacity: float = 0.7
    spread: float = 0.5
    thickness: float = 0.3
    grey: float = 0.5


def driving_expressions(expression: Tensor, limit: int = 16, min_std: float = 0.02) -> Tensor:
    """(K,) the coefficients of ``expression`` (n, E) (training frames) that vary the most: at most ``limit`` whose
    standard deviation over the frames is at least ``min_std``, in index order."""
    std = expression.float().std(0) if expression.shape[0] > 1 else torch.zeros(expression.shape[1])
    order = torch.argsort(std, descending=True)[:limit]
    return torch.sort(order[std[order] >= min_std]).values


class AvatarRender(NamedTuple):
    """What :meth:`GaussianHead.forward` returns for B frames of H x W pixels."""

    image: Tensor  #: (B, H, W, 3) colours over the background
    alpha: Tensor  #: (B, H, W, 1) coverage
    mouth: Optional[Tensor]  #: (B, H, W, 1) coverage by mouth Gaussians when asked, else None
    means2d: list[Tensor]  #: per frame (1, N, 2) projected means (retain_grad them for densification)
    radii: list[Tensor]  #: per frame (1, N, 2) int32 pixel radii (0: not drawn)
    world_scale: Tensor  #: (B, N) largest world standard deviation of each Gaussian per frame (metres, detached)


class PosedHead(NamedTuple):
    """What :meth:`GaussianHead.posed_head` returns for B frames: everything colouring and splatting need."""

    gaussians: PosedGaussians  #: world Gaussians (B, N, ...)
    opacity: Tensor  #: (N,) opacities in [0, 1]
    vertices: Tensor  #: (B, V, 3) the posed mesh, metres
    drive: Tensor  #: (B, K) the driving expression coefficients


class _Stamp:
    """Which tensors, at which in-place version, a cached result was computed from: equal only to a stamp of the same
    tensor objects (held, so their memory cannot be reused by others) none of which was changed in place since."""

    def __init__(self, tensors: tuple[Tensor, ...]):
        self.tensors = tensors
        self.versions = tuple(t._version for t in tensors)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Stamp) and len(other.tensors) == len(self.tensors) and self.versions == other.versions
                and all(a is b for a, b in zip(self.tensors, other.tensors)))

    __hash__ = None  # type: ignore[assignment]


def _mouth_triangles(model: HeadModel) -> Tensor:
    """(F,) bool: triangles touching the mouth regions' vertices grown by one ring (the lips)."""
    faces = model.faces.long()
    v = torch.zeros(model.num_vertices, dtype=torch.bool)
    for name in MOUTH_REGIONS:
        if name in model.region_names:
            v |= model.region(name).bool()
    ring = torch.zeros_like(v)
    ring[faces[v[faces].any(1)].reshape(-1)] = True
    return ring[faces].any(1)


def free_triangles(model: HeadModel) -> Tensor:
    """(F,) bool: triangles not wholly inside :data:`SURFACE_REGIONS` (scalp, ears, neck and the back of the head):
    their Gaussians may stand for hair, ears' surroundings and clothing off the surface."""
    v = torch.zeros(model.num_vertices, dtype=torch.bool)
    for name in SURFACE_REGIONS:
        if name in model.region_names:
            v |= model.region(name).bool()
    return ~v[model.faces.long()].all(1)


def _offset_bound(model: HeadModel, shape: Tensor) -> Tensor:
    """(F,) how far (triangle units) each triangle's Gaussians may sit from it unpenalised: 1 on the surface
    regions, :data:`FREE_OFFSET_M` in the neutral triangle's units on :func:`free_triangles`."""
    scale = triangle_frames(neutral_vertices(model, shape), model.faces).scale[0]
    return torch.where(free_triangles(model), (FREE_OFFSET_M / scale).clamp_min(1.0), torch.ones_like(scale))


class GaussianHead(nn.Module):
    """Gaussians bound to ``head_model``'s triangles (see the module docstring).

    Args:
        head_model: the tracked head model; shape: (S,) identity coefficients of the track;
        parent: (N,) int64 triangle per Gaussian; params: ``{name: (N, ...)}`` initial values of every
        per-Gaussian field (geometry and appearance); appearance: the colour model; expr_index: (K,) the
        driving expression coefficients (None: all E).
    """

    def __init__(self, head_model: HeadModel, shape: Tensor, parent: Tensor, params: Mapping[str, Tensor],
                 appearance: Optional[Appearance] = None, expr_index: Optional[Tensor] = None):
        super().__init__()
        self.head_model = head_model
        self.appearance = appearance if appearance is not None else SHAppearance()
        self.register_buffer("shape", torch.as_tensor(shape, dtype=torch.float32).reshape(-1))
        self.register_buffer("parent", torch.as_tensor(parent, dtype=torch.long))
        self.register_buffer("mouth_triangles", _mouth_triangles(head_model))
        self.register_buffer("offset_bound", _offset_bound(head_model, self.shape))
        E = head_model.num_expression
        self.register_buffer("expr_index", torch.arange(E) if expr_index is None else torch.as_tensor(expr_index, dtype=torch.long))
        if self.expr_index.numel() and not (0 <= int(self.expr_index.min()) and int(self.expr_index.max()) < E):
            raise ValueError(f"expr_index must index the model's {E} expressions")
        N = len(self.parent)
        for k, v in params.items():
            if v.shape[0] != N:
                raise ValueError(f"per-Gaussian field {k!r} has {v.shape[0]} rows for {N} Gaussians")
        self.params = nn.ParameterDict({k: nn.Parameter(torch.as_tensor(v, dtype=torch.float32).clone()) for k, v in params.items()})
        self.appearance.bind(head_model, self.shape)
        # forward-only renders: (key, identity, (1, V, 3) template) of :meth:`_shaped_template`; a cache, never saved
        self._shaped: Optional[tuple[_Stamp, Tensor, Tensor]] = None
        # forward-only renders: (key, (N, 3) ShadingInputs.local_normals) of the Gaussians in key (see colours)
        self._local_normals: Optional[tuple[_Stamp, Tensor]] = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def initialise(cls, head_model: HeadModel, shape: Optional[Tensor] = None, texture: Optional[np.ndarray] = None,
                   appearance: Optional[Appearance] = None, options: HeadInit = HeadInit(),
                   expr_index: Optional[Tensor] = None) -> "GaussianHead":
        """Gaussians densely on the surface of the identity ``shape`` (:mod:`.surface`); ``expr_index`` (K,): the
        coefficients that drive the Gaussians' blendshapes (None: all; :func:`driving_expressions` picks them).

        ``texture``: (R, R, 3) display colours in [0, 1] in the model's UV layout (row 0 = top), e.g. the
        appearance maps' albedo sRGB-encoded or the tracker's ``albedo.png``; None: :attr:`HeadInit.grey`.
        """
        S = head_model.num_shape
        shape = torch.zeros(S) if shape is None else torch.as_tensor(shape, dtype=torch.float32).reshape(-1)
        verts = neutral_vertices(head_model, shape)
        smp = surface_samples(head_model, verts, options.uv_resolution, options.fill_triangles)
        frames = triangle_frames(verts, head_model.faces)
        pts = (verts[head_model.faces[smp.parent]] * smp.bary[..., None]).sum(1)
        offset = bind_points(frames, smp.parent, pts)
        sigma = options.spread * smp.spacing / frames.scale[0, smp.parent]  # triangle units
        log_scale = torch.log(torch.stack([sigma, sigma, options.thickness * sigma], -1))
        N = len(smp.parent)
        if texture is not None:
            colours = sample_texture(texture, smp.uv)[:, :3].clamp(0, 1)
        else:
            colours = torch.full((N, 3), float(options.grey))
        app = appearance if appearance is not None else SHAppearance()
        K = head_model.num_expression if expr_index is None else len(expr_index)
        params = {"offset": offset, "rotation": torch.tensor([1.0, 0, 0, 0]).expand(N, 4).clone(), "log_scale": log_scale,
                  "opacity": torch.logit(torch.full((N,), float(options.opacity))), "expr_offset": torch.zeros(N, K, 3)}
        params.update(app.fields(colours, K))
        return cls(head_model, shape, smp.parent, params, app, expr_index)

    @classmethod
    def from_state(cls, head_model: HeadModel, state: Mapping[str, Any], appearance: Optional[Appearance] = None) -> "GaussianHead":
        """An avatar from :meth:`avatar_state` (any number of Gaussians); ``appearance`` must be of the kind saved
        (default :class:`~avatar3d.avatar.appearance.SHAppearance`): its ``appearance.<name>`` tensors are restored."""
        params = {k[len("params."):]: v for k, v in state.items() if k.startswith("params.")}
        appearance = appearance if appearance is not None else SHAppearance()
        appearance.load_state({k[len("appearance."):]: v for k, v in state.items() if k.startswith("appearance.")})
        return cls(head_model, state["shape"], state["parent"], params, appearance, state.get("expr_index"))

    def avatar_state(self) -> dict[str, Tensor]:
        """The avatar's own tensors (``shape``, ``parent``, ``params.<name>``), without the head model's."""
        out = {"shape": self.shape.detach().clone(), "parent": self.parent.detach().clone(), "expr_index": self.expr_index.clone()}
        out.update({f"params.{k}": v.detach().clone() for k, v in self.params.items()})
        out.update({f"appearance.{k}": v for k, v in self.appearance.state().items()})
        return out

    # ------------------------------------------------------------------ sizes and per-Gaussian fields
    @property
    def num_gaussians(self) -> int:
        return int(self.parent.numel())

    def learning_rates(self) -> dict[str, float]:
        """Adam learning rate per field name (geometry and appearance)."""
        return {**GEOMETRY_LRS, **self.appearance.learning_rates}

    def add_gaussians(self, params: Mapping[str, Tensor], parent: Tensor) -> None:
        """Append M Gaussians: ``params`` ``{name: (M, ...)}`` for every field, ``parent`` (M,) their triangles."""
        if set(params) != set(self.params):
            raise ValueError(f"new Gaussians need every field {sorted(self.params)}, got {sorted(params)}")
        new = {k: torch.cat([v.detach(), params[k].to(v)]) for k, v in self.params.items()}
        self.set_fields(new, torch.cat([self.parent, parent.to(self.parent)]))

    def set_fields(self, params: Mapping[str, Tensor], parent: Tensor) -> dict[str, nn.Parameter]:
        """Replace every per-Gaussian field (and ``parent``) with new rows (densification); returns the new Parameters."""
        self.parent = parent.to(self.parent.device)
        for k, v in params.items():
            self.params[k] = nn.Parameter(v.detach())
        return dict(self.params)

    # ------------------------------------------------------------------ posing and rendering
    def pose(self, expression: Tensor, pose: Tensor, transl: Tensor) -> tuple[PosedGaussians, Tensor]:
        """World Gaussians of B frames and (N,) opacities.

        Args: expression (B, E), pose (B, J, 3) axis-angle, transl (B, 3) metres (the tracked parameters).
        """
        posed = self.posed_head(expression, pose, transl)
        return posed.gaussians, posed.opacity

    def posed_head(self, expression: Tensor, pose: Tensor, transl: Tensor) -> PosedHead:
        """The posed mesh and Gaussians of B frames (arguments as :meth:`pose`)."""
        B = expression.shape[0]
        # training keeps the head model's own sums (bit-for-bit); a render reuses the identity's template (~1.4 ms)
        shaped = None if torch.is_grad_enabled() else self._shaped_template()
        verts = self.head_model(self.shape[None].expand(B, -1), expression, pose, transl, shaped=shaped).vertices
        p = self.params
        drive = expression.to(p["offset"])[:, self.expr_index]
        posed = pose_on_mesh(verts, self.head_model.faces, self.parent, p["offset"], p["rotation"], p["log_scale"],
                             p["expr_offset"], drive)
        return PosedHead(posed, torch.sigmoid(p["opacity"]), verts, drive)

    def _shaped_template(self) -> Tensor:
        """(1, V, 3) the head model's unposed mesh at this avatar's identity, recomputed only when the identity (its
        values) or the head model's template or identity basis (their storage or an in-place change) is not the
        one it was computed for."""
        hm = self.head_model
        key = _Stamp((hm.v_template, hm.shapedirs, self.shape))
        c = self._shaped
        if c is None or c[0] != key or not torch.equal(c[1], self.shape):
            shape = self.shape.detach().clone()
            c = self._shaped = (key, shape, hm.shaped_template(shape[None].to(hm.v_template)))
        return c[2]

    def colours(self, posed: PosedHead, centre: Tensor) -> Tensor:
        """(B, N, 3) colours of posed Gaussians seen from camera centres ``centre`` (B, 3) or (3,) metres (the
        appearance's, under the environment it was last given)."""
        g = posed.gaussians
        B = g.means.shape[0]
        dirs = torch.nn.functional.normalize(g.means.detach() - centre.to(g.means).reshape(-1, 3).expand(B, 3)[:, None], dim=-1)
        # a render keeps the normals in the Gaussians' own frames (relit shading, ~2 ms) while its Gaussians are unchanged
        keep = not torch.is_grad_enabled()
        p = self.params
        key = _Stamp((p["rotation"], p["log_scale"]))
        local = self._local_normals[1] if keep and self._local_normals is not None and self._local_normals[0] == key else None
        inputs = ShadingInputs(dirs, g.means, g.quats, g.scales, p["rotation"], posed.vertices, self.parent, local)
        out = self.appearance.colours(p, posed.drive, inputs)
        if keep and local is None and inputs.local_normals is not None:
            self._local_normals = (key, inputs.local_normals)
        return out

    def forward(self, expression: Tensor, pose: Tensor, transl: Tensor, camera: Camera, background: Optional[Tensor] = None,
                mouth: bool = False, backend: str = "auto") -> AvatarRender:
        """Render B frames, each with its own parameters and camera.

        Args:
            expression: (B, E); pose: (B, J, 3); transl: (B, 3).
            camera: B cameras (``K`` (B, 3, 3) or (3, 3), ``world_to_cam`` (B, 4, 4) or (4, 4)), the library's
                pixel-centre convention (:class:`~avatar3d.render.camera.Camera`).
            background: (3,) colour behind the head (default white).
            mouth: also composite the mouth Gaussians' coverage (:attr:`AvatarRender.mouth`).
            backend: the rasterizer backend (``"auto"``: our CPU extension on CPU tensors).
        """
        B = expression.shape[0]
        posed = self.posed_head(expression, pose, transl)
        g, opac = posed.gaussians, posed.opacity
        cam = camera.to(g.means.dtype)
        K = cam.raster_K.expand(B, 3, 3).to(g.means.device)
        vm = cam.world_to_cam.expand(B, 4, 4).to(g.means.device)
        colours = self.colours(posed, cam.centre.expand(B, 3).to(g.means.device))
        bg = torch.ones(3, device=g.means.device) if background is None else background.to(g.means)
        if mouth:
            flag = self.mouth_triangles[self.parent].to(colours)[None, :, None].expand(B, -1, 1)
            colours = torch.cat([colours, flag], -1)
            bg = torch.cat([bg, bg.new_zeros(1)])
        images, alphas, m2d, radii = [], [], [], []
        for b in range(B):
            img, a, _, _, meta = rasterize_gaussians(g.means[b], g.quats[b], g.scales[b], opac, colours[b], vm[b:b + 1],
                                                     K[b:b + 1], camera.width, camera.height, backgrounds=bg,
                                                     depth_mode="none", backend=backend)
            images.append(img)
            alphas.append(a)
            m2d.append(meta["means2d"])
            radii.append(meta["radii"])
        # one frame (a render's case): its (1, H, W, .) outputs as they are, no stacking copy
        image, alpha = (images[0], alphas[0]) if B == 1 else (torch.cat(images), torch.cat(alphas))
        size = g.scales.detach().amax(-1)
        if mouth:
            return AvatarRender(image[..., :3], alpha, image[..., 3:], m2d, radii, size)
        return AvatarRender(image, alpha, None, m2d, radii, size)

    def regulariser(self) -> dict[str, Tensor]:
        """Penalties that keep the binding meaningful (GaussianAvatars) and the blendshapes small, by name:
        ``offset`` (means beyond one triangle size from their triangle; on free triangles beyond
        :data:`FREE_OFFSET_M`), ``scale`` (scales above 0.6 triangle sizes), ``expr_offset`` (mean square of the offset blendshapes), and the appearance's."""
        p = self.params
        out = {"offset": torch.relu(p["offset"].norm(dim=-1) - self.offset_bound[self.parent]).mean(),
               "scale": torch.relu(torch.exp(p["log_scale"]) - 0.6).mean(),
               "expr_offset": p["expr_offset"].square().mean()}
        out.update(self.appearance.regulariser(p))
        return out
