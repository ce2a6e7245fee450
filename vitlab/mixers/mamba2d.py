"""A selective state-space (Mamba) token mixer over the 2D token layout.

Mamba (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces") mixes a
sequence with a linear recurrence whose step size and input/output projections depend on the token
(:func:`~vitlab.mixers.selective_scan.selective_scan`). Images have no single order, so vision variants
scan several: ``scan="bidirectional"`` is Vision Mamba's (Zhu et al. 2024, "Vision Mamba: Efficient
Visual Representation Learning with Bidirectional State Space Model"): the row-major sequence forward
and backward; ``scan="cross"`` is VMamba's SS2D (Liu et al. 2024, "VMamba: Visual State Space Model"):
row-major and column-major, each both ways (:mod:`vitlab.mixers.scan_order`). As in VMamba, each
direction has its own ``x_proj``, ``dt_proj``, ``A`` and ``D``; the input projection, the depthwise
convolution and the output projection are shared.

    x, z = in_proj(tokens)
    x = silu(depthwise kxk conv of x over the patch grid)    (CLS and registers skip the convolution)
    for each direction k:  y_k = selective_scan(x read in order k)   (its own delta, B, C from x_proj_k)
    y = mean_k y_k (back in layout order);  out = out_proj(y * silu(z))

Non-patch tokens: every direction scans the patches, then CLS and registers (:mod:`vitlab.mixers.scan_order`):
forward, they read every patch; backward, every patch reads them. Vim's middle class token, which
does the same for half the patches in each direction, is not offered. Padding tokens (a block padded by
``padding_types``) are neither scanned nor written: their outputs are zero and they cost nothing.

Deviations: Vim uses a causal 1D convolution of width 4 per direction, which along the row-major
sequence mixes the end of one row into the start of the next; here both scans share VMamba's 2D depthwise
convolution. VMamba sums its directions and applies a LayerNorm before the gate; here they are averaged.

FLOPs: projections and convolution as everywhere (2 per multiply-add); the scan by
:func:`~vitlab.mixers.selective_scan.selective_scan_flop_count` (a recurrence counts its multiply-adds).

Axis legend: B batch, T tokens (no padding), D width, E = expand * D inner width, K directions,
N state size, R dt rank, P = h*w patches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitlab.kernels import resolve_kernels
from vitlab.kernels.dispatch import Backend
from vitlab.layers.token_layout import TokenLayout
from vitlab.mixers.scan_order import SCAN_DIRECTIONS, ScanMixer, conv_patches, merge_sequences, scan_sequences
from vitlab.mixers.selective_scan import selective_scan, selective_scan_flop_count

__all__ = ["Mamba2D"]


class Mamba2D(ScanMixer):
    """Token mixer ``[B, T, D] -> [B, T, D]``: Mamba's selective scan in ``K`` directions over the patch grid.

    Args:
        dim: model width D (injected by the block).
        scan: ``"bidirectional"`` (Vim, K = 2) or ``"cross"`` (VMamba, K = 4).
        d_state: state size N per channel (16 in Mamba, Vim and VMamba v0).
        expand: inner width ``E = expand * dim`` (2 in all three).
        dt_rank: rank of the step-size projection; None: ``ceil(dim / 16)`` (Mamba's "auto").
        conv_kernel: size of the depthwise convolution over the patch grid (odd; VMamba: 3).
        bias: biases of the input and output projections (Mamba: none).
        conv_bias: bias of the depthwise convolution.
        dt_min, dt_max: range of the initial step sizes (Mamba: 0.001 to 0.1, log-uniform).
        chunk_size: steps per chunk of the parallel scan; None: :func:`~vitlab.mixers.selective_scan.selective_scan`'s
            default (CPU: one chunk, streamed step by step; GPU: ``ceil(sqrt(T))``).
        kernels: ``torch`` always runs the pure-PyTorch scan; ``auto`` or ``triton``: mamba_ssm's CUDA kernel where
            it imports (injected by the block; None: :func:`vitlab.kernels.resolve_kernels`).
    """


    def __init__(self, dim: int, *, scan: str = "bidirectional", d_state: int = 16, expand: float = 2.0,
                 dt_rank: int | None = None, conv_kernel: int = 3, bias: bool = False, conv_bias: bool = True,
                 dt_min: float = 0.001, dt_max: float = 0.1, chunk_size: int | None = None,
                 kernels: Backend | None = None, device=None, dtype=None):
        super().__init__()
        if scan not in SCAN_DIRECTIONS:
            raise ValueError(f"Mamba2D scan must be one of {tuple(SCAN_DIRECTIONS)}, got {scan!r}")
        if d_state < 1:
            raise ValueError(f"Mamba2D d_state must be >= 1, got {d_state}")
        if conv_kernel < 1 or conv_kernel % 2 != 1:
            raise ValueError(f"Mamba2D conv_kernel must be odd and positive, got {conv_kernel}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba2D needs 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"Mamba2D chunk_size must be >= 1 or None, got {chunk_size}")
        inner = int(expand * dim)
        if inner < 1:
            raise ValueError(f"Mamba2D expand * dim must be >= 1, got expand={expand}, dim={dim}")
        rank = math.ceil(dim / 16) if dt_rank is None else dt_rank
        if rank < 1:
            raise ValueError(f"Mamba2D dt_rank must be >= 1 or None, got {dt_rank}")
        dd = dict(device=device, dtype=dtype)
        K = SCAN_DIRECTIONS[scan]
        self.dim, self.scan, self.d_state, self.inner, self.dt_rank = dim, scan, d_state, inner, rank
        self.directions, self.chunk_size, self.dt_range = K, chunk_size, (dt_min, dt_max)
        self.in_proj = nn.Linear(dim, 2 * inner, bias=bias, **dd)
        self.conv = nn.Conv2d(inner, inner, conv_kernel, padding=conv_kernel // 2, groups=inner, bias=conv_bias, **dd)
        # per direction, stacked (VMamba's x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
        self.x_proj_weight = nn.Parameter(torch.empty(K, rank + 2 * d_state, inner, **dd))  # -> delta, B, C
        self.dt_proj_weight = nn.Parameter(torch.empty(K, inner, rank, **dd))
        self.dt_proj_bias = nn.Parameter(torch.empty(K, inner, **dd))
        self.A_log = nn.Parameter(torch.empty(K, inner, d_state, **dd))
        self.D = nn.Parameter(torch.empty(K, inner, **dd))
        self.out_proj = nn.Linear(inner, dim, bias=bias, **dd)
        self.kernels = resolve_kernels(kernels)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Mamba's initialization of the state-space parameters (the network re-initializes its Linears)."""
        nn.init.uniform_(self.x_proj_weight, -self.inner**-0.5, self.inner**-0.5)  # nn.Linear's default
        nn.init.uniform_(self.dt_proj_weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        # step sizes log-uniform in [dt_min, dt_max]; the bias is softplus^-1 of them
        lo, hi = math.log(self.dt_range[0]), math.log(self.dt_range[1])
        dt = torch.exp(torch.rand_like(self.dt_proj_bias) * (hi - lo) + lo).clamp(min=1e-4)
        self.dt_proj_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., N) for every channel
        n = torch.arange(1, self.d_state + 1, device=self.A_log.device, dtype=self.A_log.dtype)
        self.A_log.copy_(n.log().expand_as(self.A_log))
        self.D.fill_(1.0)

    @property
    def pattern_letter(self) -> str:
        """``S`` (Vim's bidirectional scan) or ``V`` (VMamba's cross scan): its block letters in docs/models.md."""
        return "S" if self.scan == "bidirectional" else "V"

    def forward(self, x: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
        B, T_in, _ = x.shape
        T = layout.num_tokens
        xz = self.in_proj(self._real_tokens(x, layout))
        u, z = xz.chunk(2, dim=-1)  # [B, T, E] each
        u = F.silu(conv_patches(u, layout, self.conv))
        K, E, N, R = self.directions, self.inner, self.d_state, self.dt_rank
        u = scan_sequences(u, layout, self.scan).transpose(2, 3)  # [B, K, E, T]
        dbc = torch.einsum("bket,kce->bkct", u, self.x_proj_weight)  # [B, K, R + 2N, T]
        dt, Bs, Cs = dbc.split((R, N, N), dim=2)
        dt = torch.einsum("bkrt,ker->bket", dt, self.dt_proj_weight)  # [B, K, E, T]
        delta = F.softplus(dt + self.dt_proj_bias.unsqueeze(-1).to(dt.dtype))
        A = -self.A_log.float().exp()  # [K, E, N], negative: every step decays the state
        backend = "torch" if self.kernels == "torch" else "auto"
        y = selective_scan(u.flatten(1, 2), delta.flatten(1, 2), A.flatten(0, 1), Bs, Cs, self.D.flatten(),
                           chunk_size=self.chunk_size, backend=backend)  # [B, K*E, T]
        y = merge_sequences(y.view(B, K, E, T).transpose(2, 3), layout, self.scan)  # [B, T, E]
        return self._pad_back(self.out_proj(y * F.silu(z)), T_in)

    def _flops(self, layout: TokenLayout) -> tuple[int, tuple[int, int]]:
        """Per image: forward FLOPs of projections and convolution, and ``(forward, backward)`` of the scans
        (backward: 2x the readout, 1x the recurrence)."""
        D, E, K, N, R, T = self.dim, self.inner, self.directions, self.d_state, self.dt_rank, layout.num_tokens
        k = self.conv.kernel_size[0]
        matmul = 2 * T * D * 2 * E + 2 * layout.num_patches * E * k * k + 2 * T * E * D  # in, conv, out
        matmul += 2 * K * T * E * (R + 2 * N) + 2 * K * T * R * E  # x_proj, dt_proj per direction
        return matmul, selective_scan_flop_count(1, K * E, T, N)
