"""Fashion-MNIST (28x28 grayscale, 10 classes) from the Debian ``dataset-fashion-mnist`` package.

One channel by default (``in_channels=1``); add ``L(v2.RGB)()`` to the transforms for 3-channel models.
"""

from omegaconf import OmegaConf

from torchvision.transforms import v2

from vitlab.config import DataConfig, L
from vitlab.data import DEFAULT_ROOT, FashionMNIST, compose, normalize

MEAN, STD = [0.2860], [0.3530]  # Fashion-MNIST train-set pixel mean / std

data = OmegaConf.structured(DataConfig(
    train=L(FashionMNIST)(root=DEFAULT_ROOT, split="train"),
    val=L(FashionMNIST)(root=DEFAULT_ROOT, split="test"),
    train_transform=L(compose)(transforms=[
        L(v2.RandomCrop)(size=28, padding=2),
        L(v2.RandomHorizontalFlip)(),
        L(normalize)(mean=MEAN, std=STD),
    ]),
    eval_transform=L(normalize)(mean=MEAN, std=STD),
    batch_size=128,  # global (all ranks, all accumulated micro-batches): the batch of one optimizer step
    eval_batch_size=512,
    num_workers=0,  # decoding is a tensor index: workers would only compete with the model for 2 cores
))
