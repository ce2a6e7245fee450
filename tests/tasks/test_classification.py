import torch

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT
from vitlab.tasks import ClassificationTask, Task, topk_correct

MODEL = L(HybridViT)(in_channels=1, num_classes=4, dim=32, num_blocks=1, patch_size=4, image_size=8,
                     norm_layer=L(LayerNorm)(),
                     block_layer=L(Block)(mixer_layer=L(Attention)(num_heads=2), ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)()))


def batch(n=6):
    return torch.randn(n, 1, 8, 8), torch.randint(0, 4, (n,))


def test_training_step_and_interface_defaults():
    from vitlab.config import instantiate

    task = instantiate(L(ClassificationTask)(label_smoothing=0.1), model=MODEL)
    assert isinstance(task, Task) and set(task.trainable_modules()) == {"model"}
    loss, metrics = task(batch())
    loss.backward()
    assert loss.ndim == 0 and set(metrics) == {"top1"} and task.model.head.weight.grad is not None
    assert task.before_step(0) == {} and set(k for k in task.state_dict() if not k.startswith("model.")) == set()


def test_mixup_cutmix_soft_targets():
    task = ClassificationTask(model=MODEL, mixup_alpha=0.8, cutmix_alpha=1.0)
    loss, _ = task(batch())
    assert torch.isfinite(loss)


def test_evaluate_counts():
    task = ClassificationTask(model=MODEL)
    data = [batch(5), batch(3)]
    out = task.evaluate(lambda split: data)
    assert set(out) == {"top1", "top5", "loss"} and 0 <= out["top1"] <= out["top5"] == 100.0  # 4 classes: top5 = all


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.05]])
    hits = topk_correct(logits, torch.tensor([1, 2]), ks=(1, 2))
    assert hits[1].item() == 1 and hits[2].item() == 1
