"""The DINO and iBOT losses on the kernels (Triton under the interpreter on CPU, and the torch
reference) against the losses as they were before the kernels: values, gradients, teachers.

The ``old_*`` functions are frozen copies of the pre-kernel code (``log_softmax`` + einsum, and
the former ``vitlab/ssl/sinkhorn.py``), so the three former Sinkhorn call sites (that module, the
losses' centering, the kernel) are held to the numbers they gave before.
"""

import pytest
import torch
from torch.testing import assert_close

from vitlab.kernels import sinkhorn_knopp
from vitlab.ssl import DINOLoss, iBOTPatchLoss, masked_patch_weights


def old_sinkhorn(teacher_logits, teacher_temp, n_iterations=3):
    shape = teacher_logits.shape
    scores = teacher_logits.reshape(-1, shape[-1]).float() / teacher_temp  # [M, K]
    for _ in range(n_iterations):
        scores = scores - torch.logsumexp(scores, dim=0, keepdim=True)
        scores = torch.log_softmax(scores, dim=-1)
    return scores.exp().reshape(shape)


def old_dino_loss(student_logits, teacher_probs, student_temp, ignore_diagonal=True):
    n_student, batch, _ = student_logits.shape
    n_teacher = teacher_probs.shape[0]
    log_p = torch.log_softmax(student_logits.float() / student_temp, dim=-1)  # [S, B, K]
    pair_loss = -torch.einsum("sbk,tbk->st", log_p, teacher_probs.float())  # [S, T]
    n_pairs = n_student * n_teacher
    if ignore_diagonal:
        pair_loss = pair_loss * (1 - torch.eye(n_student, n_teacher))
        n_pairs -= min(n_student, n_teacher)
    return pair_loss.sum() / (n_pairs * batch)


def old_ibot_loss(student_logits, teacher_probs, masks, student_temp):
    log_p = torch.log_softmax(student_logits.float() / student_temp, dim=-1)  # [M, K]
    patch_loss = -(teacher_probs.float() * log_p).sum(dim=-1)
    return (patch_loss * masked_patch_weights(masks)).sum() / masks.shape[0]


def _value_and_grad(fn, logits):
    x = logits.clone().requires_grad_(True)
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize(("n_global", "n_local", "ignore_diagonal"), [(2, 3, True), (3, 2, True), (2, 0, False)])
def test_dino_loss_matches_pre_kernel_loss(backend, n_global, n_local, ignore_diagonal):
    k, batch = 200, 5  # K not a power of two: masked tail blocks
    loss_fn = DINOLoss(k, kernels=backend)
    student = torch.randn(n_global + n_local, batch, k) * 3
    teacher = loss_fn.teacher_probs(torch.randn(n_global, batch, k) * 3, 0.05)
    got = _value_and_grad(lambda s: loss_fn(s, teacher, ignore_diagonal=ignore_diagonal), student)
    want = _value_and_grad(lambda s: old_dino_loss(s, teacher, 0.1, ignore_diagonal), student)
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert_close(got[1], want[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_ibot_loss_matches_pre_kernel_loss(backend):
    k = 130
    masks = torch.rand(4, 9) < 0.4
    masks[0, 0] = True
    m = int(masks.sum())
    loss_fn = iBOTPatchLoss(k, kernels=backend)
    student = torch.randn(m, k) * 3
    teacher = loss_fn.teacher_probs(torch.randn(m, k) * 3, 0.05)
    got = _value_and_grad(lambda s: loss_fn(s, teacher, masks), student)
    want = _value_and_grad(lambda s: old_ibot_loss(s, teacher, masks, 0.1), student)
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert_close(got[1], want[1], rtol=1e-4, atol=1e-7)


def test_bf16_student_logits_on_the_kernel():
    k = 96
    student = (torch.randn(4, 3, k) * 3).bfloat16()
    teacher = DINOLoss(k).teacher_probs(torch.randn(2, 3, k), 0.05)
    got = _value_and_grad(lambda s: DINOLoss(k, kernels="triton")(s, teacher), student)
    want = _value_and_grad(lambda s: old_dino_loss(s, teacher, 0.1), student)
    assert got[1].dtype == torch.bfloat16
    assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
    assert_close(got[1].float(), want[1].float(), rtol=2e-2, atol=1e-4)


@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("shape", [(2, 6, 70), (23, 40)])  # DINO [T, B, K], iBOT [M, K]
def test_three_former_sinkhorn_call_sites_give_the_old_numbers(backend, shape):
    logits = torch.randn(*shape) * 4
    old = old_sinkhorn(logits, 0.04)
    assert_close(sinkhorn_knopp(logits, 0.04, backend=backend), old, rtol=1e-4, atol=1e-6)
    for loss_cls in (DINOLoss, iBOTPatchLoss):
        loss_fn = loss_cls(shape[-1], kernels=backend)
        assert_close(loss_fn.teacher_probs(logits, 0.04), old, rtol=1e-4, atol=1e-6)


def test_losses_have_the_same_state_dict_keys():
    assert list(DINOLoss(8, kernels="triton").state_dict()) == []
    assert list(iBOTPatchLoss(8, centering="softmax").state_dict()) == ["center.center"]


def test_dino_loss_memory_tool_tiny(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "tools" / "dino_loss_memory.py"
    spec = importlib.util.spec_from_file_location("dino_loss_memory", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "m.json"
    assert tool.main(["--tiny", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["agree"] and report["prototypes"] == 300
    assert set(report) >= {"kernel", "eager", "pre_kernel"}
    if not torch.cuda.is_available():
        assert tool.main(["--out", str(out)]) == 2  # the real check needs a GPU


def test_losses_on_the_kernels_compile_without_graph_breaks():
    """The DINO and iBOT terms on the Triton kernels (custom ops) under ``torch.compile(fullgraph=True)``:
    eager's values and gradients, and a new teacher temperature (a 0-dim tensor) reuses the graph."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    K, B, M = 64, 4, 10
    dino, ibot = DINOLoss(K, kernels="triton"), iBOTPatchLoss(K, kernels="triton")
    masks = torch.zeros(2 * B, 16, dtype=torch.bool)
    masks.view(-1)[torch.randperm(masks.numel())[:M]] = True
    weights = masked_patch_weights(masks)

    def step(s_logits, t_logits, s_patch, t_patch, temp):
        loss = dino(s_logits, dino.teacher_probs(t_logits, temp))
        return loss + ibot(s_patch, ibot.teacher_probs(t_patch, temp), masks, weights)

    inputs = [torch.randn(4, B, K), torch.randn(2, B, K), torch.randn(M, K), torch.randn(M, K)]
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager", dynamic=False)
    try:
        for i, temp in enumerate((0.04, 0.05, 0.07)):
            ref_leaves = [t.clone().requires_grad_(j in (0, 2)) for j, t in enumerate(inputs)]
            want = step(*ref_leaves, temp)
            want_grads = torch.autograd.grad(want, [ref_leaves[0], ref_leaves[2]])
            leaves = [t.clone().requires_grad_(j in (0, 2)) for j, t in enumerate(inputs)]
            with torch._dynamo.config.patch(error_on_recompile=i > 0):
                got = compiled(*leaves, torch.tensor(temp))
            got_grads = torch.autograd.grad(got, [leaves[0], leaves[2]])
            assert_close(got, want, rtol=1e-5, atol=1e-6)
            for g, w in zip(got_grads, want_grads):
                assert_close(g, w, rtol=1e-5, atol=1e-6)
    finally:
        torch._dynamo.reset()
