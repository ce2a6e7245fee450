"""Self-supervised learning parts of the DINOv3 recipe (Simeoni et al. 2025), one concept per file."""

from vitlab.ssl.centering import SoftmaxCenter
from vitlab.ssl.collapse import collapse_stats, teacher_entropy
from vitlab.ssl.dino_loss import DINOLoss
from vitlab.ssl.ema import ema_update
from vitlab.ssl.gram import GramConfig, GramTeacher, gram_loss, resize_patch_features, snapshot_into
from vitlab.ssl.heads import DINOHead
from vitlab.ssl.ibot_loss import iBOTPatchLoss, masked_patch_weights
from vitlab.ssl.koleo import KoLeoLoss, koleo_loss
from vitlab.ssl.masking import MaskingGenerator, mask_batch_entries, sample_ibot_masks
from vitlab.ssl.multicrop import IMAGENET_MEAN, IMAGENET_STD, MultiCrop, collate_multicrop

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DINOHead",
    "DINOLoss",
    "GramConfig",
    "GramTeacher",
    "KoLeoLoss",
    "MaskingGenerator",
    "MultiCrop",
    "SoftmaxCenter",
    "collapse_stats",
    "collate_multicrop",
    "ema_update",
    "gram_loss",
    "iBOTPatchLoss",
    "koleo_loss",
    "mask_batch_entries",
    "masked_patch_weights",
    "resize_patch_features",
    "sample_ibot_masks",
    "snapshot_into",
    "teacher_entropy",
]
