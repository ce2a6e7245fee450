"""ClassificationTask's binary cross-entropy (DeiT III's ``--bce-loss``); cross-entropy stays the default."""

import pytest
import torch
import torch.nn.functional as F

from vitlab.config import L, instantiate
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT
from vitlab.tasks import ClassificationTask

MODEL = L(HybridViT)(in_channels=1, num_classes=4, dim=32, num_blocks=1, patch_size=4, image_size=8,
                     norm_layer=L(LayerNorm)(),
                     block_layer=L(Block)(mixer_layer=L(Attention)(num_heads=2), ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)()))


def batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_cross_entropy_is_the_default():
    task = ClassificationTask(model=MODEL, label_smoothing=0.1)
    images, labels = batch()
    loss, _ = task((images, labels))
    assert task.loss == "cross_entropy"
    torch.testing.assert_close(loss, F.cross_entropy(task.model(images), labels, label_smoothing=0.1))


def test_bce_on_labels_is_bce_with_logits_on_one_hot():
    task = instantiate(L(ClassificationTask)(loss="bce"), model=MODEL)
    images, labels = batch()
    loss, _ = task((images, labels))
    expected = torch.nn.BCEWithLogitsLoss()(task.model(images), F.one_hot(labels, 4).float())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert task.model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("threshold", [None, 0.0])
def test_bce_on_mixed_targets(threshold):
    """MixUp/CutMix targets as they are (None) or binarised like facebookresearch/deit ``engine.py``
    (``targets.gt(0.0)``: both classes of a mixed image get target 1)."""
    task = ClassificationTask(model=MODEL, mixup_alpha=0.8, cutmix_alpha=1.0, loss="bce",
                              bce_target_threshold=threshold)
    images, labels = batch()
    torch.manual_seed(1)
    loss, _ = task((images, labels))
    torch.manual_seed(1)
    mixed, soft = task.mix(images, labels)  # the same draw
    assert soft.shape == (6, 4) and ((soft > 0) & (soft < 1)).any()  # really mixed
    targets = soft if threshold is None else soft.gt(0.0).float()
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(task.model(mixed), targets))


def test_bce_loss_is_float32_under_bf16_autocast():
    task = ClassificationTask(model=MODEL, loss="bce")
    logits = torch.randn(3, 4, dtype=torch.bfloat16)
    soft = torch.tensor([[0.3, 0.7, 0.0, 0.0]] * 3)
    loss = task.binary_cross_entropy(logits, soft)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits.float(), soft))


def test_inconsistent_options_are_rejected():
    with pytest.raises(ValueError, match="loss must be one of"):
        ClassificationTask(model=MODEL, loss="focal")
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationTask(model=MODEL, loss="bce", label_smoothing=0.1)
    with pytest.raises(ValueError, match="bce_target_threshold"):
        ClassificationTask(model=MODEL, bce_target_threshold=0.0)
