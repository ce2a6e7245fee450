"""Why the scenes' DINO loss sits at ln K (``benchmarks/ssl_scenes.md``): every one-change variant of
``experiments/dinov3_scenes.py`` (``configs/recipes/dinov3_scenes_variants.py``), scored by the run's own
online k-NN monitor on the scene label (validation scenes; step 0 is the run's random init), with the DINO
loss, its target's entropy, the KL part and the global and local terms (last tenth of the steps).

    vitlab sweep experiments/ablate_dino_scenes.py             # every variant, seed 0
    vitlab sweep experiments/ablate_dino_scenes.py --seeds 2   # and seed 1
"""

from configs.recipes.dinov3_scenes_variants import sweep
from experiments.dinov3_scenes import data, eval, model, optim, task, train  # noqa: F401

eval.protocols = ["monitor"]
eval.monitor_metrics = ["val/knn_top1", "train/dino_loss", "train/collapse/target_entropy", "train/collapse/ln_k",
                        "train/dino/kl", "train/dino/global_crops", "train/dino/local_crops", "train/ibot_loss"]
sweep.out = "runs/sweeps/ablate_dino_scenes"
