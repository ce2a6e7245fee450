"""The SSL parts wired together as a DINOv3 step would, with a toy patch backbone: everything is
finite, gradients reach the student, and the EMA moves the teacher."""

import copy
import functools

import numpy as np
import torch
from PIL import Image

from vitlab.ssl import (
    DINOHead,
    DINOLoss,
    GramTeacher,
    KoLeoLoss,
    MaskingGenerator,
    MultiCrop,
    collate_multicrop,
    ema_update,
    gram_loss,
    iBOTPatchLoss,
    sample_ibot_masks,
)


class ToyBackbone(torch.nn.Module):
    """8x8 patches -> tokens; CLS is the mean token. Mask tokens replace masked patches."""

    def __init__(self, dim=16):
        super().__init__()
        self.embed = torch.nn.Conv2d(3, dim, 8, stride=8)
        self.mask_token = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, x, masks=None):
        patches = self.embed(x).flatten(2).transpose(1, 2)  # [I, N, D]
        if masks is not None:
            patches = torch.where(masks[..., None], self.mask_token, patches)
        return patches.mean(1), patches


def test_one_training_step():
    torch.manual_seed(0)
    n_local, k = 2, 32
    transform = MultiCrop(global_crops_size=32, local_crops_size=16, local_crops_number=n_local, blur_kernel_size=3)
    collate = functools.partial(collate_multicrop,
                                masker=functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((4, 4))))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L") for _ in range(4)]
    batch = collate([(transform(im), 0) for im in images])
    b = 4

    student = torch.nn.ModuleDict({"backbone": ToyBackbone(), "dino_head": DINOHead(16, k, hidden_features=32,
                                   bottleneck_dim=8), "ibot_head": DINOHead(16, k, hidden_features=32, bottleneck_dim=8)})
    teacher = copy.deepcopy(student).requires_grad_(False)
    gram_teacher = GramTeacher.from_teacher(teacher["backbone"], load_step=0)
    gram_teacher.maybe_refresh(0, teacher["backbone"])
    dino_loss, ibot_loss, koleo = DINOLoss(k), iBOTPatchLoss(k), KoLeoLoss()

    with torch.no_grad():
        t_cls, t_patches = teacher["backbone"](batch["global_crops"])
        t_dino = dino_loss.teacher_probs(teacher["dino_head"](t_cls).unflatten(0, (2, b)), 0.04)
        t_masked = t_patches.flatten(0, 1)[batch["mask_indices"]]
        t_ibot = ibot_loss.teacher_probs(teacher["ibot_head"](t_masked), 0.04)
        _, gram_patches = gram_teacher(batch["global_crops"])

    g_cls, g_patches = student["backbone"](batch["global_crops"], masks=batch["masks"])
    l_cls, _ = student["backbone"](batch["local_crops"])
    s_dino = student["dino_head"](torch.cat([g_cls, l_cls])).unflatten(0, (2 + n_local, b))
    s_ibot = student["ibot_head"](g_patches.flatten(0, 1)[batch["mask_indices"]])
    losses = {
        "dino": dino_loss(s_dino, t_dino),
        "ibot": ibot_loss(s_ibot, t_ibot, batch["masks"], batch["masks_weight"]),
        "koleo": sum(koleo(x) for x in g_cls.unflatten(0, (2, b))) / 2,
        "gram": gram_loss(g_patches, gram_patches),
    }
    total = sum(losses.values())
    total.backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert student["backbone"].embed.weight.grad.abs().sum() > 0

    before = teacher["backbone"].embed.weight.clone()
    with torch.no_grad():
        for p in student.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    ema_update(teacher, student, 0.992)
    assert not torch.equal(before, teacher["backbone"].embed.weight)
