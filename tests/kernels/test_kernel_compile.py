"""Every kernel compiles for a real GPU (sm_90, Hopper) with Triton's bundled compiler and
ptxas, no GPU needed: the interpreter runs kernels as numpy code and does not catch code the
compiler rejects (types of loop-carried values, unsupported constructs).

It runs in a subprocess without ``TRITON_INTERPRET``, since a process whose triton was imported
for the interpreter cannot compile (see conftest.py).
"""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
F32 = "*fp32"

# kernel name: (constexprs, pointers that stay float32 whatever the activation dtype, float scalars)
KERNELS = {
    "rope._rope_kernel": ({"BACKWARD": True, "BLOCK_T": 64, "BLOCK_D": 32}, ("cos_ptr", "sin_ptr"), ()),
    "norm._norm_fwd_kernel": (
        {"IS_RMS": False, "HAS_RESIDUAL": True, "HAS_WEIGHT": True, "HAS_BIAS": True,
         "BLOCK_M": 4, "BLOCK_N": 1024},
        ("w_ptr", "b_ptr", "mean_ptr", "rstd_ptr"), ("eps",)),
    "norm._norm_bwd_kernel": (
        {"IS_RMS": True, "HAS_DS": True, "HAS_WEIGHT": True, "NEED_DW": True, "NEED_DB": False,
         "BLOCK_M": 1, "BLOCK_N": 1024},
        ("w_ptr", "mean_ptr", "rstd_ptr", "dw_part_ptr", "db_part_ptr"), ()),
    "residual._rsd_fwd_kernel": (
        {"HAS_GAMMA": True, "HAS_SCALE": True, "BLOCK_M": 4, "BLOCK_N": 1024}, ("scale_ptr",), ()),
    "residual._rsd_bwd_kernel": (
        {"HAS_GAMMA": True, "HAS_SCALE": True, "NEED_DGAMMA": True, "BLOCK_M": 2, "BLOCK_N": 1024},
        ("scale_ptr", "dgamma_part_ptr"), ()),
    "glu._swiglu_fwd_kernel": ({"BLOCK_M": 4, "BLOCK_N": 1024}, (), ()),
    "glu._swiglu_bwd_kernel": ({"BLOCK_M": 4, "BLOCK_N": 1024}, (), ()),
    # y: the float32 irfft2 output; the backward reads the kept bf16 copy and writes dy for float32 y
    "hyena._hyena_gate_fwd_kernel": ({"BLOCK_M": 8, "BLOCK_N": 256, "KEEP_Y": True}, ("y_ptr", "skip_ptr"), ()),
    "hyena._hyena_gate_bwd_kernel": (
        {"BLOCK_M": 8, "BLOCK_N": 256, "NEED_DSKIP": True}, ("skip_ptr", "dy_ptr", "dskip_part_ptr"), ()),
    "hyena_input._input_gate_fwd_kernel": ({"BLOCK_M": 8, "BLOCK_N": 256}, ("padded_ptr",), ()),
    "hyena_input._input_gate_bwd_kernel": (
        {"BLOCK_M": 8, "BLOCK_N": 256, "HAS_G0": True, "HAS_GP": True}, ("gp_ptr",), ()),
    "sinkhorn._lse_partial_kernel": (
        {"BLOCK_KEEP": 256, "BLOCK_RED": 16}, ("bias_ptr", "out_ptr", "inv_temp_ptr"), ()),
    "sinkhorn._sinkhorn_probs_kernel": (
        {"BLOCK_M": 4, "BLOCK_N": 1024}, ("u_ptr", "w_ptr", "p_ptr", "inv_temp_ptr"), ()),
    "cross_entropy._ce_fwd_kernel": ({"BLOCK_B": 2, "BLOCK_K": 1024}, ("p_ptr", "part_ptr"), ("inv_temp",)),
    "cross_entropy._ce_combine_kernel": ({"BLOCK_B": 64, "BLOCK_C": 32}, ("part_ptr", "loss_ptr", "lse_ptr",
                                                                          "psum_ptr"), ()),
    "cross_entropy._ce_bwd_kernel": (
        {"NEED_DP": True, "BLOCK_M": 4, "BLOCK_N": 1024},
        ("g_ptr", "p_ptr", "lse_ptr", "psum_ptr", "dp_ptr"), ("inv_temp",)),
}


def compile_all() -> None:
    """Compile every kernel in ``KERNELS`` for sm_90 with bf16 activations (run in the subprocess)."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for name, (constexprs, fp32_ptrs, floats) in KERNELS.items():
        module, kernel = name.split(".")
        lazy = getattr(importlib.import_module(f"vitlab.kernels.{module}"), kernel)
        fn = lazy._jit()  # the JITFunction, tl bound
        signature = {}
        for arg in fn.arg_names:
            if arg in constexprs:
                signature[arg] = "constexpr"
            elif arg.endswith("_ptr"):
                signature[arg] = F32 if arg in fp32_ptrs else "*bf16"
            else:
                signature[arg] = "fp32" if arg in floats else "i32"
        compiled = triton.compile(ASTSource(fn, signature, constexprs=constexprs),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 8})
        assert compiled.asm["cubin"], name
        print("compiled", name)


def test_every_kernel_compiles_for_hopper():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count("compiled ") == len(KERNELS)


if __name__ == "__main__":
    compile_all()
