"""Fashion-MNIST scenes shrunk to seconds: the segmentation data of the sweep's seg test."""

from configs.data.fmnist_scenes import data

data.train.num_scenes = 20
data.val.num_scenes = 6
data.train.size = 56
data.val.size = 56
data.eval_batch_size = 8
