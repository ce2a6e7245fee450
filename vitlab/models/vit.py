"""HybridViT: a vision transformer whose blocks are chosen per layer from a pattern string.

The API follows ViT-5's classification network (nvSubquadratic): the token layout
``[patches (h*w), CLS, registers (R), padding (P)]``, homogeneous (``block_layer``) or hybrid
(``layer_pattern`` + ``layer_types``) stacking, ``padding_types``, readouts, and drop-path schedules.
It adds what DINOv3 (Siméoni et al. 2025) needs: an optional CLS token, no absolute position
embedding (RoPE blocks carry position), a mask token for iBOT, an untied CLS/register norm, and
``get_intermediate_layers``.

Axis legend: B batch, h x w patch grid, N = h*w patches, T tokens, D width (``dim``), R registers.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vitlab.compat import keyword_only, renamed_kwargs
from vitlab.config import ModuleFactory, build
from vitlab.hub.pretrained import PretrainedMixin
from vitlab.kernels import resolve_kernels
from vitlab.kernels.dispatch import Backend
from vitlab.layers import LearnedPosEmbed, PatchEmbed
from vitlab.layers.token_layout import TokenLayout
from vitlab.models.pattern import block_letter, drop_path_rates, parse_layer_pattern
from vitlab.models.readout import Readout
from vitlab.models.timm_interface import TimmInterface, default_pretrained_cfg

__all__ = ["HybridViT"]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class HybridViT(TimmInterface, nn.Module, PretrainedMixin):
    """Vision transformer with per-layer block types.

    It also speaks timm's model interface (``forward_intermediates``, ``feature_info``,
    ``reset_classifier``, ``pretrained_cfg``, ...; see :mod:`vitlab.models.timm_interface`), and
    ``save_pretrained(DIR)`` / ``HybridViT.from_pretrained(DIR or repo id)`` / ``push_to_hub(repo id)`` share
    it as ``model.safetensors`` + ``config.json`` (:mod:`vitlab.hub.pretrained`).

    Args:
        in_channels: image channels.
        num_classes: logits of the head; 0 returns the readout embedding.
        dim: width D.
        num_blocks: depth.
        patch_size: P.
        image_size: reference size (int or (H, W)): the learned position embedding's grid and the
            default for FLOP counting. Other sizes divisible by P work at run time.
        num_registers: R register tokens (Darcet et al. 2024, "Vision Transformers Need Registers").
        norm_layer: factory (or config) of the final norm (gets ``dim``).
        readout: ``cls | gap | register_concat`` (see :mod:`vitlab.models.readout`).
        block_layer: factory (or config) of one block, built ``num_blocks`` times (homogeneous mode).
        dropout_rate: dropout before the head.
        neck_compression_ratio: r of the ``register_concat`` neck ``Linear(D, D // r)``.
        reg_init: ``trunc_normal`` or ``zeros`` for the register tokens.
        layer_pattern: one character per block (hybrid mode), e.g. ``"HR" * 6``.
        layer_types: character -> block factory (or config) (hybrid mode).
        padding_types: characters whose blocks see the padded sequence (hybrid mode), an explicit
            override; by default (None) a block is padded when its mixer sets ``needs_grid = True``
            (Hyena 2D does), whatever its character.
        max_drop_path_rate: peak stochastic depth rate.
        drop_path_schedule: ``constant`` or ``linear`` (0 -> max across depth).
        class_token: whether there is a CLS token.
        pos_embed: ``learned`` absolute position embedding (with a slot for the CLS token, as timm's
            ViT), or ``none`` (position from RoPE / convolutions only, as DINOv3).
        mask_token: learn a token that replaces masked patches (iBOT/DINOv3 pretraining).
        cls_norm_layer: factory (or config) of a separate final norm for CLS and registers (DINOv3's untied norms).
        kernels: backend of the fused hot paths (norms, residual + LayerScale + drop path, RoPE,
            SwiGLU, Hyena gating): ``auto`` (Triton on CUDA), ``triton`` or ``torch``, injected into every
            block and norm (and by them into their parts) as ``dim`` is. None: the default of
            :func:`vitlab.kernels.resolve_kernels`, ``VITLAB_KERNELS`` or ``auto``.
        device, dtype: where and how to build the parameters (``device="meta"`` for FLOP counting).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("norm_layer", "block_layer", "layer_types", "cls_norm_layer")

    @renamed_kwargs(norm_cfg="norm_layer", block_cfg="block_layer", cls_norm_cfg="cls_norm_layer")
    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        dim: int,
        num_blocks: int,
        patch_size: int = 16,
        image_size: int | Sequence[int] = 224,
        num_registers: int = 0,
        norm_layer: ModuleFactory,
        readout: Literal["cls", "gap", "register_concat"] = "cls",
        block_layer: ModuleFactory | None = None,
        dropout_rate: float = 0.0,
        neck_compression_ratio: int | None = None,
        reg_init: Literal["trunc_normal", "zeros"] = "trunc_normal",
        layer_pattern: str | None = None,
        layer_types: dict[str, ModuleFactory] | None = None,
        padding_types: Sequence[str] | None = None,
        max_drop_path_rate: float = 0.0,
        drop_path_schedule: Literal["constant", "linear"] = "constant",
        class_token: bool = True,
        pos_embed: Literal["learned", "none"] = "learned",
        mask_token: bool = False,
        cls_norm_layer: ModuleFactory | None = None,
        kernels: Backend | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        for name, value in (("dim", dim), ("num_blocks", num_blocks), ("patch_size", patch_size),
                            ("in_channels", in_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(num_registers, int) or num_registers < 0:
            raise ValueError(f"num_registers must be a non-negative integer, got {num_registers!r}")
        if reg_init not in ("trunc_normal", "zeros"):
            raise ValueError(f"reg_init must be 'trunc_normal' or 'zeros', got {reg_init!r}")
        if pos_embed not in ("learned", "none"):
            raise ValueError(f"pos_embed must be 'learned' or 'none', got {pos_embed!r}")
        self.image_size = _pair(image_size)
        if self.image_size[0] % patch_size or self.image_size[1] % patch_size:
            raise ValueError(f"image_size={image_size} is not divisible by patch_size={patch_size}")
        if (block_layer is None) == (layer_pattern is None):
            raise ValueError("give exactly one of block_layer (homogeneous) or layer_pattern + layer_types (hybrid)")
        if layer_pattern is not None and not layer_types:
            raise ValueError(f"layer_pattern={layer_pattern!r} needs layer_types (a dict: character -> block config)")
        if layer_pattern is None and layer_types:
            raise ValueError("layer_types is only used with layer_pattern")

        dd = dict(device=device, dtype=dtype)
        self.kernels = resolve_kernels(kernels)
        parts = dict(kernels=self.kernels, **dd)  # what every block and norm gets besides dim
        D = dim
        self.dim, self.num_blocks, self.patch_size = D, num_blocks, patch_size
        self.in_channels, self.num_classes = in_channels, num_classes
        self.num_cls, self.num_registers = int(class_token), num_registers
        self.reg_init = reg_init
        grid = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)

        self.patch_embed = PatchEmbed(in_channels, D, patch_size, **dd)
        self.pos_embed = LearnedPosEmbed(D, *grid, num_prefix=int(class_token), **dd) if pos_embed == "learned" else None
        self.cls_token = nn.Parameter(torch.empty(1, 1, D, **dd)) if class_token else None
        self.register_tokens = nn.Parameter(torch.empty(1, num_registers, D, **dd)) if num_registers else None
        self.mask_token = nn.Parameter(torch.empty(1, D, **dd)) if mask_token else None

        rates = drop_path_rates(max_drop_path_rate, num_blocks, drop_path_schedule)
        if layer_pattern is not None:
            self.layer_pattern = "".join(parse_layer_pattern(layer_pattern, layer_types, num_blocks))
            blocks = [build(layer_types[c], dim=D, drop_path_rate=r, **parts) for c, r in zip(self.layer_pattern, rates)]
        else:
            if padding_types is not None:
                raise ValueError("padding_types is only used with layer_pattern")
            blocks = [build(block_layer, dim=D, drop_path_rate=r, **parts) for r in rates]
        # One rule: a block sees the padded grid when its mixer says it needs the grid (Hyena 2D);
        # padding_types, the seed API's name, overrides that per character in hybrid mode.
        if padding_types is None:
            self.block_needs_padding = [bool(getattr(getattr(b, "mixer", None), "needs_grid", False)) for b in blocks]
        else:
            self.block_needs_padding = [c in set(padding_types) for c in self.layer_pattern]
        if layer_pattern is None:  # homogeneous: each block by its mixer's letter, as a hybrid pattern would name it
            self.layer_pattern = "".join(block_letter(b) for b in blocks)
        self.blocks = nn.ModuleList(blocks)
        self.drop_path_rates = rates
        self.checkpointed = [False] * num_blocks  # per block: recompute its activations in backward

        self.norm = build(norm_layer, dim=D, **parts)
        self.cls_norm = build(cls_norm_layer, dim=D, **parts)
        self.readout = Readout(readout, D, num_cls=self.num_cls, num_registers=num_registers,
                               neck_compression_ratio=neck_compression_ratio, **dd)
        self.head_drop = nn.Dropout(dropout_rate)
        self.head = nn.Linear(self.readout.out_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.pretrained_cfg = default_pretrained_cfg(in_channels=in_channels, image_size=self.image_size,
                                                     num_classes=num_classes)
        self.init_weights()

    def set_kernels(self, backend: str) -> None:
        """Removed: the kernels are chosen once, at construction (an error that says so, for one release)."""
        raise AttributeError(f"HybridViT.set_kernels({backend!r}) was removed: the kernels are chosen at construction "
                             f"and reach every part from there; build the network with kernels={backend!r} (config: "
                             f"model.kernels={backend}), or export_program(kernels='torch') for the torch references")

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """DINOv3's init: truncated-normal (std 0.02) linear weights, zero biases, CLS and registers
        normal with std 0.02 (the same scale, so neither readout starts ahead), zero mask token."""
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()  # parts with their own scheme (e.g. Hyena's implicit filter)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)  # DINOv3 (timm's ViT: 1e-6)
        if self.register_tokens is not None:
            if self.reg_init == "zeros":
                nn.init.zeros_(self.register_tokens)
            else:
                nn.init.trunc_normal_(self.register_tokens, std=0.02)
        if self.mask_token is not None:
            nn.init.zeros_(self.mask_token)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay besides biases and norms (handled by the optimizer)."""
        names = {"cls_token", "register_tokens", "mask_token", "pos_embed.pos_embed"}
        return {n for n, _ in self.named_parameters() if n in names or n.endswith(".gamma")}

    def layer_id(self, name: str) -> int:
        """Depth of a parameter for layer-wise lr decay: 0 for the stem, i + 1 for block i, then the rest."""
        if name.startswith(("patch_embed", "pos_embed", "cls_token", "register_tokens", "mask_token")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_blocks + 1

    # ------------------------------------------------------------------ forward
    def layout_for(self, grid_h: int, grid_w: int) -> TokenLayout:
        return TokenLayout(grid_h, grid_w, self.num_cls, self.num_registers)

    def prepare_tokens(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, TokenLayout]:
        """Images [B, C, H, W] -> tokens [B, N + cls + R, D] (no padding) and their layout."""
        tokens, (h, w) = self.patch_embed(x)  # [B, N, D]: through forward, so its hooks fire
        B = tokens.shape[0]
        if masks is not None:
            if self.mask_token is None:
                raise ValueError("masks given but the model has no mask token (build it with mask_token=True)")
            if masks.shape != tokens.shape[:2]:
                raise ValueError(f"masks must be [B, N] = {tuple(tokens.shape[:2])}, got {tuple(masks.shape)}")
            tokens = torch.where(masks[..., None], self.mask_token.to(tokens.dtype), tokens)
        cls = self.cls_token
        if self.pos_embed is not None:
            tokens = self.pos_embed(tokens, h, w)
            cls = cls + self.pos_embed.prefix_pos_embed() if cls is not None else None
        parts = [tokens]
        if cls is not None:
            parts.append(cls.expand(B, -1, -1))
        if self.register_tokens is not None:
            parts.append(self.register_tokens.expand(B, -1, -1))
        return torch.cat(parts, dim=1), self.layout_for(h, w)

    def block_tokens(self, i: int, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """What block ``i`` sees of tokens ``x`` [B, N + cls + R, D]: with ``P`` zero tokens if it is padded."""
        pad = layout.num_padding
        if self.block_needs_padding[i] and pad:
            return torch.cat((x, x.new_zeros(x.shape[0], pad, x.shape[2])), dim=1)
        return x

    def run_block(self, i: int, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Block ``i`` on unpadded tokens, through activation checkpointing if it is checkpointed and a
        gradient is being recorded (see :meth:`set_activation_checkpointing`)."""
        if self.checkpointed[i] and torch.is_grad_enabled():
            return checkpoint(self.block_forward, i, x, layout, use_reentrant=False)
        return self.block_forward(i, x, layout)

    def block_forward(self, i: int, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        """Block ``i`` on unpadded tokens; padded blocks get ``P`` zero tokens appended and removed."""
        out = self.blocks[i](self.block_tokens(i, x, layout), layout)
        return out[:, : layout.num_tokens] if out.shape[1] != layout.num_tokens else out

    def set_activation_checkpointing(self, every: int | None) -> None:
        """Recompute the activations of every ``every``-th block in backward instead of keeping them.

        Block ``i`` is checkpointed when ``(i + 1) % every == 0`` (torchtitan's selective per-layer
        rule): ``every=1`` checkpoints all blocks, ``None`` none. A checkpointed block keeps only its
        input for backward (its padding is added inside the checkpoint) and runs its forward twice;
        non-reentrant ``torch.utils.checkpoint`` restores the RNG state for the recomputation, so drop
        path draws the same masks and losses and gradients are bit-identical to a run without it.
        Evaluation and no-grad forwards (an EMA teacher) are never checkpointed.
        """
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"activation checkpointing: every must be a positive integer or None, got {every!r}")
        self.checkpointed = [every is not None and (i + 1) % every == 0 for i in range(len(self.blocks))]

    def apply_norm(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        if self.cls_norm is None:
            return self.norm(x)
        n = layout.num_patches
        return torch.cat((self.norm(x[:, :n]), self.cls_norm(x[:, n:])), dim=1)

    def split_tokens(self, x: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
        B, _, D = x.shape
        n, r0 = layout.num_patches, layout.register_start
        out = {"patches": x[:, :n].reshape(B, layout.grid_h, layout.grid_w, D), "registers": x[:, r0 : r0 + self.num_registers]}
        if self.num_cls:
            out["cls"] = x[:, n]
        return out

    def forward_features(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Tokens after the final norm.

        Returns:
            dict with ``cls`` [B, D] (when there is a CLS token), ``registers`` [B, R, D],
            ``patches`` [B, h, w, D], and ``prenorm`` [B, N + cls + R, D] (before the final norm).
        """
        tokens, layout = self.prepare_tokens(x, masks)
        for i in range(len(self.blocks)):
            tokens = self.run_block(i, tokens, layout)
        out = self.split_tokens(self.apply_norm(tokens, layout), layout)
        out["prenorm"] = tokens
        return out

    def forward_head(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.head_drop(self.readout(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> logits [B, num_classes] (or the readout embedding if num_classes=0)."""
        return self.forward_head(self.forward_features(x))

    def get_intermediate_layers(
        self,
        x: torch.Tensor,
        n: int | Sequence[int] = 1,
        *,
        reshape: bool = False,
        return_class_token: bool = False,
        return_extra_tokens: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of some blocks, as DINOv3's method of the same name.

        Args:
            n: the last ``n`` blocks, or a list of block indices.
            reshape: patch tokens as [B, D, h, w] instead of [B, N, D].
            return_class_token: pair each output with its CLS token [B, D].
            return_extra_tokens: pair each output with its register tokens [B, R, D].
            norm: apply the final norm.

        Returns:
            one entry per selected block: the patch tokens, or a tuple (patches, [cls], [registers]).
        """
        total = len(self.blocks)
        indices = list(range(total - n, total)) if isinstance(n, int) else [int(i) for i in n]
        bad = [i for i in indices if not 0 <= i < total]
        if bad:
            raise ValueError(f"block indices {bad} out of range for a model with {total} blocks")
        tokens, layout = self.prepare_tokens(x)
        outputs = []
        for i in range(max(indices) + 1):
            tokens = self.run_block(i, tokens, layout)
            if i in indices:
                outputs.append(self.apply_norm(tokens, layout) if norm else tokens)
        results = []
        for out in outputs:
            parts = self.split_tokens(out, layout)
            patches = parts["patches"]
            patches = patches.permute(0, 3, 1, 2).contiguous() if reshape else patches.flatten(1, 2)
            item = [patches]
            if return_class_token:
                if "cls" not in parts:
                    raise ValueError("return_class_token=True but the model has no CLS token")
                item.append(parts["cls"])
            if return_extra_tokens:
                item.append(parts["registers"])
            results.append(tuple(item) if len(item) > 1 else patches)
        return tuple(results)

    # ------------------------------------------------------------------ FLOPs
    def flop_report(self, image_size: int | Sequence[int] | None = None, batch_size: int = 1) -> dict:
        """Analytic FLOPs per part for a forward of ``batch_size`` images (see :mod:`vitlab.flops`)."""
        H, W = _pair(image_size) if image_size is not None else self.image_size
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not divisible by patch_size={self.patch_size}")
        layout = self.layout_for(H // self.patch_size, W // self.patch_size)
        stem = batch_size * self.patch_embed.flop_count(layout.grid_h, layout.grid_w)
        layers = []
        for i, block in enumerate(self.blocks):
            tokens = layout.num_padded_tokens if self.block_needs_padding[i] else layout.num_tokens
            fwd = block.flop_count(tokens, layout, batch_size)
            layers.append({
                "index": i,
                "type": self.layer_pattern[i],
                "tokens": tokens,
                "params": sum(p.numel() for p in block.parameters()),
                "flops": fwd,
                "backward_flops": block.backward_flop_count(tokens, layout, batch_size),
            })
        head_in = self.readout.out_dim
        head = batch_size * (self.readout.flop_count(self.num_registers)
                             + (2 * head_in * self.num_classes if self.num_classes > 0 else 0))
        stem_params = sum(p.numel() for n, p in self.named_parameters() if self.layer_id(n) == 0)
        return {
            "image_size": [H, W],
            "batch_size": batch_size,
            "grid": [layout.grid_h, layout.grid_w],
            "tokens": layout.num_tokens,
            "padding": layout.num_padding,
            "stem": {"flops": stem, "backward_flops": stem, "params": stem_params},  # images need no gradient
            "layers": layers,
            "head": {"flops": head, "backward_flops": 2 * head,
                     "params": sum(p.numel() for p in self.head.parameters()) + sum(p.numel() for p in self.readout.parameters())},
        }

    @keyword_only
    def flop_count(self, *, inference: bool = True, image_size: int | Sequence[int] | None = None,
                   batch_size: int = 1) -> int:
        """FLOPs of ``batch_size`` images' forward (``inference=True``) or training step (forward + backward).

        Keyword arguments only: ``flop_count(inference=False, image_size=224)`` (a bare positional boolean
        read as one mode or the other by position; it raises a ``TypeError`` naming the keywords).

        Convention: 2 FLOPs per multiply-add of matrix products, convolutions and attention, plus
        5 N log2 N per real FFT of N points; elementwise work (norms, activations, softmax, gating)
        is not counted, as in fvcore/timm and ``torch.utils.flop_counter``.
        """
        rep = self.flop_report(image_size, batch_size)
        parts = [rep["stem"], rep["head"], *rep["layers"]]
        fwd = sum(p["flops"] for p in parts)
        return fwd if inference else fwd + sum(p["backward_flops"] for p in parts)
