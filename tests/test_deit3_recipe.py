"""DeiT III's ImageNet-1k recipe: two training steps of experiments/deit3_hybrid_im1k.py, shrunk, on a tiny
ImageFolder, through the real trainer (3-Augment, LAMB, BCE on mixed targets, linear lr scaling)."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.engine.checkpoint import load_checkpoint
from vitlab.engine.trainer import train

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments/deit3_hybrid_im1k.py"


def image_folder(root, per_class, seed):
    g = np.random.default_rng(seed)
    for cls in ("n01440764", "n01443537"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            h, w = g.integers(36, 60, size=2)  # various sizes and aspect ratios, as ImageNet's
            Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / cls / f"{i}.JPEG")
    return root


def shrunk(tmp_path):
    cfg = load_config(EXPERIMENT)
    train_root, val_root = image_folder(tmp_path / "train", 8, 0), image_folder(tmp_path / "val", 3, 1)
    apply_overrides(cfg, [
        f"data.train.root={train_root}", f"data.val.root={val_root}",
        "data.train_transform.transforms.0.size=32", "data.eval_transform.transforms.0.size=32",
        "data.eval_transform.transforms.1.size=32", "data.batch_size=4", "data.eval_batch_size=6",
        "data.num_workers=0", "model.image_size=32", "model.patch_size=8", "model.dim=32", "model.num_blocks=2",
        "model.layer_pattern=HR", "model.layer_types.R.mixer_layer.num_heads=2", "model.layer_types.H.mixer_layer.filter_hidden=16",
        "optim.lr.warmup_steps=1", "train.max_steps=2", "train.log_every=1", "train.eval_every=null",
        "train.checkpoint_every=2", "train.device=cpu", "train.compile=false", f"train.output_dir={tmp_path / 'run'}",
    ])
    return cfg


def test_recipe_reads_as_the_paper_and_the_deit_commands():
    cfg = load_config(EXPERIMENT)
    assert cfg.data.batch_size == 2048 and cfg.train.epochs == 800
    assert cfg.optim.lr_scaling == "linear_wrt_256"
    assert cfg.optim.lr.base * 2048 / 256 == 4e-3  # ViT-S's lr at the reference batch
    assert cfg.optim.lr.warmup_steps == 5 * (1_281_167 // 2048)  # 5 epochs
    assert (cfg.task.loss, cfg.task.mixup_alpha, cfg.task.cutmix_alpha) == ("bce", 0.8, 1.0)
    assert cfg.model.layer_types.H.layer_scale_init == cfg.model.layer_types.R.layer_scale_init == 1e-4
    out = instantiate(cfg.data.train_transform)(Image.new("RGB", (300, 250), (200, 30, 90)))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32


def test_two_training_steps(tmp_path):
    cfg = shrunk(tmp_path)
    metrics = train(cfg, experiment="deit3_hybrid_im1k")
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    # BCE over 1000 classes starts near ln 2 per class; cross-entropy would start near ln 1000 = 6.9
    assert all(0.0 < r["train/loss"] < 1.0 for r in steps)
    # the lr at the end of the 1-step warmup: ViT-S's 4e-3 at batch 2048, scaled linearly to batch 4
    assert abs(steps[1]["train/lr"] - 4e-3 * 4 / 2048) < 1e-12
    assert set(metrics) >= {"top1", "top5", "loss"}
    ckpt = load_checkpoint(run / "checkpoints" / "step_00000002.pt")
    state = next(iter(ckpt["optimizer"]["state"].values()))
    assert set(state) == {"step", "exp_avg", "exp_avg_sq"} and state["step"] == 2  # vitlab's Lamb
