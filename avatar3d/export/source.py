"""Resolve an export SOURCE (a head model spec or a tracking output directory) into what exporters need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.sequence import TrackedSequence
from ..data.source import resolve_head_source
from ..errors import BadInputError, MissingFileError
from ..models import MODEL_NAMES, HeadModel, load_head_model
from .appearance import PbrImages, find_appearance, load_pbr_images

__all__ = ["ExportSource", "resolve_source", "load_texture"]


@dataclass
class ExportSource:
    """A head model with the subject's identity, plus the performance when SOURCE was a tracked sequence."""

    model: HeadModel
    shape: np.ndarray  #: (S,) float64 identity coefficients (zeros = the model's mean head)
    name: str  #: used for default file names and the glTF node/mesh names
    sequence: Optional[TrackedSequence] = None
    albedo: Optional[np.ndarray] = None  #: (H, W, 3) uint8, UV origin bottom-left like the model's uvs
    normal_map: Optional[np.ndarray] = None  #: (H, W, 3) uint8 tangent-space normals (glTF/OpenGL: +Y green up)
    roughness_map: Optional[np.ndarray] = None  #: (H, W) uint8 perceptual roughness (255 = fully rough)
    #: the appearance stage's PBR maps (``TRACK_DIR/appearance/`` or ``appearance=``); when set, ``albedo``
    #: (unless a texture was given), ``normal_map`` and ``roughness_map`` are its images
    pbr: Optional[PbrImages] = None

    def shaped_vertices(self) -> np.ndarray:
        """(V, 3) float64 identity-applied rest vertices in metres (no expression, no pose)."""
        m = self.model
        v = m.v_template.detach().double().cpu().numpy()
        if self.shape.size:
            v = v + np.einsum("vcs,s->vc", m.shapedirs.detach().double().cpu().numpy(), self.shape)
        return v

    def rest_joints(self, v_shaped: np.ndarray) -> np.ndarray:
        """(J, 3) rest joint locations regressed from the identity-applied mesh (as HeadModel.forward does)."""
        return self.model.j_regressor.detach().double().cpu().numpy() @ v_shaped

    def frame_params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame (N, E) expression, (N, J, 3) axis-angle pose and (N, 3) translation, padded to the model's sizes."""
        seq = self.sequence
        if seq is None:
            raise ValueError("this export source has no tracked sequence (no frames)")
        E = self.model.num_expression
        expr = np.zeros((seq.num_frames, E))
        expr[:, : seq.expression.shape[1]] = seq.expression
        return expr, np.asarray(seq.pose, np.float64), np.asarray(seq.transl, np.float64)


def _parse_shape(shape: object, S: int) -> np.ndarray:
    if shape is None:
        return np.zeros(S)
    if isinstance(shape, (str, Path)):
        p = Path(shape)
        if p.suffix in (".npy", ".npz") or p.exists():
            if not p.is_file():
                raise MissingFileError(p, "Pass an identity as a .npy file of shape coefficients, or as comma-separated numbers.")
            try:  # numpy refuses object arrays without allow_pickle (and we never unpickle): name the file
                a = np.load(p, allow_pickle=False)
                if isinstance(a, np.lib.npyio.NpzFile):
                    if "shape" not in a.files:
                        raise BadInputError(f"{p} has no 'shape' array (found: {', '.join(a.files)})")
                    a = a["shape"]
            except BadInputError:
                raise
            except ValueError as e:
                raise BadInputError(f"{p} cannot be read as numbers ({e}); save the identity as a plain numeric array") from None
        else:
            try:
                a = np.array([float(x) for x in str(shape).split(",") if x.strip()])
            except ValueError:
                raise BadInputError(f"identity {shape!r}: expected a .npy file or comma-separated numbers") from None
    else:
        a = np.asarray(shape, np.float64)
    a = np.asarray(a, np.float64).reshape(-1)
    if a.size > S:
        raise BadInputError(f"identity has {a.size} coefficients but the model has only {S}")
    if not np.all(np.isfinite(a)):
        raise BadInputError("identity coefficients must be finite numbers")
    out = np.zeros(S)
    out[: a.size] = a  # leading coefficients, the rest zero (like HeadModel.forward)
    return out


def load_texture(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image from a file, with one clear error when missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(p, "Pass an existing albedo texture image (PNG or JPEG) or leave the texture option out.")
    from PIL import Image

    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except Exception as e:
        raise BadInputError(f"{p} is not a readable image ({type(e).__name__}: {e})") from None


def resolve_source(
    source: str | Path | HeadModel | TrackedSequence,
    *,
    shape: object = None,
    model: str | HeadModel | None = None,
    texture: str | Path | None = None,
    appearance: str | Path | None = None,
) -> ExportSource:
    """Turn SOURCE into an :class:`ExportSource`.

    Args:
        source: a head model spec (``"builtin"``, ``"ict"``, ``"flame=PATH"``), a loaded ``HeadModel``,
            a tracking output directory (has ``params.npz``), or a ``TrackedSequence``.
        shape: identity coefficients (S,) (array, ``.npy`` path or "0.1,-0.3,..."); for sequences it
            replaces the tracked identity.
        model: the head model for a sequence, overriding the spec stored in it (e.g. a moved FLAME file).
        texture: an albedo image overriding the model's own texture (and the appearance stage's albedo).
        appearance: a folder written by ``avatar3d appearance`` (default: the tracking directory's
            ``appearance/`` when it has a ``material.json``).

    Texture maps come from the appearance folder when there is one (albedo, normal, roughness, specular:
    :class:`~.appearance.PbrImages`), else from ``model.extras``: ``"albedo"`` (H, W, 3) uint8, and optionally
    ``"normal_map"`` (H, W, 3) uint8 tangent-space and ``"roughness_map"`` (H, W) uint8.
    """
    seq: Optional[TrackedSequence] = None
    directory: Optional[Path] = None
    if isinstance(source, TrackedSequence):
        seq, name = source, "performance"
    elif isinstance(source, HeadModel):
        hm, name = source, source.name
    else:
        src = resolve_head_source(source, known_models=MODEL_NAMES, what="export source")
        if src.is_sequence:
            seq, name, directory = src.sequence, src.directory.resolve().name, src.directory
        else:
            hm, name = load_head_model(src.model_spec), src.model_spec.partition("=")[0].strip().lower()
    if seq is not None:
        if isinstance(model, HeadModel):
            hm = model
        else:
            hm = load_head_model(model or seq.model)
        _check_sequence(seq, hm)
        if shape is None:
            shape = seq.shape
    elif model is not None:
        raise ValueError("the 'model' option only applies when SOURCE is a tracked sequence")
    pbr = _appearance(appearance, directory, hm)
    if texture is not None:
        albedo = load_texture(texture)
    else:
        albedo = pbr.albedo if pbr is not None else hm.extras.get("albedo")
    if albedo is not None:
        albedo = np.asarray(albedo)
        if albedo.ndim != 3 or albedo.shape[2] not in (3, 4) or albedo.dtype != np.uint8:
            raise BadInputError(f"albedo texture must be (H, W, 3) uint8, got {albedo.shape} {albedo.dtype}")
        albedo = np.ascontiguousarray(albedo[..., :3])
    if pbr is not None:
        normal_map, roughness = pbr.normal, pbr.roughness
    else:
        normal_map, roughness = hm.extras.get("normal_map"), hm.extras.get("roughness_map")
    if normal_map is not None and (np.ndim(normal_map) != 3 or np.shape(normal_map)[2] != 3 or np.asarray(normal_map).dtype != np.uint8):
        raise BadInputError(f"normal map must be (H, W, 3) uint8, got {np.shape(normal_map)}")
    if roughness is not None:
        roughness = np.asarray(roughness)
        if roughness.ndim == 3:
            roughness = roughness[..., 0]
        if roughness.ndim != 2 or roughness.dtype != np.uint8:
            raise BadInputError(f"roughness map must be (H, W) uint8, got {roughness.shape} {roughness.dtype}")
    return ExportSource(model=hm, shape=_parse_shape(shape, hm.num_shape), name=name, sequence=seq, albedo=albedo,
                        normal_map=None if normal_map is None else np.ascontiguousarray(normal_map), roughness_map=roughness, pbr=pbr)


def _appearance(path: str | Path | None, directory: Optional[Path], hm: HeadModel) -> Optional[PbrImages]:
    """The PBR maps to export: the folder given, else the tracking directory's ``appearance/`` (None when neither);
    the maps must be in ``hm``'s UV layout (made for the same head model)."""
    folder = Path(path) if path is not None else find_appearance(directory)
    if folder is None:
        return None
    if not folder.exists():
        raise MissingFileError(folder, "Pass a folder written by 'avatar3d appearance' (it holds material.json).")
    pbr = load_pbr_images(folder)
    if pbr.model_name and pbr.model_name != hm.name.lower():
        raise BadInputError(f"{pbr.folder} holds maps in the {pbr.model_name} head model's UV layout, but the export uses the "
                            f"{hm.name} head model; run 'avatar3d appearance' again or export with --model {pbr.model_name}")
    return pbr


def _check_sequence(seq: TrackedSequence, hm: HeadModel) -> None:
    """A sequence must fit the model it is exported with (joint count, coefficient counts)."""
    J = hm.num_joints
    if seq.pose.ndim != 3 or seq.pose.shape[1:] != (J, 3):
        raise BadInputError(f"tracked pose has shape {seq.pose.shape} but {hm.name} needs (N, {J}, 3) for joints {hm.joint_names}")
    if seq.joint_names and list(seq.joint_names) != list(hm.joint_names):
        raise BadInputError(f"tracked joints {seq.joint_names} differ from {hm.name}'s joints {hm.joint_names}")
    if seq.expression.ndim != 2 or seq.expression.shape[1] > hm.num_expression:
        raise BadInputError(f"tracked expression has shape {seq.expression.shape}; {hm.name} has {hm.num_expression} expressions")
    if seq.transl.shape != (seq.num_frames, 3):
        raise BadInputError(f"tracked transl has shape {seq.transl.shape}, expected ({seq.num_frames}, 3)")
    if not (np.isfinite(seq.fps) and seq.fps > 0):
        raise BadInputError(f"tracked sequence has frame rate {seq.fps}; expected a positive number of frames per second")
    if seq.num_frames < 1:
        raise BadInputError("tracked sequence has no frames")
