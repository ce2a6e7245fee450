"""Frozen-feature evaluation: feature extraction, weighted k-NN, linear probe, linear segmentation probe (also the
``vitlab eval`` command)."""

from vitlab.eval.accuracy import eval_mode, topk_correct, topk_hits
from vitlab.eval.features import extract_features, readout_features
from vitlab.eval.knn import knn_eval, knn_predict
from vitlab.eval.linear import linear_probe
from vitlab.eval.seg import LinearSegHead, patch_feature_maps, seg_probe
from vitlab.eval.seg_metrics import confusion_matrix, segmentation_scores

__all__ = ["eval_mode", "topk_correct", "topk_hits", "extract_features", "readout_features", "knn_eval", "knn_predict", "linear_probe", "seg_probe", "LinearSegHead",
           "patch_feature_maps", "confusion_matrix", "segmentation_scores"]
