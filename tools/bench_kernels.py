"""Benchmark vitlab's Triton kernels against eager torch and ``torch.compile`` at ViT sizes.

For each kernel at ViT-S/B/L shapes (batch 64, T = 197 and 261 tokens, D = 384/768/1024,
6/12/16 heads of 64; K = 65536 prototypes for the DINO loss kernels) it reports:

- median forward and forward+backward time (``triton.testing.do_bench``) of the Triton kernel,
  the eager torch reference, and ``torch.compile`` of that same reference;
- achieved bandwidth of the kernel, from the bytes it must move at least (each input read once,
  each output written once);
- speedups of the kernel over eager and over compiled;
- peak extra memory of the DINO loss kernels (Sinkhorn-Knopp forward; cross-entropy forward and
  backward) at K = 65536.

It prints Markdown tables and writes them to ``benchmarks/kernels.md``.

Usage:
    python tools/bench_kernels.py [--dtype bf16|fp16|fp32] [--batch 64] [--only rope,norm]
                                  [--no-compile] [--out benchmarks/kernels.md]

Needs a CUDA GPU and triton: without them it says why on stderr and exits with status 2,
measuring and writing nothing.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a script from anywhere; vitlab is imported lazily below
    sys.path.insert(0, str(REPO))

EXIT_NO_CUDA = 2
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
MODELS = [("ViT-S", 384, 6), ("ViT-B", 768, 12), ("ViT-L", 1024, 16)]  # (name, width D, heads)
TOKENS = [197, 261]  # 14x14 patches + CLS; 16x16 patches + CLS + 4 registers (DINOv3)
PROTOTYPES = 65536  # DINOv3's DINO/iBOT head width
IMPLS = ("triton", "eager", "compile")
KERNELS = ("rope", "norm", "residual", "swiglu", "hyena", "sinkhorn", "cross_entropy")


@dataclass
class Case:
    """One kernel at one shape: a forward callable per implementation and the bytes it moves."""

    kernel: str
    shape: str
    fwd: dict[str, Callable[[], object]]
    grad_inputs: list[torch.Tensor]  # leaves the backward differentiates; empty: forward only
    bytes_fwd: int
    bytes_fwd_bwd: int = 0
    measure_memory: bool = False
    results: dict[str, float] = field(default_factory=dict)


@dataclass
class Setup:
    device: str
    dtype: torch.dtype
    batch: int
    prototypes: int
    compile: bool

    def leaf(self, *shape, dtype=None, requires_grad=True, scale=1.0):
        x = torch.randn(shape, device=self.device) * scale
        return x.to(dtype or self.dtype).requires_grad_(requires_grad)

    @property
    def itemsize(self) -> int:
        return torch.tensor([], dtype=self.dtype).element_size()

    def impls(self, triton_fn, reference, args) -> dict[str, Callable[[], object]]:
        fns = {"triton": triton_fn, "eager": lambda: reference(*args)}
        if self.compile:
            compiled = torch.compile(reference, dynamic=False)
            fns["compile"] = lambda: compiled(*args)
        return fns


def rope_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.rope import rope_2d_reference

    for model, D, H in MODELS:
        for T in TOKENS:
            hd, N = D // H, math.isqrt(T - 1) ** 2  # vitlab's layout: patches first, then CLS/registers
            qkv = s.leaf(s.batch, T, 3, H, hd)
            q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            angles = torch.randn(N, hd // 2, device=s.device).tile(2)
            cos, sin = angles.cos(), angles.sin()
            n = s.batch * H * T * hd * s.itemsize

            def tri(q=q, k=k, cos=cos, sin=sin):
                return K.rope_2d(q, k, cos, sin, 0, backend="triton")

            yield Case("rope_2d", f"{model} B={s.batch} T={T} H={H} d={hd}",
                       s.impls(tri, rope_2d_reference, (q, k, cos, sin, 0)), [qkv], 4 * n, 8 * n)


def norm_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.norm import layer_norm_reference, rms_norm_reference

    for model, D, _ in MODELS:
        for T in TOKENS:
            n = s.batch * T * D * s.itemsize
            for name, fn, ref in (("layer_norm", K.layer_norm, layer_norm_reference),
                                  ("rms_norm", K.rms_norm, rms_norm_reference)):
                x, r = s.leaf(s.batch, T, D), s.leaf(s.batch, T, D)
                w, b = s.leaf(D, dtype=torch.float32), s.leaf(D, dtype=torch.float32)
                args = (x, w, b, 1e-6, r) if name == "layer_norm" else (x, w, 1e-6, r)
                leaves = [x, r, w, b] if name == "layer_norm" else [x, r, w]

                def tri(fn=fn, args=args):
                    return fn(*args[:-1], residual=args[-1], backend="triton")

                yield Case(f"{name} +residual", f"{model} B={s.batch} T={T} D={D}", s.impls(tri, ref, args),
                           leaves, 4 * n, 8 * n)


def residual_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.residual import drop_path_scale, residual_scale_drop_reference

    def eager(x, y, gamma):  # the same work as the kernel path: draw the mask, then update
        return residual_scale_drop_reference(x, y, gamma, drop_path_scale(x.shape[0], 0.1, True, x.device))

    for model, D, _ in MODELS:
        for T in TOKENS:
            x, y, gamma = s.leaf(s.batch, T, D), s.leaf(s.batch, T, D), s.leaf(D)
            n = s.batch * T * D * s.itemsize

            def tri(x=x, y=y, gamma=gamma):
                return K.residual_scale_drop(x, y, gamma, 0.1, True, backend="triton")

            yield Case("residual_scale_drop p=0.1", f"{model} B={s.batch} T={T} D={D}",
                       s.impls(tri, eager, (x, y, gamma)), [x, y, gamma], 3 * n, 6 * n)


def swiglu_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.glu import swiglu_reference

    for model, D, _ in MODELS:
        hidden = (int(int(4 * D) * 2 / 3) + 7) // 8 * 8  # vitlab.layers.SwiGLU's width (DINOv3)
        for T in TOKENS:
            w12 = s.leaf(s.batch, T, 2 * hidden)
            a, b = w12.chunk(2, dim=-1)
            n = s.batch * T * hidden * s.itemsize

            def tri(a=a, b=b):
                return K.swiglu(a, b, backend="triton")

            yield Case("swiglu", f"{model} B={s.batch} T={T} hidden={hidden}",
                       s.impls(tri, swiglu_reference, (a, b)), [w12], 3 * n, 8 * n)


def hyena_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.hyena import hyena_gate_reference

    for model, D, _ in MODELS:
        for T in TOKENS:
            side = math.isqrt(T - 1)
            y, v, gate = (s.leaf(s.batch, D, side, side) for _ in range(3))
            skip = s.leaf(D, dtype=torch.float32)
            n = s.batch * D * side * side * s.itemsize

            def tri(y=y, v=v, gate=gate, skip=skip):
                return K.hyena_gate(y, v, gate, skip, backend="triton")

            yield Case("hyena_gate", f"{model} B={s.batch} C={D} {side}x{side}",
                       s.impls(tri, hyena_gate_reference, (y, v, gate, skip)), [y, v, gate, skip],
                       4 * n, 11 * n)


def sinkhorn_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.sinkhorn import sinkhorn_knopp_reference

    for rows in (2 * s.batch, 10 * s.batch):  # teacher: 2 global crops per image; iBOT-like row counts
        logits = s.leaf(rows, s.prototypes, requires_grad=False, scale=10.0)
        n = rows * s.prototypes

        def tri(logits=logits):
            return K.sinkhorn_knopp(logits, 0.04, 3, backend="triton")

        # 3 iterations read the logits twice each, the output pass once more and writes fp32
        yield Case("sinkhorn_knopp n=3", f"B={rows} K={s.prototypes}",
                   s.impls(tri, sinkhorn_knopp_reference, (logits, 0.04, 3)), [],
                   7 * n * s.itemsize + 4 * n, measure_memory=True)


def cross_entropy_cases(s: Setup):
    import vitlab.kernels as K
    from vitlab.kernels.cross_entropy import softmax_cross_entropy_reference

    for rows in (2 * s.batch, 10 * s.batch):  # student rows against one teacher crop: 2 global, 10 all crops
        logits = s.leaf(rows, s.prototypes, scale=10.0)
        probs = torch.softmax(torch.randn(rows, s.prototypes, device=s.device), dim=-1)
        n = rows * s.prototypes

        def tri(logits=logits, probs=probs):
            return K.softmax_cross_entropy(logits, probs, 0.1, backend="triton")

        fwd = n * (s.itemsize + 4)  # read logits and fp32 targets
        yield Case("softmax_cross_entropy", f"B={rows} K={s.prototypes}",
                   s.impls(tri, softmax_cross_entropy_reference, (logits, probs, 0.1)), [logits],
                   fwd, 2 * fwd + n * s.itemsize, measure_memory=True)


BUILDERS = {"rope": rope_cases, "norm": norm_cases, "residual": residual_cases, "swiglu": swiglu_cases,
            "hyena": hyena_cases, "sinkhorn": sinkhorn_cases, "cross_entropy": cross_entropy_cases}


def build_cases(setup: Setup, only: set[str] | None = None) -> list[Case]:
    return [case for name in KERNELS if only is None or name in only for case in BUILDERS[name](setup)]


def _outputs(out):
    return out if isinstance(out, tuple) else (out,)


def _fwd_bwd(fn, inputs):
    """Forward then backward with fixed upstream gradients (autograd.grad: no .grad accumulation)."""
    grads = [torch.randn_like(o) for o in _outputs(fn())]

    def step():
        torch.autograd.grad(_outputs(fn()), inputs, grads)

    return step


def _peak_mib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run_case(case: Case, bench: Callable[[Callable[[], object]], float]) -> None:
    """Fill ``case.results`` with ``{impl}_fwd`` and ``{impl}_fb`` in ms, ``{impl}_mem`` in MiB."""
    for impl, fn in case.fwd.items():
        try:
            fn()  # torch.compile compiles here, outside the timing
            case.results[f"{impl}_fwd"] = bench(fn)
            step = None
            if case.grad_inputs:
                step = _fwd_bwd(fn, case.grad_inputs)
                step()
                case.results[f"{impl}_fb"] = bench(step)
            if case.measure_memory and torch.cuda.is_available():
                case.results[f"{impl}_mem"] = _peak_mib(step or fn)
        except Exception as err:  # noqa: BLE001 - one failing implementation must not sink the table
            print(f"  {case.kernel} [{case.shape}] {impl}: {type(err).__name__}: {err}", file=sys.stderr)


def _ms(v):
    return "n/a" if v is None else f"{v:.3f}"


def _ratio(kernel_ms, other_ms):
    return f"{other_ms / kernel_ms:.2f}x" if kernel_ms and other_ms else "n/a"


def _gbps(nbytes, ms):
    return f"{nbytes / ms / 1e6:.0f}" if ms else "n/a"


def render(cases: list[Case], header: str) -> str:
    lines = [header, ""]
    sections = (("Forward", "fwd", "bytes_fwd"), ("Forward + backward", "fb", "bytes_fwd_bwd"))
    for title, key, nbytes in sections:
        lines += [f"## {title}", "",
                  ("| kernel | shape | triton ms | eager ms | compile ms | triton GB/s "
                   "| vs eager | vs compile |"),
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in cases:
            r = {impl: c.results.get(f"{impl}_{key}") for impl in IMPLS}
            if all(v is None for v in r.values()):
                continue
            lines.append(
                f"| {c.kernel} | {c.shape} | {_ms(r['triton'])} | {_ms(r['eager'])} | {_ms(r['compile'])} | "
                f"{_gbps(getattr(c, nbytes), r['triton'])} | {_ratio(r['triton'], r['eager'])} | "
                f"{_ratio(r['triton'], r['compile'])} |"
            )
        lines.append("")
    mem = [c for c in cases if c.measure_memory]
    if mem:
        lines += ["## Peak extra memory (MiB) of the DINO loss kernels", "",
                  "| kernel | shape | measured over | triton | eager | compile |",
                  "|---|---|---|---:|---:|---:|"]
        for c in mem:
            vals = [c.results.get(f"{impl}_mem") for impl in IMPLS]
            cells = " | ".join("n/a" if v is None else f"{v:.0f}" for v in vals)
            over = "forward + backward" if c.grad_inputs else "forward"
            lines.append(f"| {c.kernel} | {c.shape} | {over} | {cells} |")
        lines.append("")
    lines += ["Speedups are eager (or compiled) time over Triton time: above 1x the kernel is faster.",
              "GB/s: the bytes the fused kernel must move at least, over its time.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(KERNELS)}")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "kernels.md"))
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if only and not only <= set(KERNELS):
        parser.error(f"--only: unknown {sorted(only - set(KERNELS))}; choose from {','.join(KERNELS)}")

    if not torch.cuda.is_available():
        print("bench_kernels: needs a CUDA GPU (torch.cuda.is_available() is False); nothing measured.",
              file=sys.stderr)
        return EXIT_NO_CUDA
    from vitlab.kernels import triton_available

    if not triton_available():
        print("bench_kernels: triton is not importable; nothing measured.", file=sys.stderr)
        return EXIT_NO_CUDA
    from triton.testing import do_bench

    def bench(fn):
        return do_bench(fn, return_mode="median")

    torch.manual_seed(0)
    setup = Setup("cuda", DTYPES[args.dtype], args.batch, PROTOTYPES, compile=not args.no_compile)
    cases = build_cases(setup, only)
    start = time.time()
    for i, case in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {case.kernel} {case.shape}", file=sys.stderr)
        run_case(case, bench)
    header = (f"# vitlab kernel benchmarks\n\n{torch.cuda.get_device_name()}, {args.dtype}, "
              f"torch {torch.__version__}; median of `triton.testing.do_bench`. "
              f"Generated by `python tools/bench_kernels.py` in {time.time() - start:.0f} s.")
    table = render(cases, header)
    print(table)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
