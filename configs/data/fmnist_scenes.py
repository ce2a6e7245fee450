"""Fashion-MNIST scenes (:class:`vitlab.data.FashionMNISTScenes`): 2-4 items, 28 to 56 px each, pasted on a
112x112 canvas; per-pixel labels (0 background, class + 1): the bundled dense task of ``vitlab eval seg``.

Train scenes show Fashion-MNIST train items, test scenes test items. One channel, as Fashion-MNIST;
``size=56`` (with ``item_scale=[1.0, 2.0]`` at most 56 px items) is the cheaper variant:
``data.train.size=56 data.val.size=56``. The probe's validation split (``eval.seg_val_size``) is carved
from ``train``. For pretraining on scenes, set ``masks=False`` on both (the images alone, with the
majority item's class as the label the k-NN monitor uses) and a :class:`vitlab.ssl.MultiCrop` transform.
"""

from omegaconf import OmegaConf

from torchvision.transforms import v2

from vitlab.config import DataConfig, L
from vitlab.data import DEFAULT_ROOT, FashionMNISTScenes, compose, normalize

MEAN, STD = [0.1165], [0.2623]  # pixel mean / std of 100 train scenes of this config (mostly black canvas)

data = OmegaConf.structured(DataConfig(
    train=L(FashionMNISTScenes)(root=DEFAULT_ROOT, split="train", num_scenes=5000, seed=0, size=112,
                                item_scale=[1.0, 2.0], min_items=2, max_items=4),
    val=L(FashionMNISTScenes)(root=DEFAULT_ROOT, split="test", num_scenes=1000, seed=1, size=112,
                              item_scale=[1.0, 2.0], min_items=2, max_items=4),
    train_transform=L(compose)(transforms=[  # paired: the mask moves with the image
        L(v2.RandomHorizontalFlip)(),
        L(normalize)(mean=MEAN, std=STD),
    ]),
    eval_transform=L(normalize)(mean=MEAN, std=STD),
    batch_size=64,
    eval_batch_size=64,
    num_workers=0,
))
