import functools
import math

import pytest
import torch

from tests.models.helpers import tiny
from vitlab.config import ConfigInstantiationError, L, instantiate
from vitlab.engine.schedules import Schedule
from vitlab.ssl import DINOHead, MaskingGenerator, MultiCrop, collate_multicrop, sample_ibot_masks, teacher_entropy
from vitlab.tasks.dino import DINOv3Task


def make_task(readout="cls", registers=2, kernels=None, **kw):
    model = tiny("HR", num_classes=0, mask_token=True, num_registers=registers, image_size=16, readout=readout,
                 neck_compression_ratio=4 if readout == "register_concat" else None, kernels=kernels)
    head = L(DINOHead)(out_dim=64, hidden_features=32, bottleneck_dim=16)
    args = dict(dino_head=head, ibot_head=head, teacher_temp=0.04, momentum=0.9)
    args.update(kw)
    task = instantiate(L(DINOv3Task)(**args), model=model)
    task.setup(total_steps=20)
    return task


def make_batch(n_images=8, seed=0, **mask_kw):
    g = torch.Generator().manual_seed(seed)
    crop = MultiCrop(global_crops_size=16, local_crops_size=8, local_crops_number=2, mean=[0.5] * 3, std=[0.5] * 3,
                     blur_kernel_size=3)
    torch.manual_seed(seed)
    images = [torch.rand(3, 24, 24, generator=g) for _ in range(n_images)]
    masker = functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((4, 4)), generator=g,
                               **mask_kw)
    return collate_multicrop([crop(im) for im in images], masker=masker)


def run_steps(task, steps, batch=None, lr=3e-3, first_step=0):
    params = [p for m in task.trainable_modules().values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    history = []
    for step in range(first_step, first_step + steps):
        task.before_step(step)
        loss, metrics = task(batch if batch is not None else make_batch(seed=step))  # forward: the step
        opt.zero_grad()
        loss.backward()
        task.before_optimizer_step(step)
        opt.step()
        task.after_optimizer_step(step)
        history.append({k: float(v) for k, v in metrics.items()} | {"loss": loss.item()})
    return history


@pytest.mark.parametrize("readout", ["cls", "gap", "register_concat"])
def test_losses_finite_and_decreasing(readout):
    torch.manual_seed(0)
    task = make_task(readout, gram=dict(start_step=3, load_step=3, update_every=4), gram_weight=1.0)
    batch = make_batch()
    hist = run_steps(task, 12, batch=batch)
    for h in hist:
        assert all(torch.isfinite(torch.tensor(v)) for v in h.values()), h
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["ibot_loss"] < hist[0]["ibot_loss"]
    assert hist[0]["gram_loss"] == 0.0 and hist[5]["gram_loss"] > 0.0


def _boolean_mask_ibot(task, batch):
    """The iBOT term as ``training_step`` computed it before it selected patches by index: a boolean
    index, and no iBOT (no mask token, no iBOT head) when no patch is masked."""
    masks, x, temp = batch["masks"], batch["global_crops"], task.now["teacher_temp"]
    if not masks.any():
        return None
    with torch.no_grad():
        t_patches = task.teacher.forward_features(x)["patches"].flatten(1, 2)  # [I, N, D]
        t_probs = task.ibot_loss.teacher_probs(task.teacher_ibot_head(t_patches[masks]), temp)
    s_patches = task.student.forward_features(x, masks=masks)["patches"].flatten(1, 2)
    return task.ibot_loss(task.student_ibot_head(s_patches[masks]), t_probs, masks, batch["masks_weight"])


@pytest.mark.parametrize("mask_probability", [0.5, 0.0])  # 0.0: no image masked, M = 0
def test_indexed_ibot_equals_boolean_mask_ibot(mask_probability):
    """Loss and gradients of the index-selected iBOT term equal the boolean-mask formula's, and a
    batch without masked patches gives a zero loss and zero gradients."""
    torch.manual_seed(0)
    task = make_task(dino_weight=0.0, koleo_weight=0.0)  # the step's loss is then its iBOT term
    task.before_step(0)
    batch = make_batch(mask_probability=mask_probability)
    params = [p for m in task.trainable_modules().values() for p in m.parameters()]

    def grads(loss):  # None (no graph, or a parameter it does not reach) as zeros
        got = [None] * len(params) if loss is None else torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, got)]

    loss, metrics = task.training_step(batch)
    reference = _boolean_mask_ibot(task, batch)
    expected = reference.detach() if reference is not None else torch.zeros(())
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(metrics["ibot_loss"], expected, rtol=1e-6, atol=1e-6)
    for got, want in zip(grads(loss), grads(reference)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert (reference is None) == (mask_probability == 0.0)


@pytest.mark.parametrize("centering", ["sinkhorn_knopp", "softmax"])
def test_compiled_step_reuses_its_graph_for_new_masks_and_scheduled_values(centering):
    """``train.compile=true`` compiles ``training_step`` with static shapes: each batch brings new masks
    (with the same M, see sample_ibot_masks) and each step new scheduled values (a teacher-temperature
    warmup and loss weights, as in dinov3_im1k) and must reuse the graph; the one recompile is Gram
    anchoring switching on. Dynamo's guards do not depend on the backend: the eager one checks them
    without inductor's compile time."""
    def warmup(start, end):
        return L(Schedule)(base=end, warmup_start=start, warmup_steps=20, kind="constant")

    torch._dynamo.reset()
    try:
        task = make_task(gram=dict(start_step=2, load_step=2, update_every=2), gram_weight=warmup(0.5, 1.0),
                         teacher_temp=warmup(0.04, 0.07), koleo_weight=warmup(0.0, 0.1),
                         dino_weight=warmup(0.5, 1.0), ibot_weight=warmup(0.5, 1.0), centering=centering)
        task.compile(backend="eager", dynamic=False)  # apply_compile's "task" mode, without inductor
        run_steps(task, 3)  # compiles at step 0, and at step 2 for the Gram loss
        with torch._dynamo.config.patch(error_on_recompile=True):
            hist = run_steps(task, 3, first_step=3)
        assert all(h["ibot_loss"] > 0 and h["gram_loss"] > 0 for h in hist)
        assert task.now["teacher_temp"] == pytest.approx(0.04 + 0.03 * 5 / 20)  # the values did change
    finally:
        torch._dynamo.reset()


def test_scheduled_values_reach_the_loss():
    """The step's loss is the weighted sum of its terms with this step's scheduled weights."""
    torch.manual_seed(0)
    task = make_task(dino_weight=L(Schedule)(base=2.0, warmup_start=0.0, warmup_steps=4, kind="constant"),
                     koleo_weight=0.0, ibot_weight=0.5)
    batch = make_batch()
    for step, weight in [(0, 0.0), (2, 1.0), (5, 2.0)]:
        task.before_step(step)
        assert task.step_values["dino_weight"].dtype == torch.float32
        loss, metrics = task.training_step(batch)
        torch.testing.assert_close(loss.detach(), weight * metrics["dino_loss"] + 0.5 * metrics["ibot_loss"])


def test_teacher_is_ema_of_student():
    task = make_task(momentum=0.75)
    teacher0 = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    run_steps(task, 1)
    student = task.student.state_dict()
    name = "blocks.1.mixer.qkv.weight"
    torch.testing.assert_close(task.teacher.state_dict()[name], 0.75 * teacher0[name] + 0.25 * student[name])
    assert not any(p.requires_grad for p in task.teacher.parameters())


def test_the_ema_teacher_is_self_teacher_and_the_tasks_model():
    """The EMA teacher is ``task.teacher``; ``task.model``, the trainer's contract (a property), returns it."""
    task = make_task()
    children = dict(task.named_children())
    assert children["teacher"] is task.teacher is task.model and "model" not in children
    assert any(k.startswith("teacher.blocks.") for k in task.state_dict())


@pytest.mark.parametrize("fmt", ["full", "sharded"])
def test_checkpoints_keep_the_teacher_where_older_vitlab_stored_it(tmp_path, fmt):
    """A checkpoint has the layout older vitlab wrote when the teacher was ``self.model``: its ``model`` is
    the teacher, its task state the rest (a sharded one keeps the teacher under ``model.model.``), so old
    and new checkpoints resume alike."""
    from omegaconf import OmegaConf
    from torch.distributed.checkpoint import FileSystemReader

    from vitlab.config import TrainConfig
    from vitlab.engine.checkpoint import latest_checkpoint, load_checkpoint
    from vitlab.engine.distributed import DistInfo
    from vitlab.engine.precision import Precision
    from vitlab.engine.resume import Checkpointer, RunState, restore
    from vitlab.engine.sharded import consolidate

    def optimizer(task):
        return torch.optim.AdamW([p for m in task.trainable_modules().values() for p in m.parameters()])

    torch.manual_seed(0)
    task = make_task(momentum=0.5)
    run_steps(task, 1)  # the teacher moves away from the student
    cfg = OmegaConf.create({"train": OmegaConf.structured(TrainConfig(checkpoint_format=fmt))})
    precision = Precision("fp32", torch.device("cpu"))
    opt = optimizer(task)
    opt.step()  # on the last step's gradients: the optimizer has state
    Checkpointer(tmp_path, cfg, DistInfo()).save(task, opt, precision, RunState(step=1), is_best=False)
    path = latest_checkpoint(tmp_path / "checkpoints")
    ckpt = consolidate(path) if fmt == "sharded" else load_checkpoint(path)
    teacher = task.teacher.state_dict()
    assert ckpt["model"].keys() == teacher.keys() and all(torch.equal(ckpt["model"][k], v) for k, v in teacher.items())
    assert any(k.startswith("student.") for k in ckpt["task"])
    assert not [k for k in ckpt["task"] if k.startswith(("teacher.", "model."))]
    if fmt == "sharded":
        assert "model.model.blocks.1.mixer.qkv.weight" in FileSystemReader(str(path)).read_metadata().state_dict_metadata
    torch.manual_seed(1)
    fresh = make_task()
    restore(str(path), tmp_path, fresh, optimizer(fresh), precision, RunState(), DistInfo())
    for name, state in task.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], state) if isinstance(state, torch.Tensor) else True, name


def _prototypes(task):
    return [h.last_layer.weight.detach().clone() for h in (task.student_dino_head, task.student_ibot_head)]


@pytest.mark.parametrize("weight_norm", [False, True])
def test_every_prototype_layer_frozen_for_first_steps(weight_norm):
    head = L(DINOHead)(out_dim=64, hidden_features=32, bottleneck_dim=16, weight_norm=weight_norm)
    task = make_task(freeze_last_layer_steps=3, dino_head=head, ibot_head=head)
    params = [p for m in task.trainable_modules().values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=3e-3)
    w0, mlp0 = _prototypes(task), task.student_ibot_head.mlp[0].weight.detach().clone()
    for step in range(5):
        task.before_step(step)
        loss, _ = task.training_step(make_batch(seed=step))
        opt.zero_grad()
        loss.backward()
        task.before_optimizer_step(step)
        opt.step()
        task.after_optimizer_step(step)
        if step == 2:  # the last frozen step: both heads' prototypes unchanged, the rest trained
            assert all(torch.equal(a, b) for a, b in zip(_prototypes(task), w0))
            assert not torch.equal(task.student_ibot_head.mlp[0].weight, mlp0)
    assert all(not torch.equal(a, b) for a, b in zip(_prototypes(task), w0))  # and then they move


def test_teacher_and_heads_stay_in_eval_mode_so_drop_path_never_reaches_the_targets():
    model = tiny("HR", num_classes=0, mask_token=True, num_registers=2, image_size=16, max_drop_path_rate=0.3)
    head = L(DINOHead)(out_dim=64, hidden_features=32, bottleneck_dim=16)
    task = instantiate(L(DINOv3Task)(dino_head=head, ibot_head=head), model=model)
    task.train()  # what the trainer's wrappers do; DINOv3's SSLMetaArch.train() re-evals its teacher
    assert task.student.training and task.student_dino_head.training
    assert not any(m.training for t in (task.teacher, task.teacher_dino_head, task.teacher_ibot_head) for m in t.modules())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t1, t2 = (task.teacher_dino_head(task.teacher.readout(task.teacher.forward_features(x))) for _ in range(2))
        s1, s2 = (task.student.forward_features(x)["patches"] for _ in range(2))
    assert torch.equal(t1, t2)
    assert not torch.equal(s1, s2)  # control: the student does drop paths


def test_gap_readout_pretrains_a_model_without_cls_token():
    model = tiny("HR", num_classes=0, mask_token=True, num_registers=2, image_size=16, readout="gap", class_token=False)
    head = L(DINOHead)(out_dim=64, hidden_features=32, bottleneck_dim=16)
    task = instantiate(L(DINOv3Task)(dino_head=head, ibot_head=head), model=model)
    task.setup(total_steps=4)
    hist = run_steps(task, 2)
    assert task.student.cls_token is None and task.student_dino_head.mlp[0].in_features == model.dim
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)


def test_collapse_watch_warns_on_a_constant_teacher():
    task = make_task(collapse_window=2, collapse_after=1)
    with torch.no_grad():  # a teacher head that always puts all mass on prototype 0
        task.teacher_dino_head.last_layer.weight.zero_()
        task.teacher_dino_head.last_layer.weight[0] = 100.0
    with pytest.warns(RuntimeWarning, match="collapse"):
        hist = run_steps(task, 2)
    assert hist[-1]["collapse/collapsed"] == 1.0


def test_collapse_watch_skips_a_frozen_dino_loss():
    """Weight 0 (Schedule(freeze_steps=...)): the DINO loss trains nothing, so the watch neither judges
    nor remembers those steps; it starts with the first step the loss has a weight."""
    from vitlab.engine import Schedule

    task = make_task(collapse_window=2, collapse_after=1,
                     dino_weight=L(Schedule)(base=1.0, freeze_steps=2, kind="constant"))
    with torch.no_grad():  # a teacher that would be called collapsed at once
        task.teacher_dino_head.last_layer.weight.zero_()
        task.teacher_dino_head.last_layer.weight[0] = 100.0
    hist = run_steps(task, 2)
    assert all("collapse/collapsed" not in h for h in hist) and len(task.recent_dino) == 0
    with pytest.warns(RuntimeWarning, match="collapse"):
        hist = run_steps(task, 2, first_step=2)
    assert hist[-1]["collapse/collapsed"] == 1.0


def test_config_errors():
    with pytest.raises(ConfigInstantiationError, match="num_classes=0"):
        instantiate(L(DINOv3Task)(), model=tiny("HR", mask_token=True))
    with pytest.raises(ConfigInstantiationError, match="mask_token=True"):
        instantiate(L(DINOv3Task)(), model=tiny("HR", num_classes=0))


def test_out_of_range_schedules_are_named():
    from vitlab.engine import Schedule

    with pytest.raises(ValueError, match=r"task.teacher_temp is 0.0 at step 0 but must be > 0"):
        make_task(teacher_temp=L(Schedule)(base=0.07, warmup_steps=5, kind="constant"))  # warmup_start left at 0
    with pytest.raises(ValueError, match=r"task.momentum is 1.5 at step 0"):
        make_task(momentum=1.5)
    make_task(teacher_temp=L(Schedule)(base=0.07, warmup_start=0.04, warmup_steps=5, kind="constant"))


def test_batch_with_masks_but_no_mask_indices_is_named():
    task = make_task()
    task.before_step(0)
    batch = make_batch()
    del batch["mask_indices"]
    with pytest.raises(KeyError, match="mask_indices"):
        task(batch)


def test_collapse_watch_reads_the_sinkhorn_knopp_target_and_logs_the_loss_apart():
    task = make_task()
    seen = {}
    loss_fn = task.dino_loss
    original = loss_fn.teacher_probs

    def spy(logits, temp, **kw):  # keep the DINO target the loss is given
        probs = original(logits, temp, **kw)
        if logits.dim() == 3:
            seen["target"], seen["logits"], seen["temp"] = probs, logits, temp
        return probs

    loss_fn.teacher_probs = spy
    metrics = run_steps(task, 1)[0]
    target_entropy = teacher_entropy(seen["target"]).item()
    softmax_entropy = teacher_entropy(torch.softmax(seen["logits"].float() / seen["temp"], -1)).item()
    assert math.isclose(metrics["collapse/target_entropy"], target_entropy, rel_tol=1e-5)
    assert math.isclose(metrics["collapse/softmax_entropy"], softmax_entropy, rel_tol=1e-5)
    assert abs(target_entropy - softmax_entropy) > 1e-3  # Sinkhorn-Knopp moved it: the two are not the same
    assert math.isclose(metrics["dino/kl"], metrics["dino_loss"] - target_entropy, rel_tol=1e-4, abs_tol=1e-5)
    assert metrics["dino/kl"] >= -1e-5
    n_global, n_local = 2, make_batch()["local_crops"].shape[0] // (make_batch()["global_crops"].shape[0] // 2)
    g, l_ = 2 * (n_global - 1), n_global * n_local
    mixed = (g * metrics["dino/global_crops"] + l_ * metrics["dino/local_crops"]) / (g + l_)
    assert math.isclose(mixed, metrics["dino_loss"], rel_tol=1e-5)
