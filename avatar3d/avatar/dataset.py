"""The frames an avatar trains and is scored on: a tracking directory's images, masks, cameras and parameters in memory.

:func:`load_frames` reads the frames of one part of the split (:meth:`avatar3d.data.frames.TrackedFrames.split`)
into tensors once (uint8 images and masks: a 300-frame video at 512^2 is ~300 MB), checking what a trainer
needs, with one sentence per problem. :meth:`FrameSet.targets` composites frames over a white background with
their masks: what the avatar must reproduce (it renders over white too). Shapes: n frames, H x W pixels,
E expressions, J joints.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.frames import TrackedFrames
from ..errors import BadInputError
from ..render.camera import Camera

__all__ = ["FrameSet", "load_frames", "MIN_TRAIN_FRAMES", "initial_texture"]

#: fewer training frames than this cannot make an avatar
MIN_TRAIN_FRAMES = 10


class FrameSet(NamedTuple):
    """n frames of a tracking directory, in memory."""

    indices: Tensor  #: (n,) int64 frame numbers in the sequence
    images: Tensor  #: (n, H, W, 3) uint8 RGB
    masks: Tensor  #: (n, H, W) uint8 foreground (255 = head)
    inside: Tensor  #: (n, H, W) uint8 255 where the crop shows the video, 0 on padding past the video's edge
    expression: Tensor  #: (n, E) float32
    pose: Tensor  #: (n, J, 3) float32 axis-angle
    transl: Tensor  #: (n, 3) float32 metres
    K: Tensor  #: (n, 3, 3) float32 intrinsics (pixel centres at integers) at this resolution
    world_to_cam: Tensor  #: (n, 4, 4) float32
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.indices.numel())

    def camera(self, rows: Tensor) -> Camera:
        """The cameras of rows ``rows`` (B,) (indices into this set, not frame numbers)."""
        return Camera(self.K[rows], self.world_to_cam[rows], self.width, self.height)

    def targets(self, rows: Tensor, device: Optional[torch.device] = None) -> Tensor:
        """(B, H, W, 3) float32 images of rows ``rows`` over white: ``image * m + (1 - m)``, m = mask / 255."""
        img = self.images[rows].to(device=device, dtype=torch.float32) / 255.0
        m = self.masks[rows].to(device=device, dtype=torch.float32)[..., None] / 255.0
        return img * m + (1.0 - m)

    def seen(self, rows: Tensor, image: Tensor) -> Tensor:
        """(B, H, W, C) ``image`` of rows ``rows`` (B,) with the pixels the video never showed (crop padding past
        its edge) set to white, as in :meth:`targets`: a loss or score of the result ignores them."""
        v = self.inside[rows].to(device=image.device, dtype=image.dtype)[..., None] / 255.0
        return image * v + (1.0 - v)


def load_frames(frames: TrackedFrames, indices: Sequence[int], what: str = "training") -> FrameSet:
    """The frames ``indices`` of ``frames`` in memory.

    Raises:
        BadInputError: a frame without its image or mask (naming the first), or no frames.
    """
    idx = [int(i) for i in indices]
    if not idx:
        raise BadInputError(f"{frames.directory} has no {what} frames")
    imgs, masks, inside = [], [], []
    for i in idx:
        img, msk, ins = frames.image(i), frames.mask(i), frames.inside(i)
        if img is None:
            raise BadInputError(f"{frames.directory} has no image for frame {frames.name(i)} (expected images/{frames.name(i)}.png): "
                                "an avatar trains on the tracked crops; re-run `avatar3d track`")
        if msk is None:
            raise BadInputError(f"{frames.directory} has no mask for frame {frames.name(i)} (expected masks/{frames.name(i)}.png): "
                                "an avatar trains on masked frames; re-run `avatar3d track`")
        imgs.append(img)
        # pixels the crop's resampling blended with the black padding (inside < 255) are darkened: not the video's
        # colour, so they count as padding (else the avatar learns a dark line along the video's edge)
        ins = np.where(ins >= 255, 255, 0).astype(np.uint8) if ins is not None else np.full(msk.shape, 255, np.uint8)
        masks.append(np.where(ins > 0, msk, 0).astype(np.uint8))
        inside.append(ins)
    seq = frames.sequence
    sel = np.asarray(idx)
    f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
    return FrameSet(torch.as_tensor(sel, dtype=torch.long), torch.as_tensor(np.stack(imgs)), torch.as_tensor(np.stack(masks)),
                    torch.as_tensor(np.stack(inside)),
                    f(seq.expression[sel]), f(seq.pose[sel]), f(seq.transl[sel]), f(frames.K[sel]), f(seq.world_to_cam[sel]),
                    frames.width, frames.height)


def initial_texture(track_dir: str | Path) -> tuple[Optional[np.ndarray], str]:
    """The best colours to start an avatar from, as an (R, R, 3) display-colour texture in the model's UV layout,
    and where they came from: ``TRACK_DIR/appearance`` (the appearance maps' albedo, sRGB-encoded), else the
    tracker's ``albedo.png``, else ``(None, "grey")``."""
    import cv2

    from ..appearance.maps import AppearanceMaps
    from ..render.color import srgb_encode

    d = Path(track_dir)
    if (d / "appearance" / "material.json").is_file():
        maps = AppearanceMaps.load(d / "appearance")
        return np.clip(srgb_encode(maps.albedo), 0, 1).astype(np.float32), "appearance/albedo.png"
    if (d / "albedo.png").is_file():
        img = cv2.imread(str(d / "albedo.png"), cv2.IMREAD_COLOR)
        if img is not None:
            return img[..., ::-1].astype(np.float32) / 255.0, "albedo.png"
    return None, "grey"
