"""timm's model interface on :class:`~vitlab.models.HybridViT`, with the semantics of timm's ViT
(``timm/models/vision_transformer.py``, timm 1.0): ``forward_intermediates``, ``prune_intermediate_layers``,
``feature_info``, ``reset_classifier`` / ``get_classifier``, ``set_grad_checkpointing`` and
``pretrained_cfg`` / ``default_cfg``. timm's feature wrapper (``features_only=True``, timm's
``FeatureGetterNet``) and timm's training tools drive a HybridViT through these; see docs/interop.md.

vitlab orders tokens ``[patches, CLS, registers, padding]``; what these methods return is in timm's
order, prefix tokens (CLS, registers) first, then the patches, and never holds padding: a padded block's
zero tokens are stripped by ``run_block`` before anything here sees them.

Nothing here imports timm: the interface works without it.

Axis legend: B batch, h x w patch grid, N = h*w patches, D width, R registers, K = CLS + R prefix tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from vitlab.models.readout import Readout

__all__ = ["TimmInterface", "default_pretrained_cfg", "feature_take_indices"]

# vitlab's ImageNet evaluation (configs/data/imagenet.py): ImageNet statistics, resize 256 (bilinear,
# torchvision's default) then center crop 224.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_pretrained_cfg(*, in_channels: int, image_size: Sequence[int], num_classes: int) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` fields for a vitlab network: what its weights expect as input.

    Args:
        in_channels: image channels C.
        image_size: the reference (H, W).
        num_classes: the head's classes (0: no head).

    Returns:
        A dict with timm's keys (``timm.models.PretrainedCfg``): ``input_size`` (C, H, W), ``mean``,
        ``std``, ``crop_pct``, ``interpolation``, ``num_classes``, ``first_conv``, ``classifier``, ...
    """
    if in_channels == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:  # no statistics are known for other channel counts: map [0, 1] to [-1, 1]
        mean, std = (0.5,) * in_channels, (0.5,) * in_channels
    H, W = image_size
    return dict(
        input_size=(in_channels, H, W),
        fixed_input_size=False,  # any size divisible by the patch size runs
        mean=mean,
        std=std,
        crop_pct=224 / 256,
        crop_mode="center",
        interpolation="bilinear",
        num_classes=num_classes,
        first_conv="patch_embed.proj",  # timm adapts it when in_chans differs from the weights'
        classifier="head",  # timm drops it when num_classes differs from the weights'
        license="apache-2.0",
    )


def feature_take_indices(num_blocks: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: which blocks to take, as absolute indices, and the largest.

    Args:
        num_blocks: depth.
        indices: None for all blocks, an int n for the last n, or a list of indices (negative ones
            count from the end).

    Returns:
        (indices from 0, their maximum).
    """
    if indices is None:
        indices = num_blocks
    if isinstance(indices, bool):
        raise TypeError(f"indices must be None, an int or a list of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 0 < indices <= num_blocks:
            raise ValueError(f"indices={indices} (the last n blocks) must be in 1..{num_blocks}")
        take = list(range(num_blocks - indices, num_blocks))
    else:
        take = [int(i) + num_blocks if int(i) < 0 else int(i) for i in indices]
        bad = [i for i, t in zip(indices, take) if not 0 <= t < num_blocks]
        if bad or not take:
            raise ValueError(f"indices={list(indices)}: block indices must be in -{num_blocks}..{num_blocks - 1} "
                             f"and not empty (the model has {num_blocks} blocks)")
    return take, max(take)


class TimmInterface:
    """timm's ViT methods, mixed into :class:`~vitlab.models.HybridViT` (they use its ``blocks``,
    ``prepare_tokens``, ``run_block``, ``apply_norm``, ``readout`` and ``head``)."""

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """One entry per block, as timm's ViT: ``module`` ``blocks.i``, ``num_chs`` D, ``reduction`` P."""
        return [dict(module=f"blocks.{i}", num_chs=self.dim, reduction=self.patch_size) for i in range(len(self.blocks))]

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's old name of ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value  # timm's builder assigns both names

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
    ) -> list | tuple[torch.Tensor, list] | dict[str, Any]:
        """The outputs of some blocks, and the final features: timm's ViT ``forward_intermediates``.

        Args:
            x: images [B, C, H, W].
            indices: None for every block, an int n for the last n, or a list of block indices
                (negative from the end). Outputs come in block order.
            return_prefix_tokens: pair each intermediate with its prefix tokens [B, K, D] (CLS, then
                registers); ignored by a model with neither, as timm does.
            norm: apply the final norm to the intermediates.
            stop_early: run no block after the last one taken (the final features are then that
                block's output after the final norm).
            output_fmt: ``NCHW`` (patches as [B, D, h, w]) or ``NLC`` ([B, N, D]).
            intermediates_only: return the intermediates only.
            output_dict: return a dict with ``image_intermediates``, ``image_intermediates_prefix``
                (when asked for and there are prefix tokens) and ``image_features`` (unless
                ``intermediates_only``).

        Returns:
            ``(final, intermediates)``, with ``final`` [B, K + N, D] after the final norm in timm's order
            (prefix tokens, then patches), or ``intermediates`` alone, or the dict.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.blocks), indices)
        tokens, layout = self.prepare_tokens(x)  # [B, N + K, D]
        last = max_index if stop_early else len(self.blocks) - 1
        taken = []
        for i in range(last + 1):
            tokens = self.run_block(i, tokens, layout)
            if i in take:
                taken.append(self.apply_norm(tokens, layout) if norm else tokens)

        n = layout.num_patches
        intermediates = [y[:, :n] for y in taken]  # [B, N, D]
        prefix = [y[:, n:] for y in taken] if layout.num_tokens > n else None  # [B, K, D]
        if output_fmt == "NCHW":
            B, D = tokens.shape[0], tokens.shape[2]
            intermediates = [y.reshape(B, layout.grid_h, layout.grid_w, D).permute(0, 3, 1, 2).contiguous()
                             for y in intermediates]

        def final() -> torch.Tensor:
            out = self.apply_norm(tokens, layout)
            return torch.cat((out[:, n:], out[:, :n]), dim=1)  # timm's order: prefix tokens, then patches

        if output_dict:
            result: dict[str, Any] = {"image_intermediates": intermediates}
            if prefix is not None and return_prefix_tokens:
                result["image_intermediates_prefix"] = prefix
            if not intermediates_only:
                result["image_features"] = final()
            return result
        if return_prefix_tokens and prefix is not None:
            intermediates = list(zip(intermediates, prefix))
        if intermediates_only:
            return intermediates
        return final(), intermediates

    def prune_intermediate_layers(
        self,
        indices: int | Sequence[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the blocks after the last one ``indices`` takes (timm's ViT method).

        Args:
            indices: as :meth:`forward_intermediates`'s.
            prune_norm: replace the final norms by ``nn.Identity``.
            prune_head: replace the head by ``nn.Identity`` (``num_classes`` becomes 0); the readout
                stays, so ``forward`` returns the readout embedding.

        Returns:
            the taken indices from 0 (negative indices no longer count from the same end afterwards).
        """
        take, max_index = feature_take_indices(len(self.blocks), indices)
        keep = max_index + 1
        self.blocks = self.blocks[:keep]
        # per-block lists run in step with self.blocks (run_block, flop_report and layer_id read them)
        self.checkpointed = self.checkpointed[:keep]
        self.block_needs_padding = self.block_needs_padding[:keep]
        self.drop_path_rates = self.drop_path_rates[:keep]
        self.layer_pattern = self.layer_pattern[:keep]
        self.num_blocks = keep
        if prune_norm:
            self.norm = nn.Identity()
            if self.cls_norm is not None:
                self.cls_norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take

    def get_classifier(self) -> nn.Module:
        """The head: ``nn.Linear`` on the readout embedding, or ``nn.Identity`` when ``num_classes`` is 0."""
        return self.head

    def reset_classifier(self, num_classes: int, readout: str | None = None, *,
                         neck_compression_ratio: int | None = None) -> None:
        """A new head of ``num_classes`` (0: none), freshly initialised, optionally on a new readout.

        timm's second argument is ``global_pool``; vitlab's is the readout (``cls``, ``gap`` or
        ``register_concat``, see :mod:`vitlab.models.readout`).

        Args:
            num_classes: classes of the new head; 0 makes the forward return the readout embedding.
            readout: a new readout; None keeps the current one (and its neck weights).
            neck_compression_ratio: r of a new ``register_concat`` neck; by default the current neck's.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        ref = self.patch_embed.proj.weight
        dd = dict(device=ref.device, dtype=ref.dtype)
        if readout is not None:
            if neck_compression_ratio is None and self.readout.neck is not None:
                neck_compression_ratio = self.readout.neck.in_features // self.readout.neck.out_features
            self.readout = Readout(readout, self.dim, num_cls=self.num_cls, num_registers=self.num_registers,
                                   neck_compression_ratio=neck_compression_ratio, **dd)
            if self.readout.neck is not None and not ref.is_meta:
                nn.init.trunc_normal_(self.readout.neck.weight, std=0.02)
        self.num_classes = num_classes
        head = nn.Linear(self.readout.out_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        if num_classes > 0 and not ref.is_meta:
            nn.init.trunc_normal_(head.weight, std=0.02)  # init_weights' scheme
            nn.init.zeros_(head.bias)
        self.head = head.train(self.training)
        self.readout.train(self.training)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """timm's switch for activation checkpointing: every block (``set_activation_checkpointing(1)``)
        or none. There is one mechanism; this only picks the blocks."""
        self.set_activation_checkpointing(1 if enable else None)
