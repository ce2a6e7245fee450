"""The linear segmentation probe: mIoU math, the protocol on tiny scenes (label-carrying features vs random ones)."""

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from vitlab.config import DataConfig, EvalConfig, L
from vitlab.data import FashionMNISTScenes, normalize
from vitlab.eval import LinearSegHead, confusion_matrix, seg_probe, segmentation_scores


def test_miou_against_a_hand_computed_confusion_matrix():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = confusion_matrix(pred, target, 4)
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])  # rows: label
    assert torch.equal(cm, expected)  # the two 255 pixels count nowhere
    scores = segmentation_scores(cm)
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 1 / (2 + 1 - 1) = 1/2; class 3: none
    assert math.isclose(scores["miou"], 100 * (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert math.isclose(scores["pixel_acc"], 100 * 4 / 6) and math.isnan(scores["iou"][3])


class MaskChannel:
    """A paired eval transform that hands the label map to the test backbones as a second image channel."""

    def __call__(self, image, mask):
        image = normalize([0.5], [0.5])(image)
        return torch.cat([image, mask[None].float()]), mask


class LabelFeatures(nn.Module):
    """A backbone whose patch features carry the label: each patch's class histogram."""

    patch_size = 4

    def forward_features(self, x):
        onehot = F.one_hot(x[:, 1].long(), 11).permute(0, 3, 1, 2).float()
        return {"patches": F.avg_pool2d(onehot, self.patch_size).permute(0, 2, 3, 1)}


class RandomFeatures(LabelFeatures):
    def forward_features(self, x):
        B, _, H, W = x.shape
        return {"patches": torch.randn(B, H // 4, W // 4, 11)}


def _scenes_config():
    scene = dict(size=56, item_scale=[1.0, 1.0])
    return OmegaConf.structured(DataConfig(
        train=L(FashionMNISTScenes)(split="train", num_scenes=48, seed=0, **scene),
        val=L(FashionMNISTScenes)(split="test", num_scenes=16, seed=1, **scene),
        eval_transform=L(MaskChannel)(), batch_size=16))


def test_probe_reads_the_label_from_label_features_not_from_random_ones():
    protocol = OmegaConf.structured(EvalConfig(seg_val_size=12, seg_lrs=[1e-2, 1e-1], seg_epochs=8))
    good, head = seg_probe(LabelFeatures(), _scenes_config(), protocol)
    bad, _ = seg_probe(RandomFeatures(), _scenes_config(), protocol)
    assert (good["bank_samples"], good["holdout_samples"], good["test_samples"]) == (36, 12, 16)
    assert good["num_classes"] == 11 and good["patch_grid"] == [14, 14] and good["seg_lr"] in (1e-2, 1e-1)
    assert good["seg_val_miou"] == max(good["seg_val_miou_lr0.01"], good["seg_val_miou_lr0.1"])
    assert isinstance(head, LinearSegHead) and head.num_classes == 11
    # 24 steps on 36 scenes, labels from a 14x14 grid upsampled to 56x56: 54.6 mIoU / 88.4% when written
    assert good["seg_miou"] > 45 and good["seg_pixel_acc"] > 85, good
    assert bad["seg_miou"] < 25 and good["seg_miou"] > bad["seg_miou"] + 25, bad


def test_an_image_readout_is_refused_before_any_data_is_built():
    """A run whose eval.readout was set for its k-NN (gap) cannot be read by the patch probe: the error names the
    field and the fix, and comes before the data (a data config that cannot build shows it comes first)."""
    protocol = OmegaConf.structured(EvalConfig(readout="gap"))
    with pytest.raises(ValueError, match=r"eval.readout='gap'.*eval.readout=null"):
        seg_probe(nn.Identity(), OmegaConf.create({"train": None, "val": None}), protocol)
