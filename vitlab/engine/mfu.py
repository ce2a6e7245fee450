"""Model FLOP utilisation (MFU, Chowdhery et al. 2022, PaLM appendix B): achieved FLOP/s of the model's
analytic FLOP count (:mod:`vitlab.flops`, the counter the FLOP tests check against
``FlopCounterMode``) over the device's peak.

Peaks are dense (no 2:4 sparsity) tensor-core TFLOP/s from NVIDIA's data sheets; ``fp32`` is the
non-tensor-core rate (torch runs fp32 matmuls without TF32 unless told to). A device missing here
has no MFU unless a peak is given (``vitlab bench --peak-tflops``, ``train.peak_tflops``).
"""

from __future__ import annotations

import statistics

import torch

from vitlab.timing import time_call

__all__ = ["PEAK_TFLOPS", "peak_tflops", "dtype_name", "matmul_gflops", "tflops", "mfu"]

# device-name fragment (as torch.cuda.get_device_name spells it) -> {dtype: dense peak TFLOP/s};
# the first fragment found in the name wins, so the specific ones come first
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},  # SXM
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},  # SXM; H100's compute, more memory
    "GH200": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6},
    "A10G": {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2},
    "L4": {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3},
    "RTX 4090": {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6},
    "V100": {"fp16": 125.0, "fp32": 15.7},
}

_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def dtype_name(dtype: torch.dtype) -> str:
    """``bf16``, ``fp16`` or ``fp32`` (the table's keys)."""
    if dtype not in _NAMES:
        raise ValueError(f"no peak FLOP/s for dtype {dtype}; use bfloat16, float16 or float32")
    return _NAMES[dtype]


def peak_tflops(device: torch.device | str, dtype: torch.dtype, override: float | None = None) -> float | None:
    """Peak dense TFLOP/s of ``device`` in ``dtype``: ``override`` if given, else the table's entry
    for a CUDA device's name; None for a CPU or a device not in the table."""
    if override is not None:
        if override <= 0:
            raise ValueError(f"peak TFLOP/s must be > 0, got {override}")
        return float(override)
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment in name:
            return peaks.get(dtype_name(dtype))
    return None


def matmul_gflops(device: torch.device | str = "cpu", *, size: int = 1024, repeats: int = 20) -> float:
    """This machine's measured fp32 matmul rate (GFLOP/s, median of ``repeats`` ``size``-square products):
    the yardstick printed beside a wall time, since machines of one kind differ by several times."""
    device = torch.device(device)
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    times = [time_call(lambda: a @ b, device) for _ in range(repeats + 2)]
    return 2 * size**3 / statistics.median(times[2:]) / 1e9


def tflops(flops_per_image: float, images_per_s: float) -> float:
    """Achieved TFLOP/s: analytic FLOPs of one image x images per second."""
    return flops_per_image * images_per_s / 1e12


def mfu(achieved_tflops: float, peak: float | None) -> float | None:
    """Fraction of the peak (0..1), or None without a peak."""
    return achieved_tflops / peak if peak else None
