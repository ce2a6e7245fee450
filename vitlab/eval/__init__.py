"""Frozen-feature evaluation: feature extraction, weighted k-NN, linear probe (also the ``vitlab eval`` command)."""

from vitlab.eval.features import extract_features, readout_features
from vitlab.eval.knn import knn_eval, knn_predict
from vitlab.eval.linear import linear_probe

__all__ = ["extract_features", "readout_features", "knn_eval", "knn_predict", "linear_probe"]
