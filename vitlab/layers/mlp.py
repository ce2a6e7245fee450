"""Feed-forward networks: the transformer MLP with GELU (Vaswani et al. 2017; Hendrycks & Gimpel
2016) and the gated FFN of Shazeer 2020, "GLU Variants Improve Transformer" (SwiGLU with SiLU,
GeGLU with GELU, ReGLU with ReLU, ...). Both take the activation as ``act_layer``, as timm's do.

Axis legend: H hidden width.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from vitlab.config import ModuleFactory, build
from vitlab.kernels import resolve_kernels, swiglu
from vitlab.kernels.dispatch import Backend

__all__ = ["Mlp", "SwiGLU"]


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` with hidden width ``hidden_features`` (default ``ratio * dim``).

    Args:
        dim: width D (injected by the block).
        ratio: hidden width over ``dim``, when ``hidden_features`` is not given.
        hidden_features: the hidden width H.
        bias: biases of both projections.
        act_layer: factory (or config) of the activation module, e.g. ``L(nn.GELU)(approximate="tanh")``
            (default ``nn.GELU``, the exact erf form).
        kernels: taken, as every part of a block takes it; the MLP has no fused kernel.
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("act_layer",)

    def __init__(self, dim: int, *, ratio: float = 4.0, hidden_features: int | None = None, bias: bool = True,
                 act_layer: ModuleFactory = nn.GELU, kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        hidden_features = hidden_features or int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden_features, bias=bias, device=device, dtype=dtype)
        self.act = build(act_layer)
        self.fc2 = nn.Linear(hidden_features, dim, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def flop_count(self, tokens: int) -> int:
        return 2 * tokens * (self.fc1.in_features * self.fc1.out_features + self.fc2.in_features * self.fc2.out_features)


class SwiGLU(nn.Module):
    """The gated FFN ``w3(act(x W1) * (x W2))``; ``w12`` holds W1 (gate) and W2 stacked so one
    matmul computes both. With the default SiLU this is SwiGLU; ``act_layer=nn.GELU`` makes it GeGLU.

    As in DINOv3, the hidden width is ``2/3 * ratio * dim`` rounded up to a multiple of ``align_to``,
    so the parameter count matches an MLP of the same ratio.

    Args:
        dim: width D (injected by the block).
        ratio: sets the hidden width as above, when ``hidden_features`` is not given.
        hidden_features: the hidden width H of each of the two branches.
        align_to: rounding of the hidden width computed from ``ratio``.
        bias: biases of both projections.
        act_layer: factory (or config) of the gate's activation module (default ``nn.SiLU``). SiLU runs
            the fused kernel :func:`vitlab.kernels.swiglu`, which computes it (the module's own
            forward, and its hooks, do not run); any other activation runs in torch.
        kernels: ``auto | triton | torch`` for that kernel (None: :func:`vitlab.kernels.resolve_kernels`).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("act_layer",)

    def __init__(self, dim: int, *, ratio: float = 4.0, hidden_features: int | None = None, align_to: int = 8,
                 bias: bool = True, act_layer: ModuleFactory = nn.SiLU, kernels: Backend | None = None,
                 device=None, dtype=None):
        super().__init__()
        if hidden_features is None:
            hidden_features = int(int(dim * ratio) * 2 / 3)
            hidden_features = (hidden_features + align_to - 1) // align_to * align_to
        self.hidden_features = hidden_features
        self.w12 = nn.Linear(dim, 2 * hidden_features, bias=bias, device=device, dtype=dtype)
        self.act = build(act_layer)
        self.w3 = nn.Linear(hidden_features, dim, bias=bias, device=device, dtype=dtype)
        self.kernels = resolve_kernels(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)  # gate, value: each [..., H]
        return self.w3(self.gate(a, b))

    def gate(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``act(a) * b`` [..., H]: fused for SiLU, the only activation the kernel implements."""
        if type(self.act) is nn.SiLU:  # not isinstance: a subclass may compute something else
            return swiglu(a, b, backend=self.kernels)
        # in float32 like the kernel's torch reference, so the activation never changes the precision
        return (self.act(a.float()) * b.float()).to(a.dtype)

    def flop_count(self, tokens: int) -> int:
        return 2 * tokens * (self.w12.in_features * self.w12.out_features + self.w3.in_features * self.w3.out_features)
