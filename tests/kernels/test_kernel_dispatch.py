"""Backend resolution, the VITLAB_KERNELS default, and proof that the Triton path really runs."""

import os
import subprocess
import sys

import pytest
import torch

import vitlab.kernels as K
from vitlab.kernels import cross_entropy, dispatch, glu, hyena, hyena_input, norm, residual, rope, sinkhorn
from vitlab.kernels.dispatch import resolve_backend, resolve_kernels


def test_triton_runs_under_the_interpreter_on_cpu():
    x = torch.randn(3)
    assert dispatch.triton_available()
    assert resolve_backend("triton", x) == "triton"


def test_outputs_start_poisoned():
    """The conftest fills torch.empty with NaN, so elements a kernel never writes fail the comparisons."""
    assert torch.empty(5).isnan().all()


def test_auto_and_torch_on_cpu_pick_the_reference():
    x = torch.randn(3)
    assert resolve_backend("auto", x) == "torch"
    assert resolve_backend("torch", x) == "torch"
    assert resolve_backend("auto", x, None) == "torch"


def test_forced_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", torch.randn(3))


def test_unknown_backend_names_the_value():
    with pytest.raises(ValueError, match="'cuda'"):
        resolve_backend("cuda", torch.randn(3))
    with pytest.raises(ValueError, match="'fast'"):
        K.swiglu(torch.randn(2), torch.randn(2), backend="fast")


def test_env_var_sets_the_default_only(monkeypatch):
    """VITLAB_KERNELS is the default of a ``kernels`` left unset, read in one place; a choice made in a
    constructor or a call stands."""
    monkeypatch.setenv("VITLAB_KERNELS", "torch")
    assert resolve_kernels(None) == "torch" and resolve_kernels("triton") == "triton"
    assert resolve_backend("triton", torch.randn(3)) == "triton"
    monkeypatch.setenv("VITLAB_KERNELS", "bogus")
    with pytest.raises(ValueError, match="bogus"):
        resolve_kernels(None)
    monkeypatch.delenv("VITLAB_KERNELS")
    assert resolve_kernels(None) == "auto"
    with pytest.raises(ValueError, match="kernels must be 'auto', 'triton' or 'torch', got 'cuda'"):
        resolve_kernels("cuda")


def test_torch_references_override_every_call_within_the_block():
    x = torch.randn(3)
    with K.torch_references():
        assert resolve_backend("triton", x) == "torch"
    assert resolve_backend("triton", x) == "triton"


def test_forced_triton_rejects_float64():
    with pytest.raises(TypeError, match="float64"):
        resolve_backend("triton", torch.randn(3, dtype=torch.float64))


def _forbid(monkeypatch, module, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"backend='triton' fell back to {name}")

    monkeypatch.setattr(module, name, fail)


def test_triton_path_never_calls_the_references(monkeypatch):
    """Every public function, forced to Triton, must not silently run its torch reference."""
    _forbid(monkeypatch, glu, "swiglu_reference")
    _forbid(monkeypatch, hyena, "hyena_gate_reference")
    _forbid(monkeypatch, hyena_input, "hyena_input_gate_reference")
    _forbid(monkeypatch, norm, "layer_norm_reference")
    _forbid(monkeypatch, norm, "rms_norm_reference")
    _forbid(monkeypatch, residual, "residual_scale_drop_reference")
    _forbid(monkeypatch, rope, "rope_2d_reference")
    _forbid(monkeypatch, sinkhorn, "sinkhorn_knopp_reference")
    _forbid(monkeypatch, cross_entropy, "softmax_cross_entropy_reference")
    x = torch.randn(2, 3, 8)
    K.swiglu(x, x, backend="triton")
    K.hyena_gate(x, x, x, torch.randn(3), backend="triton")
    K.hyena_input_gate(x[None], x[None], backend="triton")
    K.layer_norm(x, None, None, 1e-6, backend="triton")
    K.rms_norm(x, None, 1e-6, residual=x, backend="triton")
    K.residual_scale_drop(x, x, None, 0.5, True, backend="triton")
    q = torch.randn(1, 2, 5, 8)
    K.rope_2d(q, q, torch.randn(4, 8), torch.randn(4, 8), 1, backend="triton")
    p = K.sinkhorn_knopp(torch.randn(4, 16), 0.1, backend="triton")
    K.softmax_cross_entropy(torch.randn(4, 16), p, 0.1, backend="triton")


def test_import_without_triton():
    code = (
        "import sys; sys.modules['triton'] = None; sys.modules['triton.language'] = None\n"
        "import torch, vitlab.kernels as K\n"
        "assert not K.triton_available()\n"
        "x = torch.randn(2, 4)\n"
        "assert K.resolve_backend('auto', x) == 'torch'\n"
        "K.swiglu(x, x)\n"
        "try:\n"
        "    K.swiglu(x, x, backend='triton')\n"
        "except RuntimeError as e:\n"
        "    assert 'not importable' in str(e)\n"
        "else:\n"
        "    raise SystemExit('forced triton without triton did not raise')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(_repo_root()))


def test_interpreter_runs_after_triton_was_imported_for_compiling():
    """In the full suite timm imports triton (compiled mode) long before this directory's conftest
    sets TRITON_INTERPRET=1; every kernel must still run on the interpreter afterwards."""
    code = (
        "import os, torch, triton\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "import vitlab.kernels as K\n"
        "from torch.testing import assert_close\n"
        "x = torch.randn(2, 5, 8, requires_grad=True)\n"
        "q = torch.randn(1, 2, 5, 8, requires_grad=True)\n"
        "t = (torch.randn(4, 8), torch.randn(4, 8))\n"
        "s = torch.randn(4, 40, requires_grad=True)\n"
        "runs = [\n"
        "    lambda b: K.swiglu(x, x, backend=b),\n"
        "    lambda b: K.hyena_gate(x, x, x, torch.ones(5), backend=b),\n"
        "    lambda b: K.hyena_input_gate(x[None], x[None], backend=b)[0],\n"
        "    lambda b: K.layer_norm(x, None, None, 1e-6, residual=x, backend=b)[0],\n"
        "    lambda b: K.rms_norm(x, torch.ones(8), 1e-6, backend=b),\n"
        "    lambda b: K.residual_scale_drop(x, x, torch.ones(8), 0.0, True, backend=b),\n"
        "    lambda b: K.rope_2d(q, q, *t, 1, backend=b)[0],\n"
        "    lambda b: K.sinkhorn_knopp(s.detach(), 0.1, backend=b),\n"
        "    lambda b: K.softmax_cross_entropy(s, torch.softmax(s.detach(), -1), 0.1, backend=b),\n"
        "]\n"
        "for run in runs:\n"
        "    out, ref = run('triton'), run('torch')\n"
        "    assert_close(out, ref, rtol=1e-4, atol=1e-5)\n"
        "    if out.requires_grad:\n"
        "        out.sum().backward()\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(_repo_root()), env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-4000:]


def _repo_root():
    import pathlib

    return pathlib.Path(__file__).resolve().parents[2]
