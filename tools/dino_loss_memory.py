"""Peak memory of the DINO loss, kernels vs eager torch (issue 12: the kernel path must need at most
half of eager torch's memory at K = 65,536 prototypes and a batch of 1,024 rows).

What runs, for each backend, from freshly allocated teacher and student logits ([T, B, K] each,
T = 2 global crops, T * B = rows): Sinkhorn-Knopp on the teacher, the DINO loss forward and its
backward. The peak is CUDA's ``max_memory_allocated`` above the memory held before the step
(the logits themselves), so it counts what the loss adds. ``eager`` is ``kernels="torch"`` (what
``"auto"`` runs off CUDA); ``pre_kernel`` is the loss as it was before the kernels
(``log_softmax`` over all crops + einsum), for reference.

    python tools/dino_loss_memory.py --out benchmarks/dino_loss_memory.json         # CUDA
    python tools/dino_loss_memory.py --tiny --out /tmp/m.json                       # CPU smoke run

On CPU only ``--tiny`` runs (Triton under its interpreter, no memory numbers): it checks that the
paths agree, so the script stays tested without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch


def _pre_kernel_loss(student, teacher, student_temp):
    n_s, batch, _ = student.shape
    n_t = teacher.shape[0]
    log_p = torch.log_softmax(student.float() / student_temp, dim=-1)  # [S, B, K]
    pair = -torch.einsum("sbk,tbk->st", log_p, teacher.float()) * (1 - torch.eye(n_s, n_t, device=student.device))
    return pair.sum() / ((n_s * n_t - min(n_s, n_t)) * batch)


def _step(name, student_logits, teacher_logits, k):
    from vitlab.ssl import DINOLoss

    backend = {"kernel": "triton", "eager": "torch", "pre_kernel": "torch"}[name]
    loss_fn = DINOLoss(k, kernels=backend)
    student = student_logits.clone().requires_grad_(True)
    probs = loss_fn.teacher_probs(teacher_logits, 0.04)
    loss = _pre_kernel_loss(student, probs, 0.1) if name == "pre_kernel" else loss_fn(student, probs)
    loss.backward()
    return loss.detach().float(), student.grad


def measure(rows: int, k: int, dtype: torch.dtype, device: torch.device) -> dict:
    torch.manual_seed(0)
    crops = 2
    teacher_logits = torch.randn(crops, rows // crops, k, device=device, dtype=dtype) * 3
    student_logits = torch.randn(crops, rows // crops, k, device=device, dtype=dtype) * 3
    cuda = device.type == "cuda"
    result: dict = {}
    for name in ("kernel", "eager", "pre_kernel"):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        loss, grad = _step(name, student_logits, teacher_logits, k)
        if cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        result[name] = {"loss": loss.item(), "peak_bytes": peak if cuda else None, "grad": grad}
    ref = result["eager"]
    agree = all(
        abs(r["loss"] - ref["loss"]) <= 1e-3 * max(1.0, abs(ref["loss"]))
        and torch.allclose(r["grad"].float(), ref["grad"].float(), rtol=2e-2, atol=1e-5)
        for r in result.values()
    )
    out = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "rows": rows, "prototypes": k, "dtype": str(dtype).removeprefix("torch."), "agree": agree,
    }
    for name, r in result.items():
        out[name] = {"loss": r["loss"], "peak_mib": None if r["peak_bytes"] is None else r["peak_bytes"] / 2**20}
    if cuda:
        out["kernel_over_eager"] = result["kernel"]["peak_bytes"] / result["eager"]["peak_bytes"]
        out["kernel_at_most_half_of_eager"] = out["kernel_over_eager"] <= 0.5
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--rows", type=int, default=1024, help="teacher rows = student rows (T * B)")
    parser.add_argument("--prototypes", type=int, default=65536, help="K")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--tiny", action="store_true", help="rows 8, K 300, float32: a smoke run (CPU too)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.rows, args.prototypes, args.dtype = 8, 300, "float32"
    if not torch.cuda.is_available():
        if not args.tiny:
            print("dino_loss_memory: no CUDA device; the memory check needs one (GPU memory is what it "
                  "measures). Run with --tiny for a CPU smoke run of the same code.", file=sys.stderr)
            return 2
        device = torch.device("cpu")
    else:
        device = torch.device("cuda")
    report = measure(args.rows, args.prototypes, getattr(torch, args.dtype), device)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    if not torch.cuda.is_available():
        # Triton runs on CPU only under its interpreter, which must be chosen before triton is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    raise SystemExit(main())
