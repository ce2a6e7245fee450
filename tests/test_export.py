"""``torch.export`` with a dynamic batch, and ONNX checked in onnxruntime, of every block type with registers
and padding; the kernel backend and Hyena algorithm the export fixes, and restores."""

import pytest
import torch

from tests.models.helpers import perturbed as build
from vitlab.export import export_onnx, export_program
from vitlab.kernels import torch_references


def targets(program) -> set[str]:
    return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


def assert_matches_eager(run, model, batch_sizes=(1, 2, 5)):
    """``run`` gives the eager outputs at several batch sizes: the batch is dynamic."""
    for b in batch_sizes:
        x = torch.randn(b, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(run(x), model(x), rtol=0, atol=1e-5)


def assert_onnx_matches_eager(program, model, path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    session = ort.InferenceSession(str(export_onnx(program, path)), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert_matches_eager(lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0]), model, (1, 3))


@pytest.mark.parametrize("pattern", ["A", "R"])
def test_attention_exports(tmp_path, pattern):
    model = build(pattern)
    program = export_program(model, torch.randn(2, 3, 16, 16))
    (batch,) = program.range_constraints.values()  # one symbol: the batch, from 1 up
    assert batch.lower == 1 and batch.upper > 2**20
    assert not [t for t in targets(program) if t.startswith("vitlab.")]  # the torch references: plain aten
    assert_matches_eager(program.module(), model)
    if pattern == "R":  # a RoPE-attention network in ONNX
        assert_onnx_matches_eager(program, model, tmp_path / "r.onnx")


@pytest.mark.parametrize("long_conv", ["direct", "fft"])
def test_hybrid_exports_with_either_long_convolution(tmp_path, long_conv):
    model = build("HR", kernels="triton").train()  # on CPU only a setting: the export takes the references
    program = export_program(model, torch.randn(2, 3, 16, 16), long_conv=long_conv)
    if long_conv == "direct":
        assert "aten.bmm.default" in targets(program) and not [t for t in targets(program) if "fft" in t]
    else:
        assert {"aten.fft_rfft2.default", "aten.fft_irfft2.default"} <= targets(program)
        assert "aten.bmm.default" not in targets(program)
    # the network is as it was
    assert model.training and model.kernels == "triton" and model.blocks[0].mixer.kernels == "triton"
    assert model.blocks[0].mixer.long_conv == "auto"
    with torch_references():  # eager on CPU without Triton's interpreter
        assert_matches_eager(program.module(), model.eval())  # 16 patches + CLS + 2 registers + 1 padding token
        assert_onnx_matches_eager(program, model, tmp_path / "hr.onnx")


def test_a_hybrid_from_an_example_of_one_image():
    model = build("HG")  # Hyena 2D, RoPE attention with QK-norm, SwiGLU and LayerScale
    # Hyena's "auto" picks the FFT for one 20-token grid: the program runs it at every batch size
    program = export_program(model, torch.randn(1, 3, 16, 16))
    assert "aten.fft_rfft2.default" in targets(program)
    assert_matches_eager(program.module(), model, (1, 3))


def test_set_kernels_is_gone_and_says_what_replaced_it():
    with pytest.raises(AttributeError, match="build the network with kernels='torch'"):
        build("A").set_kernels("torch")


def test_kernels_keep_exports_the_triton_custom_ops(tmp_path, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the kernels run on CPU under Triton's interpreter
    monkeypatch.delenv("VITLAB_KERNELS", raising=False)
    model = build("R", kernels="triton")
    program = export_program(model, torch.randn(2, 3, 16, 16), kernels="keep")
    assert {"vitlab.rope_2d.default", "vitlab.add_norm.default"} <= targets(program)
    with pytest.raises(ValueError, match="Triton kernel nodes .*vitlab.rope_2d"):
        export_onnx(program, tmp_path / "r.onnx")
    with torch_references():
        assert_matches_eager(program.module(), model, (1, 3))
