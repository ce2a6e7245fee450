"""``vitlab eval knn|linear`` on a training checkpoint (the model is rebuilt from the stored config)."""

import json
from pathlib import Path

import torch

from conftest import check, vitlab


def test_knn_and_linear_from_checkpoint(reference_run, tmp_path):
    ckpt = reference_run / "checkpoints" / "step_00000008.pt"
    out = tmp_path / "knn.json"
    proc = check(vitlab("eval", "knn", "--checkpoint", str(ckpt), "eval.readout=gap", "eval.val_size=56",
                        "eval.ks=[5,10]", "--output", str(out)))
    result = json.loads(out.read_text())
    assert {"knn_val_k5_top1", "knn_val_k10_top1", "knn_k", "knn_top1", "knn_top5"} <= set(result)
    assert "knn_top1" in proc.stdout and result["readout"] == "gap" and result["knn_k"] in (5, 10)
    assert (result["bank_samples"], result["holdout_samples"], result["test_samples"]) == (200, 56, 64)
    assert result["knn_val_top1"] == max(result["knn_val_k5_top1"], result["knn_val_k10_top1"])
    assert result["protocol"]["val_size"] == 56 and result["knn_top1"] > 10
    proc = check(vitlab("eval", "linear", "data.val.limit=32", "eval.val_size=56", "eval.probe_epochs=2",
                        "--checkpoint", str(ckpt)))
    result = json.loads(ckpt.with_suffix(".model.linear.json").read_text())
    assert result["test_samples"] == 32 and 0 <= result["linear_top1"] <= 100 and "linear_top1" in proc.stdout
    assert result["linear_lr"] in result["protocol"]["probe_lrs"]


def test_init_and_pixel_baselines(reference_run, tmp_path):
    ckpt = reference_run / "checkpoints" / "step_00000008.pt"
    runs = {}
    for name, extra in {"trained": [], "init": ["--init"], "pixels": ["eval.readout=pixels"]}.items():
        out = tmp_path / f"{name}.json"
        check(vitlab("eval", "knn", "--checkpoint", str(ckpt), "eval.val_size=56", *extra, "--output", str(out)))
        runs[name] = json.loads(out.read_text())
    assert runs["pixels"]["feature_dim"] == 28 * 28 and runs["init"]["init"] is True
    assert runs["init"]["knn_val_top1"] != runs["trained"]["knn_val_top1"] or \
        runs["init"]["knn_top1"] != runs["trained"]["knn_top1"]


def test_init_rebuilds_the_runs_initialisation(tmp_path):
    """``--init`` gives the weights the trainer started from: the step-0 model of a seeded run."""
    from omegaconf import OmegaConf

    from vitlab.config import instantiate, load_config
    from vitlab.engine.checkpoint import build_model_from_checkpoint
    from vitlab.engine.rng import seed_everything

    cfg = load_config(Path(__file__).with_name("tiny_fmnist.py"))
    cfg.train.seed = 3
    seed_everything(3)
    task = instantiate(cfg.task, model=cfg.model)  # as the trainer builds it
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "config": OmegaConf.to_yaml(cfg)}, path)
    model, _ = build_model_from_checkpoint(path, init=True)
    start = task.model.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in model.state_dict().items())
