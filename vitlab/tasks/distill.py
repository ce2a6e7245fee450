"""Distilling a frozen teacher into any vitlab student: a hybrid ``layer_pattern`` from an attention teacher.

The teacher is a vitlab checkpoint (a run's, or converted DINOv3 weights), frozen: never updated. What it
holds picks the mode:

- ``heads``: a DINOv3 run's checkpoint, whose teacher backbone comes with its DINO and iBOT heads. This is
  DINOv3's distillation (Siméoni et al. 2025, section 5): the frozen teacher's Sinkhorn-Knopp-centred
  distributions on the global crops are the targets of the student's DINO head (every student crop,
  local ones included, as in pretraining) and of its iBOT head (on the masked patches); KoLeo spreads the
  student's global embeddings. The student's heads are built from the teacher's head configs (same number
  of prototypes K) with the student's input width.
- ``features``: a bare backbone (released weights carry no heads). Feature distillation through learned
  projections, as AM-RADIO (Ranzinger et al. 2024, "AM-RADIO: Agglomerative Vision Foundation Model"):
  a 2-layer MLP maps the student's readout embedding to the teacher's and one maps every student patch
  token to the teacher's width; the loss is the cosine distance of the embeddings plus, on the patch
  tokens, 0.9 cosine distance + 0.1 smooth-L1 (AM-RADIO's mix for spatial features). The student sees the
  same global crops as the teacher, unmasked; local crops are not used.

Patch grids may differ (another patch size, registers, width): the teacher's patch tokens
``[B, ht, wt, Dt]`` are resampled bilinearly to the student's grid ``[B, hs, ws, Dt]`` before its iBOT head
or the patch loss. ``self.model`` is the student: what checkpoints store under ``model`` and what the online
k-NN monitor reads. Axis legend: B images, G=2 global crops, K prototypes, M masked patches, D width.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from vitlab.config import build, instantiate, typed_sections
from vitlab.ssl import DINOLoss, iBOTPatchLoss, koleo_loss
from vitlab.tasks.dino import knn_monitor, student_dino_ibot
from vitlab.tasks.task import Task
from vitlab.weights import load_checkpoint, load_model_state

__all__ = ["DistillationTask", "resample_patches"]

HEADS = ("teacher_dino_head", "teacher_ibot_head")


def resample_patches(patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, h, w, D]`` patch tokens resampled (bilinear) to ``grid``; unchanged on the same grid."""
    if tuple(patches.shape[1:3]) == tuple(grid):
        return patches
    out = F.interpolate(patches.permute(0, 3, 1, 2).float(), size=grid, mode="bilinear", align_corners=False)
    return out.permute(0, 2, 3, 1).to(patches.dtype)


def _projection(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


class DistillationTask(Task):
    """A frozen teacher from ``teacher`` (a vitlab checkpoint) distilled into the ``model`` student.

    Args:
        model: the student's backbone config (``num_classes=0``; ``mask_token=True`` in ``heads`` mode).
        teacher: path of the teacher's vitlab checkpoint; its ``model`` is the teacher backbone.
        mode: ``auto`` (``heads`` when the file has DINO and iBOT teacher heads, else ``features``),
            ``heads`` or ``features``.
        student_temp, teacher_temp: softmax temperatures of the heads mode (DINOv3: 0.1 and 0.07).
        dino_weight, ibot_weight, koleo_weight: the heads mode's loss weights (DINOv3: 1, 1, 0.1).
        patch_weight: weight of the features mode's patch loss (its embedding loss has weight 1).
        centering: the heads mode's teacher centering, ``sinkhorn_knopp`` (DINOv3) or ``softmax``.
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("model",)

    def __init__(self, *, model: Any, teacher: str, mode: str = "auto", student_temp: float = 0.1,
                 teacher_temp: float = 0.07, dino_weight: float = 1.0, ibot_weight: float = 1.0,
                 koleo_weight: float = 0.1, patch_weight: float = 1.0, centering: str = "sinkhorn_knopp"):
        super().__init__()
        if mode not in ("auto", "heads", "features"):
            raise ValueError(f"task.mode={mode!r}: must be auto, heads or features")
        self.model = build(model)
        if getattr(self.model, "num_classes", 0):
            raise ValueError(f"a distilled student is a backbone: set model.num_classes=0 (got {self.model.num_classes})")
        ckpt = load_checkpoint(teacher)
        if "config" not in ckpt:
            raise ValueError(f"task.teacher={str(teacher)!r} holds no config: cannot rebuild the teacher")
        cfg = typed_sections(OmegaConf.create(ckpt["config"]))
        kernels = getattr(self.model, "kernels", None)  # the student's choice (model.kernels): teacher and losses too
        self.teacher = instantiate(cfg.model, **({} if kernels is None else {"kernels": kernels}))
        load_model_state(self.teacher, ckpt["model"], repr(str(teacher)))
        has_heads = all(any(k.startswith(h + ".") for k in ckpt.get("task", {})) for h in HEADS)
        self.mode = ("heads" if has_heads else "features") if mode == "auto" else mode
        if self.mode == "heads" and not has_heads:
            raise ValueError(f"task.mode='heads': {str(teacher)!r} has no DINO / iBOT teacher heads "
                             "(a bare backbone: use mode='features')")
        t_embed, s_embed = self.teacher.readout.out_dim, self.model.readout.out_dim
        if self.mode == "heads":
            if getattr(self.model, "mask_token", None) is None:
                raise ValueError("task.mode='heads' masks the student's patches for iBOT: set model.mask_token=True")
            task_cfg = cfg.task
            self.teacher_dino_head = build(task_cfg.dino_head, in_dim=t_embed)
            self.teacher_ibot_head = build(task_cfg.ibot_head, in_dim=self.teacher.dim)
            for name in HEADS:
                state = {k[len(name) + 1:]: v for k, v in ckpt["task"].items() if k.startswith(name + ".")}
                load_model_state(getattr(self, name), state, f"{str(teacher)!r} {name}")
            self.student_dino_head = build(task_cfg.dino_head, in_dim=s_embed)
            self.student_ibot_head = build(task_cfg.ibot_head, in_dim=self.model.dim)
            k_dino = self.teacher_dino_head.last_layer.out_features
            k_ibot = self.teacher_ibot_head.last_layer.out_features
            self.dino_loss = DINOLoss(k_dino, student_temp=student_temp, centering=centering, kernels=kernels)
            self.ibot_loss = iBOTPatchLoss(k_ibot, student_temp=student_temp, centering=centering, kernels=kernels)
            frozen = [self.teacher, self.teacher_dino_head, self.teacher_ibot_head]
        else:
            self.embed_proj = _projection(s_embed, t_embed)
            self.patch_proj = _projection(self.model.dim, self.teacher.dim)
            frozen = [self.teacher]
        self.frozen = frozen
        for module in frozen:
            module.requires_grad_(False).eval()
        self.teacher_temp, self.weights = teacher_temp, {
            "dino": dino_weight, "ibot": ibot_weight, "koleo": koleo_weight, "patch": patch_weight}
        self.teacher_path = str(teacher)
        self._flop_counts: dict[tuple, int] = {}

    def train(self, mode: bool = True) -> DistillationTask:
        super().train(mode)
        for module in self.frozen:  # the teacher always runs in eval mode (no drop path)
            module.eval()
        return self

    def trainable_modules(self) -> dict[str, nn.Module]:
        if self.mode == "heads":
            return {"backbone": self.model, "dino_head": self.student_dino_head, "ibot_head": self.student_ibot_head}
        return {"backbone": self.model, "embed_proj": self.embed_proj, "patch_proj": self.patch_proj}

    def setup(self, *, total_steps: int) -> None:
        """Says what is distilled into what, with both networks' FLOPs."""
        size = self.model.image_size
        s, t = (net.flop_count(inference=True, image_size=size) for net in (self.model, self.teacher))
        print(f"[vitlab] distillation ({self.mode}) of {self.teacher_path!r}: student {s / 1e9:.4f} GFLOPs, "
              f"teacher {t / 1e9:.4f} GFLOPs per image (forward, at the student's image size)", flush=True)

    # ----------------------------------------------------------------- the step
    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        globals_ = batch["global_crops"]  # [G*B, C, H, W], crop-major
        with torch.no_grad():
            t_feats = self.teacher.forward_features(globals_)
        loss, metrics = (self._heads_step if self.mode == "heads" else self._features_step)(batch, t_feats)
        metrics |= {f"flops/{k}_gflops": torch.tensor(v / 1e9) for k, v in self._flops(globals_).items()}
        return loss, metrics

    def _heads_step(self, batch: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor]):
        globals_, masks, masked = batch["global_crops"], batch.get("masks"), batch.get("mask_indices")
        B, temp, t_patch_probs = globals_.shape[0] // 2, self.teacher_temp, None
        s_feats = self.model.forward_features(globals_, masks=masks)
        with torch.no_grad():
            t_logits = self.teacher_dino_head(self.teacher.readout(t_feats)).unflatten(0, (2, B))  # [G, B, K]
            t_probs = self.dino_loss.teacher_probs(t_logits, temp)
            if masked is not None:  # the teacher's patches on the student's grid, at the masked positions
                t_patches = resample_patches(t_feats["patches"], tuple(s_feats["patches"].shape[1:3]))
                t_masked = t_patches.flatten(0, 2).index_select(0, masked)  # [M, Dt]
                t_patch_probs = self.ibot_loss.teacher_probs(self.teacher_ibot_head(t_masked), temp)  # [M, K]
        dino, ibot, s_embed, dino_terms = student_dino_ibot(self.model, (self.student_dino_head, self.student_ibot_head),
                                                (self.dino_loss, self.ibot_loss), s_feats, batch, t_probs,
                                                t_patch_probs)
        koleo = sum(koleo_loss(e) for e in s_embed.float().chunk(2)) if B > 1 else dino.new_zeros(())
        w = self.weights
        loss = w["dino"] * dino + w["ibot"] * ibot + w["koleo"] * koleo
        return loss, {"dino_loss": dino.detach(), "ibot_loss": ibot.detach(), "koleo_loss": koleo.detach()} | dino_terms

    def _features_step(self, batch: dict[str, torch.Tensor], t_feats: dict[str, torch.Tensor]):
        s_feats = self.model.forward_features(batch["global_crops"])
        t_embed = self.teacher.readout(t_feats).float()  # [G*B, Et]
        s_embed = self.embed_proj(self.model.readout(s_feats)).float()
        embed = (1 - F.cosine_similarity(s_embed, t_embed, dim=-1)).mean()
        s_patches = self.patch_proj(s_feats["patches"]).float()  # [G*B, hs, ws, Dt]
        t_patches = resample_patches(t_feats["patches"], tuple(s_patches.shape[1:3])).float()
        cosine = (1 - F.cosine_similarity(s_patches, t_patches, dim=-1)).mean()
        patch = 0.9 * cosine + 0.1 * F.smooth_l1_loss(s_patches, t_patches)
        loss = embed + self.weights["patch"] * patch
        return loss, {"embed_loss": embed.detach(), "patch_loss": patch.detach()}

    def _flops(self, globals_: torch.Tensor) -> dict[str, int]:
        size = tuple(globals_.shape[-2:])
        return {"student": self._count("student", True, size), "teacher": self._count("teacher", True, size)}

    def _count(self, which: str, inference: bool, size: tuple[int, ...]) -> int:
        """One image's FLOPs of the student or the teacher, counted once per crop size (analytic, fixed)."""
        key = (which, inference, size)
        if key not in self._flop_counts:
            network = self.model if which == "student" else self.teacher
            self._flop_counts[key] = network.flop_count(inference=inference, image_size=size)
        return self._flop_counts[key]

    def train_flops(self, batch: dict[str, torch.Tensor]) -> int:
        """The student's forward + backward on its crops and the teacher's forward on the global crops
        (heads and projections are not counted, as for DINOv3)."""
        globals_, locals_ = batch["global_crops"], batch.get("local_crops")
        size = tuple(globals_.shape[-2:])
        flops = len(globals_) * (self._count("student", False, size) + self._count("teacher", True, size))
        if locals_ is not None and self.mode == "heads":
            flops += len(locals_) * self._count("student", False, tuple(locals_.shape[-2:]))
        return flops

    @torch.no_grad()
    def evaluate(self, make_loader: Callable[[str], Any], protocol: Any) -> dict[str, float]:
        """The online k-NN monitor (:func:`vitlab.tasks.dino.knn_monitor`) of the student."""
        return knn_monitor(self.model, make_loader, protocol)
