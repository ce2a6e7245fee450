"""FLOP counting: the per-layer report behind ``vitlab flops`` (:mod:`vitlab.cli.flops`), and the independent
cross-check.

Convention (the same as fvcore, timm's tables and ``torch.utils.flop_counter``): 2 FLOPs per
multiply-add of matrix products, convolutions and attention (``q k^T`` and ``attn v``); each FFT
(real or complex) of N points counts 5 N log2 N; elementwise work (norms, activations, softmax,
gating, residual adds, position-embedding adds) counts 0. A training step is forward + backward:
2x forward for matrix products (input and weight gradients; 1x where the input needs no gradient,
as the images into the patch embedding), 2.5x for fused attention (it recomputes the scores), 1x
for FFTs.

Masked attention (neighborhood attention) counts the attended (query, key) pairs only: a masked-out
pair costs 0, as in a sparse kernel, whatever the dense fallback computes.

The cross-check runs the real model under ``FlopCounterMode``. That counter has no formula for
CPU SDPA (``_scaled_dot_product_flash_attention_for_cpu``) or for FFTs, so they are registered
here: SDPA with torch's own SDPA formulas scaled by the mask's share of attended pairs, FFTs with
the convention above. Its formula for the backward of a grouped (depthwise) convolution ignores
``groups``; a correct one replaces it. Its formulas for ``flex_attention`` count every pair, and
it cannot run that higher-order op at all (torch 2.14): :func:`torch_flop_count` registers a rule
that runs it beneath the counter and counts the block mask's attended pairs.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch._higher_order_ops.flex_attention import flex_attention as flex_attention_hop
from torch._higher_order_ops.flex_attention import flex_attention_backward as flex_attention_backward_hop
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from vitlab._moved import moved

__all__ = ["torch_flop_count", "format_report", "per_image", "CUSTOM_FLOP_FORMULAS"]

aten = torch.ops.aten


def _fft_flops(n: int, batch: int) -> int:
    return int(batch * 5 * n * math.log2(n)) if n > 1 else 0


def _r2c(inp, dim, *args, out_shape=None, **kwargs) -> int:
    n = math.prod(inp[d] for d in dim)
    return _fft_flops(n, math.prod(inp) // n)


def _c2r(inp, dim, *args, out_shape=None, **kwargs) -> int:
    n = math.prod(out_shape[d] for d in dim)
    return _fft_flops(n, math.prod(out_shape) // n)


def _c2c(inp, dim, *args, out_shape=None, **kwargs) -> int:
    n = math.prod(inp[d] for d in dim)
    return _fft_flops(n, math.prod(inp) // n)


def _attended(dense: int, q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor | None) -> int:
    """``dense`` FLOPs of attention over every (query, key) pair, scaled to the pairs ``allowed`` (a mask
    broadcasting to [B, H, Tq, Tk]; None: all of them)."""
    if allowed is None:
        return dense
    B, H, Tq, _ = q.shape
    shape = (B, H, Tq, k.shape[-2])
    return dense // math.prod(shape) * int(torch.broadcast_to(allowed, shape).sum())


def _sdpa_mask(kwargs) -> torch.Tensor | None:
    """Attended pairs of an SDPA ``attn_mask``: True entries of a boolean mask, finite entries of an additive one."""
    mask = kwargs.get("attn_mask")
    if mask is None:
        return None
    return mask if mask.dtype == torch.bool else torch.isfinite(mask)


def _sdpa_cpu(q, k, v, *args, out_val=None, **kwargs) -> int:
    return _attended(sdpa_flop_count(q.shape, k.shape, v.shape), q, k, _sdpa_mask(kwargs))


def _sdpa_cpu_backward(grad_out, q, k, v, *args, out_val=None, **kwargs) -> int:
    return _attended(sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape), q, k, _sdpa_mask(kwargs))


def _flex_mask(q: torch.Tensor, block_mask: tuple, mask_mod_other_buffers: tuple) -> torch.Tensor:
    """The attended pairs of flex_attention's block mask: its ``mask_mod`` evaluated on every index pair."""
    from torch.nn.attention.flex_attention import create_mask

    mask_mod, kv_num_blocks = block_mask[-1], block_mask[2]  # BlockMask.as_tuple(): counts third, mask_mod last
    B, H = kv_num_blocks.shape[:2]  # 1 where the mask broadcasts over batch or heads
    return create_mask(lambda b, h, i, j: mask_mod(b, h, i, j, *mask_mod_other_buffers), B, H, block_mask[0],
                       block_mask[1], device=q.device)


def _flex(q, k, v, score_mod, block_mask, scale, kernel_options, score_mod_other_buffers=(),
          mask_mod_other_buffers=(), *, out_val=None, **kwargs) -> int:
    return _attended(sdpa_flop_count(q.shape, k.shape, v.shape), q, k, _flex_mask(q, block_mask, mask_mod_other_buffers))


def _flex_backward(q, k, v, out, logsumexp, grad_out, grad_logsumexp, fw_graph, joint_graph, block_mask, scale,
                   kernel_options, score_mod_other_buffers=(), mask_mod_other_buffers=(), *, out_val=None, **kwargs) -> int:
    dense = sdpa_backward_flop_count((grad_out if grad_out is not None else out).shape, q.shape, k.shape, v.shape)
    return _attended(dense, q, k, _flex_mask(q, block_mask, mask_mod_other_buffers))


for _raw in (_sdpa_cpu, _sdpa_cpu_backward, _flex, _flex_backward):
    _raw._get_raw = True  # FlopCounterMode hands these the tensors (the mask's values), not shapes


def _conv_backward(grad_out, x, w, bias, stride, padding, dilation, transposed, output_padding, groups,
                   output_mask, *args, out_shape=None, **kwargs) -> int:
    # Every multiply-add of the forward convolution has exactly one counterpart in the input
    # gradient and one in the weight gradient. (torch's own formula drops `groups` and counts a
    # depthwise convolution's backward as a dense one, C times too much.)
    forward = conv_flop_count(x, w, grad_out, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


CUSTOM_FLOP_FORMULAS = {
    aten.convolution_backward: _conv_backward,
    aten._fft_r2c: _r2c,
    aten._fft_c2r: _c2r,
    aten._fft_c2c: _c2c,
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward,
    flex_attention_hop: _flex,
    flex_attention_backward_hop: _flex_backward,
}


def _run_and_count(hop, mode, *args, **kwargs):
    """Run ``hop`` beneath the counter's mode (the dispatcher pops it for the rule), then count it as the
    counter counts an aten op (its private ``_count_flops``: per module, with the registered formula)."""
    out = hop(*args, **kwargs)
    return mode.counter._count_flops(hop, out, args, kwargs)


def _let_counter_run_flex_attention() -> None:
    """Give ``FlopCounterMode`` the rule it lacks (torch 2.14) to run flex_attention's higher-order ops.

    Registered (``py_impl``, as torch registers the ops' rules for its own modes) by the first cross-check,
    not at import: importing vitlab changes nothing in torch."""
    from torch.utils.flop_counter import _FlopCounterMode

    for hop in (flex_attention_hop, flex_attention_backward_hop):
        if _FlopCounterMode not in hop.python_key_table:
            hop.py_impl(_FlopCounterMode)(functools.partial(_run_and_count, hop))


def torch_flop_count(model: torch.nn.Module, image_size: Sequence[int], *, batch_size: int = 1,
                     train: bool = False, in_channels: int | None = None) -> int:
    """FLOPs measured by ``torch.utils.flop_counter.FlopCounterMode`` on a real forward (and backward).

    Args:
        model: a network taking images [B, C, H, W].
        image_size: (H, W).
        train: also run the backward of ``output.sum()``.
    """
    c = in_channels or model.in_channels
    param = next(model.parameters())
    x = torch.randn(batch_size, c, *image_size, device=param.device, dtype=param.dtype)
    _let_counter_run_flex_attention()
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS)
    with torch.set_grad_enabled(train), counter:
        out = model(x)
        if train:
            out.sum().backward()
    return counter.get_total_flops()


def per_image(report: dict) -> dict:
    """A :meth:`HybridViT.flop_report` of a batch as FLOPs per image (per-batch work, such as Hyena's filter,
    shared by the batch's images)."""
    b = report["batch_size"]
    scale = lambda part: {k: (v // b if k in ("flops", "backward_flops") else v) for k, v in part.items()}  # noqa: E731
    return report | {"stem": scale(report["stem"]), "head": scale(report["head"]),
                     "layers": [scale(layer) for layer in report["layers"]]}


def format_report(report: dict, params: int) -> str:
    """The per-layer table ``vitlab flops`` prints."""
    parts = [("stem", "-", report["tokens"], report["stem"]["params"], report["stem"]["flops"])]
    parts += [(str(layer["index"]), layer["type"], layer["tokens"], layer["params"], layer["flops"]) for layer in report["layers"]]
    parts.append(("head", "-", 1, report["head"]["params"], report["head"]["flops"]))
    total = sum(p[4] for p in parts)
    lines = [f"{'layer':>6} {'type':>4} {'tokens':>7} {'params':>12} {'GFLOPs':>10} {'share':>7}"]
    for name, kind, tokens, p, f in parts:
        lines.append(f"{name:>6} {kind:>4} {tokens:>7} {p:>12,} {f / 1e9:>10.4f} {100 * f / max(total, 1):>6.2f}%")
    train = total + sum(p["backward_flops"] for p in [report["stem"], report["head"], *report["layers"]])
    H, W = report["image_size"]
    lines.append(
        f"image {H}x{W}, grid {report['grid'][0]}x{report['grid'][1]}, {report['tokens']} tokens "
        f"+ {report['padding']} padding; params {params:,} ({params / 1e6:.2f} M)"
    )
    per = "per image" + (f" (batch {report['batch_size']})" if report.get("batch_size", 1) > 1 else "")
    lines.append(f"forward {total / 1e9:.4f} GFLOPs {per} ({total / 2e9:.4f} GMACs); "
                 f"training step (fwd+bwd) {train / 1e9:.4f} GFLOPs {per}")
    return "\n".join(lines)


# ``vitlab flops`` itself: :mod:`vitlab.cli.flops`; the equal-FLOPs search: :mod:`vitlab.flops_match`, which
# counts with this module (the names raise an error naming their new place, for one release)
__getattr__ = moved(__name__, {"add_arguments": "vitlab.cli.flops.add_arguments", "run": "vitlab.cli.flops.run",
                               "match_flops": "vitlab.flops_match.match_flops",
                               "FlopsMatch": "vitlab.flops_match.FlopsMatch"})
