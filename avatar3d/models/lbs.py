"""Linear blend skinning with pose correctives (the SMPL/FLAME formulation), batched and differentiable."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..geometry import axis_angle_to_matrix

#: (N, 3) axis-angle -> (N, 3, 3) rotations: the SMPL/FLAME name for :func:`avatar3d.geometry.axis_angle_to_matrix`.
batch_rodrigues = axis_angle_to_matrix


def rigid_transforms(rot: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """Chain local joint rotations down the kinematic tree.

    Args:
        rot: (B, J, 3, 3) local rotations; joints: (B, J, 3) rest joint locations; parents: (J,).
    Returns:
        posed joint locations (B, J, 3) and skinning transforms (B, J, 4, 4) that map rest-pose
        points to posed points (the rest joint location already removed).
    """
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.cat([rot, rel[..., None]], -1)  # (B, J, 3, 4)
    bottom = local.new_tensor([0, 0, 0, 1]).expand(B, J, 1, 4)
    local = torch.cat([local, bottom], -2)
    chain = [local[:, 0]]
    for j in range(1, J):
        chain.append(chain[int(parents[j])] @ local[:, j])
    world = torch.stack(chain, 1)  # (B, J, 4, 4)
    posed_joints = world[..., :3, 3]
    # Remove the rest location so the transform applies to rest-pose vertices directly.
    offset = (world[..., :3, :3] @ joints[..., None])[..., 0]
    skin = world.clone()
    skin[..., :3, 3] = world[..., :3, 3] - offset
    return posed_joints, skin


def lbs(
    v_rest: Tensor,
    v_shaped: Tensor,
    pose: Tensor,
    j_regressor: Tensor,
    parents: Tensor,
    weights: Tensor,
    posedirs: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Skin a batch of meshes.

    Args:
        v_rest: (B, V, 3) vertices after identity + expression blendshapes.
        v_shaped: (B, V, 3) identity-only vertices; joints are regressed from these.
        pose: (B, J, 3) axis-angle per joint.
        j_regressor: (J, V); parents: (J,); weights: (V, J).
        posedirs: (P, 3V) pose-corrective basis, P = 9 (J - 1), or None.
    Returns:
        posed vertices (B, V, 3), posed joints (B, J, 3), unposed vertices incl. correctives (B, V, 3).
    """
    B, V = v_rest.shape[:2]
    J = pose.shape[1]
    joints = torch.einsum("jv,bvc->bjc", j_regressor, v_shaped)
    rot = batch_rodrigues(pose.reshape(-1, 3)).view(B, J, 3, 3)
    if posedirs is not None and J > 1:
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        feat = (rot[:, 1:] - eye).reshape(B, -1)  # (B, 9 (J-1))
        v_rest = v_rest + (feat @ posedirs).view(B, V, 3)
    posed_joints, skin = rigid_transforms(rot, joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", weights, skin)  # (B, V, 4, 4)
    verts = (T[..., :3, :3] @ v_rest[..., None])[..., 0] + T[..., :3, 3]
    return verts, posed_joints, v_rest
