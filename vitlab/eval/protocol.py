"""The frozen-feature evaluation protocol, one implementation for ``vitlab eval``, ``vitlab sweep`` and an
SSL run's online k-NN monitor (settings: :class:`vitlab.config.EvalConfig`, the run config's ``eval``).

Splits (:mod:`vitlab.data.protocol_splits`, re-exported here), all with the eval transform: ``holdout``,
``eval.val_size`` images of ``data.train`` drawn with ``eval.split_seed``; ``bank``, the other training
images; ``monitor_bank``, ``eval.monitor_bank`` of the bank's images; ``test``, ``data.val``.

Hyperparameters (k; the probe's lr and weight decay) are chosen on ``holdout``: a bank-vs-holdout
score per value, the best kept (ties go to the first in the grid). Only then is ``test`` scored,
once, with the chosen value: k-NN with the whole training set (bank and holdout) as the bank, as
DINO's protocol uses it; the probe with the chosen head, trained on the bank. The online monitor
scores ``holdout`` only and never looks at the test set.

Axis legend: N samples, D feature width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from vitlab.data import PROTOCOL_SPLITS, build_dataset, eval_loader, protocol_dataset, split_indices
from vitlab.eval.features import extract_features
from vitlab.eval.knn import knn_eval
from vitlab.eval.linear import linear_probe
from vitlab.eval.tokens import token_statistics

__all__ = ["PROTOCOL_SPLITS", "split_indices", "protocol_dataset", "protocol_features", "choose_knn", "choose_linear",
           "fixed_batch_tokens", "evaluate"]

Features = tuple[torch.Tensor, torch.Tensor]  # [N, D] float32, [N] labels


def choose_knn(feats: dict[str, Features], protocol: Any) -> dict[str, float]:
    """k chosen on ``holdout`` (bank as the bank); with ``test`` in ``feats``, test top-1/top-5 at that k."""
    (bx, by), (hx, hy) = feats["bank"], feats["holdout"]
    ks = sorted(int(k) for k in protocol.ks)
    val = knn_eval(bx, by, hx, hy, ks=ks, temperature=protocol.temperature)
    k = max(ks, key=lambda k: (val[f"knn_k{k}_top1"], -k))  # ties: the smallest k
    out = {f"knn_val_k{k_}_top1": val[f"knn_k{k_}_top1"] for k_ in ks} | {"knn_k": k, "knn_val_top1": val[f"knn_k{k}_top1"]}
    if "test" in feats:
        tx, ty = feats["test"]
        test = knn_eval(torch.cat([bx, hx]), torch.cat([by, hy]), tx, ty, ks=[k], temperature=protocol.temperature)
        out |= {"knn_top1": test[f"knn_k{k}_top1"], "knn_top5": test[f"knn_k{k}_top5"]}
    return out


def choose_linear(feats: dict[str, Features], protocol: Any) -> dict[str, float]:
    """The probe's (lr, weight decay) chosen on ``holdout``; with ``test`` in ``feats``, its test accuracy."""
    test = feats.get("test", (None, None))
    return linear_probe(*feats["bank"], *feats["holdout"], *test, lrs=list(protocol.probe_lrs),
                        weight_decays=list(protocol.probe_weight_decays), epochs=protocol.probe_epochs)


def protocol_features(model: nn.Module | None, data_cfg: Any, protocol: Any, *, splits: tuple[str, ...] = (
        "bank", "holdout", "test"), device: torch.device | str = "cpu", batch_size: int | None = None,
        num_workers: int = 0, progress: bool = False) -> dict[str, Features]:
    """Features of ``splits`` under ``protocol.readout`` (``pixels``: the eval-transformed images themselves).

    ``bank`` and ``holdout`` come from one pass over ``data.train``.
    """
    device = torch.device(device)
    autocast = torch.bfloat16 if device.type == "cuda" else None

    def extract(dataset: Dataset, name: str) -> Features:
        loader = eval_loader(dataset, batch_size=batch_size or data_cfg.eval_batch_size or data_cfg.batch_size,
                             num_workers=num_workers)
        if progress:
            print(f"[vitlab] features of {name}: {len(dataset)} images", flush=True)
        return extract_features(model, loader, readout=protocol.readout, device=device, autocast_dtype=autocast)

    out: dict[str, Features] = {}
    train_splits = [s for s in splits if s != "test"]
    if train_splits:
        train = build_dataset(data_cfg, "train", train=False)
        index = split_indices(len(train), protocol)
        wanted = torch.cat([index[s] for s in train_splits]).unique()  # sorted
        x, y = extract(Subset(train, wanted.tolist()), "data.train")
        position = torch.full((len(train),), -1, dtype=torch.long)
        position[wanted] = torch.arange(len(wanted))
        out = {s: (x[position[index[s]]], y[position[index[s]]]) for s in train_splits}
    if "test" in splits:
        out["test"] = extract(build_dataset(data_cfg, "val", train=False), "data.val")
    return out


def fixed_batch_tokens(model: nn.Module, holdout: Any, protocol: Any, *, device: torch.device | str = "cpu"
                       ) -> dict[str, float]:
    """Token statistics (:func:`vitlab.eval.tokens.token_statistics`) on the first ``eval.token_images``
    images of ``holdout`` (a dataset, or a loader of (images, labels) batches, of which the first batch
    is used): the same images for every run."""
    if isinstance(holdout, Dataset):
        images = torch.stack([torch.as_tensor(holdout[i][0]) for i in range(min(protocol.token_images, len(holdout)))])
    else:
        images = next(iter(holdout))[0][:protocol.token_images]
    return token_statistics(model, torch.as_tensor(images).float().to(device), outlier_factor=protocol.outlier_factor)


def evaluate(model: nn.Module | None, data_cfg: Any, protocol: Any, kind: str, **kwargs: Any) -> dict[str, Any]:
    """``kind`` ``knn``, ``linear`` or ``all`` (both, from one feature pass) under the protocol; the result
    names the chosen hyperparameters and the split sizes."""
    if kind not in ("knn", "linear", "all"):
        raise ValueError(f"unknown evaluation {kind!r} (known: knn, linear, all)")
    feats = protocol_features(model, data_cfg, protocol, **kwargs)
    result = choose_knn(feats, protocol) if kind in ("knn", "all") else {}
    result |= choose_linear(feats, protocol) if kind in ("linear", "all") else {}
    if model is not None and protocol.readout != "pixels" and hasattr(model, "prepare_tokens"):
        result["tokens"] = fixed_batch_tokens(model, protocol_dataset(data_cfg, "holdout", protocol), protocol,
                                              device=kwargs.get("device", "cpu"))
    return result | {"readout": protocol.readout or "model", "feature_dim": int(feats["bank"][0].shape[1]),
                     **{f"{s}_samples": len(feats[s][1]) for s in feats}}
