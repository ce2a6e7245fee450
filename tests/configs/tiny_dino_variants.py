"""``tiny_dino`` with two variants, scored by its online monitor: the end-to-end test of sweep variants."""

from omegaconf import OmegaConf

from tests.configs.tiny_dino import data, eval, model, optim, task, train  # noqa: F401

train.eval_at_start = True  # the monitor's random-init baseline
eval.protocols = ["monitor"]
eval.monitor_metrics = ["val/knn_top1", "train/dino_loss"]
sweep = OmegaConf.create(dict(variants={"base": [], "koleo_0": ["task.koleo_weight=0"]}))
