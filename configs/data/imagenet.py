"""ImageNet-1k (or any ImageFolder tree): set ``data.train.root`` and ``data.val.root``."""

from omegaconf import OmegaConf

from torchvision.transforms import v2

from vitlab.config import DataConfig, L
from vitlab.data import ImageFolder, compose, normalize

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet statistics

data = OmegaConf.structured(DataConfig(
    train=L(ImageFolder)(root="/data/imagenet/train"),
    val=L(ImageFolder)(root="/data/imagenet/val"),
    train_transform=L(compose)(transforms=[
        L(v2.RandomResizedCrop)(size=224, antialias=True),
        L(v2.RandomHorizontalFlip)(),
        L(normalize)(mean=MEAN, std=STD),
    ]),
    eval_transform=L(compose)(transforms=[
        L(v2.Resize)(size=256, antialias=True),  # resize 256 / center crop 224 (the DeiT eval protocol)
        L(v2.CenterCrop)(size=224),
        L(normalize)(mean=MEAN, std=STD),
    ]),
    batch_size=1024,
    eval_batch_size=512,
    num_workers=None,  # one worker per CPU of the rank but one (on Slurm: launch.cpus_per_task - 1)
))
