"""Gram anchoring (Simeoni et al. 2025, "DINOv3", section 4): keeps the patch-to-patch similarity
structure of the student close to that of an earlier "Gram teacher", which stops dense features from
degrading during long training while leaving the features themselves free to move.

Axis legend: B images, N patches per image, D feature width, M = B * N when the Gram matrix is
taken over the whole batch.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.config.milestones import fraction_of

__all__ = ["GramConfig", "GramTeacher", "gram_loss", "resize_patch_features", "snapshot_into"]


def _similarity(feats: torch.Tensor, normalize: bool, img_level: bool) -> torch.Tensor:
    feats = feats.float()
    if normalize:
        feats = F.normalize(feats, dim=-1)
    if not img_level and feats.ndim == 3:
        feats = feats.flatten(0, 1)  # [M, D]
    return feats @ feats.transpose(-1, -2)  # [B, N, N] or [M, M]


def gram_loss(student_patches: torch.Tensor, gram_teacher_patches: torch.Tensor, *, normalize: bool = True,
              img_level: bool = True, remove_neg: bool = False, remove_only_teacher_neg: bool = False) -> torch.Tensor:
    """Mean squared error between student and Gram-teacher patch similarity matrices.

    Defaults follow DINOv3's Gram anchoring run (``normalized: true, img_level: true,
    remove_neg: false``).

    Args:
        student_patches: student patch features before the heads, ``[B, N, D]`` (or ``[M, D]``
            with ``img_level=False``).
        gram_teacher_patches: Gram-teacher patch features, same shape; no gradient flows to them.
        normalize: L2-normalise features first, so the matrices hold cosine similarities.
        img_level: one ``[N, N]`` matrix per image; otherwise one ``[M, M]`` over the whole batch.
        remove_neg: clamp negative similarities to zero in both matrices.
        remove_only_teacher_neg: zero the teacher's negative similarities, and the student's where
            both are negative (exclusive with ``remove_neg``).

    Returns:
        Scalar loss (float32).
    """
    if remove_neg and remove_only_teacher_neg:
        raise ValueError("remove_neg and remove_only_teacher_neg are exclusive")
    if student_patches.shape != gram_teacher_patches.shape:
        raise ValueError(f"shape mismatch: {tuple(student_patches.shape)} vs {tuple(gram_teacher_patches.shape)}")
    if img_level and student_patches.ndim != 3:
        raise ValueError("img_level=True needs [B, N, D] features")
    with torch.no_grad():
        target = _similarity(gram_teacher_patches, normalize, img_level)
    student = _similarity(student_patches, normalize, img_level)
    if remove_neg:
        target = target.clamp(min=0)
        student = student.clamp(min=0)
    elif remove_only_teacher_neg:
        teacher_neg = target < 0
        target = target.clamp(min=0)
        student = student.masked_fill(teacher_neg & (student < 0), 0.0)
    return F.mse_loss(student, target)


def resize_patch_features(patches: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int], *,
                          mode: str = "bicubic", antialias: bool = False) -> torch.Tensor:
    """Resamples a patch-feature grid, for a Gram teacher run at a higher resolution than the student.

    Args:
        patches: ``[B, Hs * Ws, D]`` in row-major grid order.
        src_hw: ``(Hs, Ws)``.
        dst_hw: ``(Hd, Wd)``.
        mode: interpolation mode (DINOv3: bicubic, no antialias).
        antialias: antialias when downsampling.

    Returns:
        ``[B, Hd * Wd, D]``.
    """
    grid = patches.transpose(1, 2).unflatten(-1, src_hw)  # [B, D, Hs, Ws]
    grid = F.interpolate(grid, size=dst_hw, mode=mode, align_corners=False, antialias=antialias)
    return grid.flatten(2).transpose(1, 2)  # [B, Hd * Wd, D]


@torch.no_grad()
def snapshot_into(dst_module: nn.Module, src_module: nn.Module) -> None:
    """Copies every parameter and buffer of ``dst_module`` from the same-named entry of ``src_module``.

    ``src_module`` may hold more (a teacher with heads into a backbone-only Gram teacher, as DINOv3
    skips ``dino_head``/``ibot_head``); a missing or mis-shaped entry raises.

    Args:
        dst_module: receives the weights, in place.
        src_module: the source, usually the EMA teacher (or its backbone).
    """
    src = src_module.state_dict(keep_vars=True)
    dst = dst_module.state_dict(keep_vars=True)
    missing = [k for k in dst if k not in src]
    if missing:
        raise KeyError(f"source module lacks {len(missing)} entries, e.g. {missing[:3]}")
    for name, tensor in dst.items():
        if tensor.shape != src[name].shape:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)} vs source {tuple(src[name].shape)}")
    torch._foreach_copy_([t.data for t in dst.values()], [src[k].data for k in dst])


@dataclass(kw_only=True)
class GramConfig:
    """When Gram anchoring runs (DINOv3 ``gram`` config): ``DINOv3Task(gram=...)`` as a typed config,
    ``OmegaConf.structured(GramConfig(start_step=100, load_step=100, update_every=50))``.

    ``start_step`` is the first step that adds the Gram loss; the other fields are
    :class:`GramTeacher`'s snapshot schedule, with its defaults (a test keeps the two in step).
    ``start_fraction``, ``load_fraction`` and ``update_fraction`` give the same three milestones as
    fractions of the run, resolved when its length is known (``floor(fraction * total_steps)``), so that
    a recipe's anchoring follows ``train.max_steps``; each in place of its step field, not with it (a
    ``load_fraction`` replaces the default ``load_step=0``).
    """

    start_step: Optional[int] = None
    load_step: Optional[int] = 0
    update_every: Optional[int] = None
    first_update_step: int = 0
    max_updates: Optional[int] = None
    start_fraction: Optional[float] = None
    load_fraction: Optional[float] = None
    update_fraction: Optional[float] = None

    def resolved(self, total_steps: int) -> GramConfig:
        """This config with every fraction turned into its step field for a run of ``total_steps``."""
        pairs = {"start_step": "start_fraction", "load_step": "load_fraction", "update_every": "update_fraction"}
        values = dataclasses.asdict(self)
        for step_name, fraction_name in pairs.items():
            fraction = values.pop(fraction_name)
            if fraction is None:
                continue
            if values[step_name] is not None and not (step_name == "load_step" and values[step_name] == 0):
                # load_step=0 is also the default: a load_fraction takes its place
                raise ValueError(f"task.gram.{step_name}={values[step_name]} and task.gram.{fraction_name}={fraction}: "
                                 f"set one of them (to give steps, also set task.gram.{fraction_name}=null)")
            values[step_name] = fraction_of(fraction, total_steps, f"task.gram.{fraction_name}")
        if values["start_step"] is None:
            raise ValueError("task.gram needs start_step or start_fraction (when the Gram loss starts)")
        if values["update_every"] == 0:
            raise ValueError(f"task.gram.update_fraction gives update_every=0 in a run of {total_steps} steps")
        return GramConfig(**values)


class GramTeacher(nn.Module):
    """A frozen snapshot of the EMA teacher, refreshed on a fixed schedule (DINOv3 ``gram`` config).

    Snapshot semantics: before iteration ``load_step`` the EMA teacher is copied in
    (``it_load_ema_teacher``); afterwards, before every iteration ``s >= first_update_step`` with
    ``s % update_every == 0`` (``rep_update``, ``update_frequency``, ``it_first_update``), it is copied
    again, at most ``max_updates`` times. Between refreshes the Gram teacher does not move, unlike
    the EMA teacher, which is the point: it anchors the patch similarities to an earlier, cleaner
    state. (DINOv3 refreshes "after iteration ``it`` when ``(it + 1) % frequency == 0``", which is
    the same moment.) To start from a checkpoint instead, load it and call :meth:`refresh`.

    Args:
        module: the network to hold, typically ``copy.deepcopy(teacher_backbone)``; it is frozen.
        load_step: iteration before which the first snapshot is taken (``None``: only by hand).
        update_every: refresh period in iterations (``None``: never refresh).
        first_update_step: first iteration at which periodic refreshes may happen.
        max_updates: cap on periodic refreshes (``None``: no cap).
    """

    def __init__(self, module: nn.Module, *, load_step: int | None = 0, update_every: int | None = None,
                 first_update_step: int = 0, max_updates: int | None = None):
        super().__init__()
        self.module = module.requires_grad_(False).eval()
        self.load_step = load_step
        self.update_every = update_every
        self.first_update_step = first_update_step
        self.max_updates = max_updates
        self.num_updates = 0
        self.initialized = False

    @classmethod
    def from_teacher(cls, teacher: nn.Module, **schedule) -> GramTeacher:
        """A Gram teacher with the teacher's architecture; weights are copied at the first snapshot."""
        return cls(copy.deepcopy(teacher), **schedule)

    def train(self, mode: bool = True) -> GramTeacher:
        # The snapshot always runs in eval mode, whatever the surrounding model does.
        super().train(mode)
        self.module.eval()
        return self

    def get_extra_state(self) -> dict:
        # Saved with the weights, so a resumed run neither re-counts refreshes nor forgets the snapshot.
        return {"num_updates": self.num_updates, "initialized": self.initialized}

    def set_extra_state(self, state: dict) -> None:
        self.num_updates = state["num_updates"]
        self.initialized = state["initialized"]

    def refresh(self, ema_teacher: nn.Module) -> None:
        """Takes a snapshot of ``ema_teacher`` now."""
        snapshot_into(self.module, ema_teacher)
        self.initialized = True

    def maybe_refresh(self, step: int, ema_teacher: nn.Module) -> bool:
        """Call before iteration ``step``; snapshots if the schedule says so. Returns whether it did."""
        if step == self.load_step:
            self.refresh(ema_teacher)
            return True
        periodic = (self.update_every is not None and step > 0 and step >= self.first_update_step
                    and step % self.update_every == 0
                    and (self.max_updates is None or self.num_updates < self.max_updates))
        if periodic:
            self.refresh(ema_teacher)
            self.num_updates += 1
        return periodic

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        if not self.initialized:
            raise RuntimeError("Gram teacher has no snapshot yet: call refresh() or wait for load_step")
        return self.module(*args, **kwargs)
