"""DeiT III's supervised ImageNet-1k recipe (Touvron, Cord, Jégou 2022, "DeiT III: Revenge of the ViT"):
3-Augment, LAMB, binary cross-entropy on MixUp / CutMix targets, 800 epochs at a global batch of 2048.

Every number is from facebookresearch/deit: ``README_revenge.md`` (the ImageNet-1k training commands,
each with its log: ViT-S reaches 81.376 at epoch 800, the model zoo's 81.4; "ViT-S cmd" is
``--model deit_small_patch16_LS``), and ``main.py`` / ``engine.py`` / ``augment.py`` / ``models_v2.py``
for what those flags do. The model-dependent settings (drop path, LayerScale, lr of ViT-S) are the
experiment's (``experiments/deit3_hybrid_im1k.py``).

Departures from the reference, all for lack of a vitlab counterpart:
- no repeated augmentation (``--repeated-aug``: each image 3 times per batch, ``samplers.py`` RASampler);
- the lr changes every step, not every epoch (timm's scheduler), and the cosine spans the steps after
  warmup (timm's spans all epochs: 0.01% apart at the end of warmup);
- bf16 autocast on CUDA (vitlab's default) where DeiT III used fp16 with a loss scaler;
- no EMA of the weights: ``main.py`` keeps one by default, but evaluates and reports the raw model.

The lr follows the global batch linearly. Warmup, evaluation and checkpoints are steps: call
``set_batch`` in an experiment to change the batch so they stay at the same epochs.
"""

from omegaconf import OmegaConf
from torchvision.transforms import v2

from configs.data.imagenet import MEAN, STD, data
from configs.train.default import train
from vitlab.config import L, OptimConfig
from vitlab.data import ThreeAugment, compose, normalize
from vitlab.engine import Schedule
from vitlab.engine.lamb import Lamb
from vitlab.tasks import ClassificationTask

IMAGES = 1_281_167  # ImageNet-1k training images
BATCH = 2048  # README_revenge.md: --batch 256 x 8 GPUs (ViT-S/B; ViT-L/H: 64 x 32); the lr's reference batch
EPOCHS = 800  # README_revenge.md: --epochs 800 for every IN-1k model
SIZE = 224  # README_revenge.md ViT-S cmd: --input-size 224 (ViT-B/L: 192, ViT-H: 160, fine-tuned at 224)
PER_256 = 256 / BATCH  # lr values below are written at batch 2048 and stored per 256 images (lr_scaling)

data.train_transform = L(compose)(transforms=[
    # augment.py without --src (the IN-1k commands do not pass it): timm's RandomResizedCrop, bicubic,
    # scale (0.08, 1). Simple Random Crop (vitlab.data.SimpleRandomCrop) is the IN-21k commands' crop (--src).
    L(v2.RandomResizedCrop)(size=SIZE, scale=[0.08, 1.0], interpolation="bicubic", antialias=True),
    L(v2.RandomHorizontalFlip)(),  # augment.py: p=0.5
    L(ThreeAugment)(),  # --ThreeAugment: one of grayscale / solarization / blur per image
    L(v2.ColorJitter)(brightness=0.3, contrast=0.3, saturation=0.3),  # --color-jitter 0.3; augment.py: no hue
    L(normalize)(mean=MEAN, std=STD),  # no random erasing: --reprob 0.0
])
data.eval_transform = L(compose)(transforms=[
    L(v2.Resize)(size=SIZE, interpolation="bicubic", antialias=True),  # --eval-crop-ratio 1.0: resize to 224,
    L(v2.CenterCrop)(size=SIZE),  # then keep the centre square (datasets.py)
    L(normalize)(mean=MEAN, std=STD),
])
data.eval_batch_size = 3 * BATCH // 2  # main.py: 1.5 x the training batch

task = L(ClassificationTask)(
    loss="bce",  # --bce-loss (nn.BCEWithLogitsLoss, main.py)
    bce_target_threshold=0.0,  # engine.py with --bce-loss: targets.gt(0.0), both mixed classes become 1
    label_smoothing=0.0,  # --smoothing 0.0
    mixup_alpha=0.8,  # --mixup .8
    cutmix_alpha=1.0,  # --cutmix 1.0; one of the two per batch (main.py: --mixup-switch-prob 0.5)
)

optim = OmegaConf.structured(OptimConfig(
    optimizer=L(Lamb)(betas=[0.9, 0.999], eps=1e-8),  # --opt fusedlamb (apex's betas); main.py --opt-eps 1e-8
    lr=L(Schedule)(
        base=3e-3 * PER_256,  # the ViT-B/L/H cmds: --lr 3e-3 at batch 2048 (ViT-S cmd: 4e-3)
        final=1e-5 * PER_256,  # main.py --min-lr 1e-5 (timm cosine)
        warmup_start=1e-6 * PER_256,  # --warmup-lr 1e-6
        warmup_steps=0,  # set_batch: --warmup-epochs 5
        kind="cosine",  # --sched cosine
    ),
    lr_scaling="linear_wrt_256",  # the values above x B / 256: 3e-3 at B = 2048 (the cmds: --unscale-lr)
    weight_decay=0.05,  # README_revenge.md: --weight-decay 0.05 for IN-1k (0.02 is the IN-21k commands')
    no_weight_decay="timm",  # timm create_optimizer: no decay on biases, 1-D tensors, CLS, position embedding
))

train.epochs = EPOCHS
train.clip_grad = 1.0  # apex FusedLAMB clips the global grad norm to 1.0 in its step (--clip-grad: None)


def set_batch(batch: int) -> None:
    """Train at global batch ``batch``; the lr follows linearly (``optim.lr_scaling``) and the step
    milestones below stay at the same epochs."""
    epoch = IMAGES // batch  # optimizer steps per epoch (the last partial batch is dropped)
    data.batch_size = batch
    optim.lr.warmup_steps = 5 * epoch  # --warmup-epochs 5
    train.eval_every = 5 * epoch  # main.py evaluates every epoch; README_revenge.md's logs list every 5th
    train.checkpoint_every = epoch  # main.py writes checkpoint.pth every epoch


set_batch(BATCH)
