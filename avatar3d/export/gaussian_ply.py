"""The standard 3D Gaussian Splatting PLY: write and read it, and export a Gaussian head avatar to it.

The layout INRIA's 3DGS (``GaussianModel.save_ply``) writes and common viewers and gsplat read: one
``vertex`` element of N Gaussians, binary little-endian float32 properties in this order::

    x y z                 mean, metres
    nx ny nz              normal (unused by splatting; zeros, as 3DGS writes them)
    f_dc_0..2             SH band-0 coefficient per RGB channel (colour = 0.5 + C0 * f_dc + ...)
    f_rest_0..3K-1        higher bands, channel-major: f_rest_{c*K + k} is basis k of channel c (K = 3 at degree 1)
    opacity               logit of the opacity
    scale_0..2            log of the standard deviations, metres
    rot_0..3              rotation quaternion w x y z

SH colours use the view direction from the camera centre to the Gaussian in the file's frame (3DGS's
``eval_sh``), clamped at 0. :func:`export_avatar_ply` writes an avatar posed at a tracked frame (the
tracking's world frame: render it with that frame's camera) or neutral (zero expression, pose and
translation: the head model's frame, metres, +Y up, face towards +Z); the avatar's expression colour
blendshapes at that expression are folded into ``f_dc``, so the file renders as the avatar does.

A relightable avatar (``appearance.relightable``: albedo, roughness, normals under a light) has no SH colours of
its own: it is written **baked**, its colours under one light (the capture's own, or an environment:
:func:`~avatar3d.render.lighting.environment_from_spec`) fitted by least squares into degree-1 SH over
:data:`BAKE_VIEWS` view directions spread over the sphere, those in front of each Gaussian weighing most
(:func:`bake_sh`). Diffuse light is view-independent and lands in ``f_dc`` exactly; degree 1 keeps the broad part
of a highlight's view dependence, not its sharp lobe.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import Tensor

from ..avatar.appearance import SH_C0, SH_C1, ShadingInputs
from ..avatar.drive import open_avatar
from ..avatar.model import GaussianHead, PosedHead
from ..avatar.render import capture_light
from ..data.atomic import atomic_path
from ..data.sequence import TrackedSequence
from ..errors import BadInputError
from ..paths import check_output_path
from ..render.lighting import CAPTURE, EnvironmentMap, environment_from_spec, fibonacci_sphere

__all__ = ["GaussianCloud", "ply_properties", "write_gaussian_ply", "read_gaussian_ply", "avatar_cloud", "export_avatar_ply",
           "PlyExport", "DEFAULT_FILE", "bake_sh", "BAKE_VIEWS", "BEHIND_WEIGHT"]

#: the file ``export_avatar_ply`` writes into the avatar directory when no path is given
DEFAULT_FILE = "avatar.ply"
#: view directions a relightable avatar's colours are baked over (Fibonacci sphere; 4 unknowns per channel)
BAKE_VIEWS = 64
#: weight of the views from behind a Gaussian (its front views weigh 1) in the bake's fit
BEHIND_WEIGHT = 0.02


class GaussianCloud(NamedTuple):
    """N Gaussians as a 3DGS PLY stores them (float32 tensors)."""

    means: Tensor  #: (N, 3) metres
    quats: Tensor  #: (N, 4) unit quaternions, wxyz
    log_scales: Tensor  #: (N, 3) log of the standard deviations, metres
    opacity_logits: Tensor  #: (N,)
    sh_dc: Tensor  #: (N, 3) band-0 coefficient per channel
    sh_rest: Tensor  #: (N, K, 3) higher bands by basis function then channel (3DGS's ``features_rest``)

    @property
    def degree(self) -> int:
        """SH degree: K = (degree + 1)^2 - 1."""
        return int(round((self.sh_rest.shape[1] + 1) ** 0.5)) - 1

    def colours(self, centre: Tensor) -> Tensor:
        """(N, 3) colours seen from the camera centre ``centre`` (3,) (degree 0 or 1; 3DGS's ``eval_sh`` + 0.5, >= 0)."""
        c = SH_C0 * self.sh_dc + 0.5
        if self.degree == 0:
            return c.clamp_min(0.0)
        if self.degree != 1:
            raise ValueError(f"colours of SH degree {self.degree} are not implemented (degree 0 and 1 are)")
        x, y, z = torch.nn.functional.normalize(self.means - centre.to(self.means), dim=-1).unbind(-1)
        basis = SH_C1 * torch.stack([-y, z, -x], -1)  # (N, 3)
        return (c + torch.einsum("nk,nkc->nc", basis, self.sh_rest)).clamp_min(0.0)


def ply_properties(num_rest: int) -> list[str]:
    """The property names in file order for ``num_rest`` (3K) ``f_rest`` values."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(num_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _rows(cloud: GaussianCloud) -> np.ndarray:
    """(N, P) float32 values in :func:`ply_properties` order."""
    N, K = cloud.means.shape[0], cloud.sh_rest.shape[1]
    rest = cloud.sh_rest.detach().float().transpose(1, 2).reshape(N, 3 * K)  # channel-major, as 3DGS flattens
    cols = [cloud.means, torch.zeros(N, 3), cloud.sh_dc, rest, cloud.opacity_logits[:, None], cloud.log_scales, cloud.quats]
    return torch.cat([c.detach().float().cpu() for c in cols], 1).numpy()


def write_gaussian_ply(path: str | Path, cloud: GaussianCloud) -> Path:
    """Write ``cloud`` as a binary little-endian 3DGS PLY at ``path`` (atomically).

    Raises:
        ValueError: a non-finite value (a viewer would show garbage or nothing).
    """
    data = np.ascontiguousarray(_rows(cloud), dtype="<f4")
    if not np.isfinite(data).all():
        raise ValueError("the Gaussians hold NaN or infinite values; nothing was written")
    names = ply_properties(data.shape[1] - 17)
    header = "\n".join(["ply", "format binary_little_endian 1.0", "comment avatar3d Gaussian head (3DGS layout)",
                        f"element vertex {data.shape[0]}", *[f"property float {n}" for n in names], "end_header"]) + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())
    return Path(path)


_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "uchar": "u1", "uint8": "u1", "char": "i1",
              "int8": "i1", "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4",
              "uint": "u4", "uint32": "u4"}


def _header(f, path: Path) -> tuple[int, list[tuple[str, str]]]:
    """(vertex count, [(property, numpy type)]) of a binary little-endian PLY whose only element is ``vertex``."""
    if f.readline().strip() != b"ply":
        raise BadInputError(f"{path} is not a PLY file")
    count, props, element = None, [], None
    while True:
        line = f.readline()
        if not line:
            raise BadInputError(f"{path} ends inside its PLY header")
        words = line.decode("ascii", "replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format" and words[1:2] != ["binary_little_endian"]:
            raise BadInputError(f"{path} is a {' '.join(words[1:2])} PLY; 3D Gaussian PLYs are binary_little_endian")
        if words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
            elif int(words[2]) > 0:
                raise BadInputError(f"{path} holds a {element!r} element; a 3D Gaussian PLY holds only vertices")
        if words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise BadInputError(f"{path}: vertex property {' '.join(words[1:])} is not a plain number")
            props.append((words[2], "<" + _PLY_TYPES[words[1]]))
    if count is None:
        raise BadInputError(f"{path} has no vertex element")
    return count, props


def read_gaussian_ply(path: str | Path) -> GaussianCloud:
    """A 3DGS PLY (any property order, any SH degree; extra properties ignored) as a :class:`GaussianCloud`."""
    p = Path(path)
    with open(p, "rb") as f:
        count, props = _header(f, p)
        dtype = np.dtype(props)
        raw = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype, count=-1)
    if raw.shape[0] != count:
        raise BadInputError(f"{p} is truncated: {raw.shape[0]} of its {count} Gaussians are there")
    names = set(dtype.names or ())
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in need if n not in names]
    if missing:
        raise BadInputError(f"{p} is not a 3D Gaussian PLY: it lacks {', '.join(missing)}")
    col = lambda *ks: torch.as_tensor(np.stack([raw[k].astype(np.float32) for k in ks], -1))  # noqa: E731
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3:
        raise BadInputError(f"{p} has {n_rest} f_rest values per Gaussian; 3D Gaussian PLYs have 3 per SH basis function")
    K = n_rest // 3
    rest = col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(count, 3, K).transpose(1, 2) if K else torch.zeros(count, 0, 3)
    q = col("rot_0", "rot_1", "rot_2", "rot_3")
    return GaussianCloud(col("x", "y", "z"), torch.nn.functional.normalize(q, dim=-1), col("scale_0", "scale_1", "scale_2"),
                         col("opacity")[:, 0], col("f_dc_0", "f_dc_1", "f_dc_2"), rest.contiguous())


# ---------------------------------------------------------------------------------------------- avatars
def bake_sh(colours: Tensor, view_dirs: Tensor, weights: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Least-squares degree-1 SH ``(f_dc (N, 3), f_rest (N, 3, 3))`` of colours (V, N, 3) seen along unit view
    directions (V, 3) (camera to Gaussian, the same for every Gaussian), in :meth:`GaussianCloud.colours`' convention
    (``colour = 0.5 + C0 f_dc + C1 (-y, z, -x) . f_rest``); ``weights`` (V, N) >= 0 per view and Gaussian (None: all
    equal). V >= 4 directions that span 3D (with weights: 4 of them weighted above 0 for each Gaussian)."""
    x, y, z = view_dirs.double().unbind(-1)
    A = torch.stack([torch.full_like(x, SH_C0), -SH_C1 * y, SH_C1 * z, -SH_C1 * x], -1)  # (V, 4)
    V, N, _ = colours.shape
    target = colours.double() - 0.5  # (V, N, 3)
    if weights is None:  # one small system shared by every Gaussian
        coeffs = torch.linalg.lstsq(A, target.reshape(V, N * 3)).solution.reshape(4, N, 3)
    else:  # per Gaussian: the normal equations (A^T W A) x = A^T W y, (N, 4, 4)
        w = weights.double()
        lhs = torch.einsum("vi,vn,vj->nij", A, w, A)
        rhs = torch.einsum("vi,vn,vnc->nic", A, w, target)
        coeffs = torch.linalg.solve(lhs, rhs).permute(1, 0, 2)  # (4, N, 3)
    return coeffs[0].float(), coeffs[1:].permute(1, 0, 2).float().contiguous()


def _baked(avatar: GaussianHead, posed: PosedHead, environment: Optional[EnvironmentMap]) -> tuple[Tensor, Tensor]:
    """(f_dc, f_rest) of a relightable avatar's colours, posed as ``posed`` (one frame), under ``environment`` (None: the
    capture's): its colours seen along each of :data:`BAKE_VIEWS` directions, fitted by :func:`bake_sh`."""
    avatar.appearance.set_environment(environment)
    V, N = BAKE_VIEWS, avatar.num_gaussians
    d = torch.as_tensor(fibonacci_sphere(V), dtype=torch.float32)  # (V, 3)
    g = posed.gaussians
    views = lambda t: t.expand(V, *t.shape[1:])  # noqa: E731  (the one frame, seen V times)
    inputs = ShadingInputs(d[:, None].expand(V, N, 3), views(g.means), views(g.quats), views(g.scales), avatar.params["rotation"],
                           views(posed.vertices), avatar.parent)
    colours = avatar.appearance.colours(avatar.params, views(posed.drive), inputs)
    # A viewer sees a Gaussian's front (opaque heads hide the rest): fit the views in front of its normal, with a
    # small weight behind so that every Gaussian's fit stays determined.
    front = (inputs.normals() * -inputs.view_dirs).sum(-1) > 0  # (V, N)
    return bake_sh(colours.detach(), d, torch.where(front, 1.0, BEHIND_WEIGHT))


@torch.no_grad()
def avatar_cloud(avatar: GaussianHead, expression: Tensor, pose: Tensor, transl: Tensor,
                 environment: Optional[EnvironmentMap] = None) -> GaussianCloud:
    """The avatar posed by one frame's parameters (expression (E,), pose (J, 3), transl (3,)) as a cloud.

    The SH colour and its expression blendshapes (:class:`~avatar3d.avatar.appearance.SHAppearance`) at this
    expression become ``f_dc`` / ``f_rest``; a relightable appearance is baked under ``environment`` (None: the
    capture's own light; :func:`bake_sh`). ``environment`` for an SH avatar: refused (it cannot be relit).
    """
    p = avatar.params
    relit = avatar.appearance.relightable
    if not relit and environment is not None:
        avatar.appearance.set_environment(environment)  # the contract's one sentence
    if not relit and not {"sh_dc", "sh_rest"} <= set(p.keys()):
        raise BadInputError(f"an avatar with the {avatar.appearance.name!r} appearance cannot be written as a 3D Gaussian PLY "
                            "(it needs SH colours or a relightable appearance to bake)")
    posed = avatar.posed_head(expression[None].float(), pose[None].float(), transl[None].float())
    g = posed.gaussians
    if relit:
        dc, rest = _baked(avatar, posed, environment)
    else:
        dc, rest = p["sh_dc"].detach(), p["sh_rest"].detach().clone()
        if "expr_colour" in p.keys():  # colour blendshapes are view-independent: they shift the DC term
            drive = expression.float()[avatar.expr_index]
            dc = dc + torch.einsum("nec,e->nc", p["expr_colour"].detach(), drive) / SH_C0
    return GaussianCloud(g.means[0], torch.nn.functional.normalize(g.quats[0], dim=-1), torch.log(g.scales[0]),
                         p["opacity"].detach().clone(), dc, rest)


class PlyExport(NamedTuple):
    """What :func:`export_avatar_ply` wrote."""

    path: Path
    gaussians: int
    frame: Optional[int]  #: the tracked frame, None when neutral
    bytes: int


def export_avatar_ply(avatar_dir: str | Path, path: Optional[str | Path] = None, frame: Optional[int] = None,
                      neutral: bool = False, environment: Optional[str] = None, env_rotation: float = 0.0) -> PlyExport:
    """Write the avatar of ``avatar_dir`` as a 3DGS PLY at ``path`` (default ``AVATAR_DIR/avatar.ply``).

    Args:
        frame: pose it at this frame of its tracking directory (in that tracking's world frame).
        neutral: pose it at zero expression, pose and translation (the default when no frame is given).
        environment: a relightable avatar's light to bake (an environment spec: studio, sunset, overcast, capture,
            a .hdr/.exr file, AZ,EL,INTENSITY), turned ``env_rotation`` degrees; None: the capture's own light.
    """
    if frame is not None and neutral:
        raise BadInputError("give a frame or neutral, not both")
    out = Path(path) if path is not None else Path(avatar_dir) / DEFAULT_FILE
    if out.suffix.lower() != ".ply":
        raise BadInputError(f"{out}: a 3D Gaussian PLY file name ends in .ply")
    check_output_path(out, "the PLY")
    src = open_avatar(avatar_dir)
    model = src.avatar.head_model
    if frame is None:
        e, q, t = torch.zeros(model.num_expression), torch.zeros(model.num_joints, 3), torch.zeros(3)
    else:
        e, q, t = _frame_params(src.track_dir, int(frame))
    env = None
    if environment is not None or env_rotation:
        if not src.avatar.appearance.relightable:
            src.avatar.appearance.set_environment(None)  # the contract's one sentence: train it with --relightable
        if environment not in (None, CAPTURE) or env_rotation:  # the capture's own light as it is needs no map
            env = environment_from_spec(environment or CAPTURE, env_rotation, capture_light(src.avatar))
    cloud = avatar_cloud(src.avatar, e, q, t, env)
    write_gaussian_ply(out, cloud)
    return PlyExport(out, int(cloud.means.shape[0]), frame, out.stat().st_size)


def _frame_params(track_dir: Optional[Path], frame: int) -> tuple[Tensor, Tensor, Tensor]:
    if track_dir is None or not track_dir.is_dir():
        raise BadInputError(f"the tracking directory this avatar was trained on ({track_dir}) is gone; export it --neutral")
    seq = TrackedSequence.load(track_dir)
    n = seq.num_frames
    if not 0 <= frame < n:
        raise BadInputError(f"frame {frame} is outside the avatar's tracked sequence, which has {n} frames (0..{n - 1})")
    f = lambda a: torch.as_tensor(np.asarray(a[frame]), dtype=torch.float32)  # noqa: E731
    return f(seq.expression), f(seq.pose), f(seq.transl)
