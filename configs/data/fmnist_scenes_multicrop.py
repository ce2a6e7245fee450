"""Fashion-MNIST scenes (:class:`vitlab.data.FashionMNISTScenes`, 112x112) for self-supervised pretraining:
the multi-crop views and iBOT masks of ``fashion_mnist_multicrop`` at scene size.

Global crops keep the 112 px canvas (a 14x14 grid at patch 8, the grid ``vitlab eval seg`` sees on
``configs/data/fmnist_scenes.py``); local crops are 48 px (6x6). Images only (``masks=False``): the
label the k-NN monitor uses is the class of the scene's largest visible item. Train scenes show
Fashion-MNIST train items, ``val`` scenes test items.
"""

from configs.data import fmnist_scenes
from configs.data.fashion_mnist_multicrop import data
from configs.data.fmnist_scenes import MEAN, STD

GLOBAL, LOCAL, PATCH = 112, 48, 8

data.train, data.val = fmnist_scenes.data.train, fmnist_scenes.data.val  # the probe's scenes, more of them
data.train.num_scenes, data.val.num_scenes = 20000, 2000
data.train.masks = data.val.masks = False
data.train_transform.global_crops_size = GLOBAL
data.train_transform.local_crops_size = LOCAL
data.train_transform.blur_kernel_size = 5  # DINOv3's 9 is for 224 px crops
data.train_transform.mean, data.train_transform.std = MEAN, STD
data.eval_transform.mean, data.eval_transform.std = MEAN, STD
data.collate.masker.mask_generator.grid_size = [GLOBAL // PATCH, GLOBAL // PATCH]
data.eval_batch_size = 100
