"""CIFAR-10 through torchvision; set ``data.train.root`` / ``data.val.root`` (``download=True`` fetches it)."""

from omegaconf import OmegaConf

from torchvision.transforms import v2

from vitlab.config import DataConfig, L
from vitlab.data import cifar10, compose, normalize

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]  # CIFAR-10 train-set statistics

data = OmegaConf.structured(DataConfig(
    train=L(cifar10)(root="data/cifar10", split="train"),
    val=L(cifar10)(root="data/cifar10", split="test"),
    train_transform=L(compose)(transforms=[
        L(v2.RandomCrop)(size=32, padding=4),  # the standard CIFAR augmentation (He et al. 2016)
        L(v2.RandomHorizontalFlip)(),
        L(normalize)(mean=MEAN, std=STD),
    ]),
    eval_transform=L(normalize)(mean=MEAN, std=STD),
    batch_size=256,
    eval_batch_size=512,
    num_workers=4,
))
