"""Fashion-MNIST scenes (:class:`vitlab.data.FashionMNISTScenes`, 112x112) for self-supervised pretraining:
the multi-crop views and iBOT masks of ``fashion_mnist_multicrop`` at scene size.

Global crops keep the 112 px canvas (a 14x14 grid at patch 8, the grid ``vitlab eval seg`` sees on
``configs/data/fmnist_scenes.py``); local crops are 48 px (6x6). Images only (``masks=False``): the
label the k-NN monitor uses is the class of the scene's largest visible item. Train scenes show
Fashion-MNIST train items, ``val`` scenes test items.
"""

from configs.data.fashion_mnist_multicrop import data
from configs.data.fmnist_scenes import MEAN, SCENE, STD
from vitlab.config import L
from vitlab.data import FashionMNISTScenes

GLOBAL, LOCAL, PATCH = 112, 48, 8

data.train = L(FashionMNISTScenes)(split="train", num_scenes=20000, seed=0, masks=False, **SCENE)
data.val = L(FashionMNISTScenes)(split="test", num_scenes=2000, seed=1, masks=False, **SCENE)
data.train_transform.global_crops_size = GLOBAL
data.train_transform.local_crops_size = LOCAL
data.train_transform.blur_kernel_size = 5  # DINOv3's 9 is for 224 px crops
data.train_transform.mean, data.train_transform.std = MEAN, STD
data.eval_transform.mean, data.eval_transform.std = MEAN, STD
data.collate.masker.mask_generator.grid_size = [GLOBAL // PATCH, GLOBAL // PATCH]
data.eval_batch_size = 100
