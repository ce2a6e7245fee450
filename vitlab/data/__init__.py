"""Datasets, samplers and loaders: Fashion-MNIST (and its scenes, a dense task), torchvision sets, ImageFolder and
segmentation folders with bad-file handling, the transforms of DeiT III's recipe, and the frozen-feature
protocol's splits."""

from vitlab.data.build import build_dataset
from vitlab.data.fashion_mnist import DEFAULT_ROOT, FashionMNIST, read_idx
from vitlab.data.fmnist_scenes import SCENE_CLASSES, FashionMNISTScenes
from vitlab.data.image_folder import ImageFolder
from vitlab.data.loader import SeededDataset, build_loader, collate_skip_none, eval_loader, seed_worker
from vitlab.data.protocol_splits import PROTOCOL_SPLITS, protocol_dataset, split_indices
from vitlab.data.sampler import ResumableSampler, sample_seed
from vitlab.data.segmentation_folder import IGNORE_INDEX, SegmentationFolder
from vitlab.data.three_augment import ThreeAugment
from vitlab.data.torchvision_sets import cifar10, cifar100, stl10
from vitlab.data.transforms import SimpleRandomCrop, compose, normalize

__all__ = ["DEFAULT_ROOT", "IGNORE_INDEX", "PROTOCOL_SPLITS", "SCENE_CLASSES", "FashionMNIST", "FashionMNISTScenes",
           "ImageFolder", "ResumableSampler", "SeededDataset", "SegmentationFolder", "SimpleRandomCrop",
           "ThreeAugment", "build_dataset", "build_loader", "eval_loader", "cifar10", "cifar100", "collate_skip_none",
           "compose", "normalize", "protocol_dataset", "read_idx", "sample_seed", "seed_worker", "split_indices",
           "stl10"]
