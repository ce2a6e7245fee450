import functools

import pytest
import torch

from tests.models.helpers import tiny
from vitlab.config import ConfigInstantiationError, L, instantiate
from vitlab.ssl import DINOHead, MaskingGenerator, MultiCrop, collate_multicrop, sample_ibot_masks
from vitlab.tasks.dino import DINOv3Task


def make_task(readout="cls", registers=2, **kw):
    model = tiny("HR", num_classes=0, mask_token=True, num_registers=registers, image_size=16, readout=readout,
                 neck_compression_ratio=4 if readout == "register_concat" else None)
    head = L(DINOHead)(out_dim=64, hidden_features=32, bottleneck_dim=16)
    args = dict(dino_head=head, ibot_head=head, teacher_temp=0.04, momentum=0.9)
    args.update(kw)
    task = instantiate(L(DINOv3Task)(**args), model=model)
    task.setup(total_steps=20)
    return task


def make_batch(n_images=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    crop = MultiCrop(global_crops_size=16, local_crops_size=8, local_crops_number=2, mean=[0.5] * 3, std=[0.5] * 3,
                     blur_kernel_size=3)
    torch.manual_seed(seed)
    images = [torch.rand(3, 24, 24, generator=g) for _ in range(n_images)]
    masker = functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((4, 4)), generator=g)
    return collate_multicrop([crop(im) for im in images], masker=masker)


def run_steps(task, steps, batch=None, lr=3e-3):
    params = [p for m in task.trainable_modules().values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr)
    history = []
    for step in range(steps):
        task.before_step(step)
        loss, metrics = task.training_step(batch if batch is not None else make_batch(seed=step))
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


def test_teacher_is_ema_of_student():
    task = make_task(momentum=0.75)
    teacher0 = {k: v.clone() for k, v in task.model.state_dict().items()}
    run_steps(task, 1)
    student = task.student.state_dict()
    name = "blocks.1.mixer.qkv.weight"
    torch.testing.assert_close(task.model.state_dict()[name], 0.75 * teacher0[name] + 0.25 * student[name])
    assert not any(p.requires_grad for p in task.model.parameters())


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
    assert not any(m.training for t in (task.model, task.teacher_dino_head, task.teacher_ibot_head) for m in t.modules())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        t1, t2 = (task.teacher_dino_head(task.model.readout(task.model.forward_features(x))) for _ in range(2))
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
