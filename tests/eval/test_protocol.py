"""The frozen-feature protocol: splits, choices on the validation split only, raw pixels."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vitlab.config import EvalConfig, L
from vitlab.data import DEFAULT_ROOT, FashionMNIST
from vitlab.eval.protocol import choose_knn, choose_linear, evaluate, protocol_dataset, split_indices

from tests.eval.test_knn_linear import clusters


def protocol(**kw):
    return OmegaConf.structured(EvalConfig(**kw))


def test_splits_are_disjoint_fixed_and_cover_train():
    p = protocol(val_size=30, monitor_bank=20, split_seed=3)
    a, b = split_indices(100, p), split_indices(100, p)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(a["holdout"]) == 30 and len(a["bank"]) == 70 and len(a["monitor_bank"]) == 20
    assert not set(a["holdout"].tolist()) & set(a["bank"].tolist())
    assert set(a["monitor_bank"].tolist()) <= set(a["bank"].tolist())
    assert sorted(a["holdout"].tolist() + a["bank"].tolist()) == list(range(100))
    assert not torch.equal(split_indices(100, protocol(val_size=30, split_seed=4))["holdout"], a["holdout"])


def test_val_size_is_checked():
    with pytest.raises(ValueError, match="eval.val_size=100"):
        split_indices(100, protocol(val_size=100))


def feats_with_test(seed=2):
    (bx, by), (hx, hy), (tx, ty) = clusters(noise=2.5), clusters(n_per=15, noise=2.5, seed=1), clusters(noise=2.5, seed=seed)
    return {"bank": (bx, by), "holdout": (hx, hy), "test": (tx, ty)}


def test_knn_choice_never_reads_test_labels():
    p = protocol(ks=[1, 5, 20, 60])
    feats = feats_with_test()
    a = choose_knn(feats, p)
    tx, ty = feats["test"]
    b = choose_knn(feats | {"test": (tx, ty[torch.randperm(len(ty))])}, p)
    assert a["knn_k"] == b["knn_k"] and a["knn_val_top1"] == b["knn_val_top1"]
    assert a["knn_val_top1"] == max(a[f"knn_val_k{k}_top1"] for k in (1, 5, 20, 60))
    # the choice moves with the validation labels
    hx, hy = feats["holdout"]
    flipped = choose_knn(feats | {"holdout": (hx, hy[torch.randperm(len(hy))])}, p)
    assert flipped["knn_val_top1"] < a["knn_val_top1"]


def test_linear_choice_and_test_score():
    out = choose_linear(feats_with_test(), protocol(probe_epochs=3, probe_lrs=[1e-2, 1e-1], probe_weight_decays=[0.0]))
    assert {"linear_top1", "linear_val_top1", "linear_lr", "linear_weight_decay"} <= set(out)


@pytest.mark.skipif(not Path(DEFAULT_ROOT).is_dir(), reason="dataset-fashion-mnist not installed")
def test_raw_pixels_under_the_protocol():
    data = OmegaConf.create({"train": L(FashionMNIST)(split="train", limit=600), "val": L(FashionMNIST)(split="test", limit=200),
                             "eval_transform": None, "batch_size": 100, "eval_batch_size": None})
    p = protocol(readout="pixels", val_size=100, ks=[5, 10])
    assert len(protocol_dataset(data, "holdout", p)) == 100 and len(protocol_dataset(data, "test", p)) == 200
    out = evaluate(None, data, p, "knn")
    assert out["feature_dim"] == 784 and out["bank_samples"] == 500 and out["test_samples"] == 200
    assert out["knn_top1"] > 50 and out["knn_k"] in (5, 10)
