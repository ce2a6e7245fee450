"""The ablations behind ``configs/recipes/dinov3_small_budget.py`` (``benchmarks/ssl_recipe.md``): every
one-change variant of the recipe (``configs/recipes/dinov3_small_budget_variants.py``) for 200 steps of 64
images, scored by the run's own online k-NN monitor on the validation split carved from the training set
(k = 20 fixed, T = 0.07: no k is chosen; the test set is never looked at) at step 0 (its random init) and
at the end, with the DINO loss and its target's entropy against ln K (last tenth of the steps), the step
time and the run's wall time; nothing is evaluated again.

    vitlab sweep experiments/ablate_ssl_recipe.py            # every variant, seed 0
    vitlab sweep experiments/ablate_ssl_recipe.py --seeds 3  # mean ± std over seeds 0, 1, 2
"""

from omegaconf import OmegaConf

from configs.recipes.dinov3_small_budget_variants import sweep
from experiments.dinov3_recipe_ablation import data, model, optim, task, train  # noqa: F401
from vitlab.config import EvalConfig

eval = OmegaConf.structured(EvalConfig(  # noqa: A001 (the section)
    ks=[20],  # the monitor benchmarks/ssl_recipe.md was measured with
    protocols=["monitor"],
    monitor_metrics=["val/knn_top1", "train/dino_loss", "train/collapse/target_entropy", "train/collapse/ln_k",
                     "perf/step_time_s"],
))
sweep.out = "runs/sweeps/ablate_ssl_recipe"
