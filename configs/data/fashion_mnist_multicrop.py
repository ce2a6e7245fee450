"""Fashion-MNIST for self-supervised pretraining: DINOv3 multi-crop views with iBOT block masks.

Global crops keep the native 28px (a 7x7 grid at patch 4, the grid evaluation sees); local crops are
16px (4x4). ``val`` is the test set: the online monitor and every hyperparameter choice use the
validation split the evaluation protocol carves from ``train`` (``vitlab.eval.protocol``).
"""

from omegaconf import OmegaConf
from vitlab.config import DataConfig, L
from vitlab.data import DEFAULT_ROOT, FashionMNIST, normalize
from vitlab.ssl import MaskingGenerator, MultiCrop, collate_multicrop, sample_ibot_masks

MEAN, STD = [0.2860], [0.3530]  # Fashion-MNIST pixel statistics (one channel: the images are gray)
GLOBAL, LOCAL, PATCH = 28, 16, 4

data = OmegaConf.structured(DataConfig(
    train=L(FashionMNIST)(root=DEFAULT_ROOT, split="train"),
    val=L(FashionMNIST)(root=DEFAULT_ROOT, split="test"),
    train_transform=L(MultiCrop)(
        global_crops_size=GLOBAL,
        local_crops_size=LOCAL,
        local_crops_number=6,  # DINOv3 uses 8; 6 keeps a CPU step affordable
        mean=MEAN,
        std=STD,
        blur_kernel_size=3,  # DINOv3's 9 is for 224px crops
        to_rgb=False,  # gray images: hue/saturation jitter would be a no-op, so keep one channel
    ),
    eval_transform=L(normalize)(mean=MEAN, std=STD),
    collate=L(collate_multicrop)(
        masker=L(sample_ibot_masks)(
            mask_generator=L(MaskingGenerator)(grid_size=[GLOBAL // PATCH, GLOBAL // PATCH]),
            mask_probability=0.5,  # DINOv3: half of the global crops are masked
            mask_ratio_min_max=[0.1, 0.5],  # DINOv3's ratio range
            _partial_=True,
        ),
        _partial_=True,
    ),
    batch_size=64,
    eval_batch_size=500,
    num_workers=1,  # one worker (one thread) keeps the per-crop augmentations off the training threads
))
