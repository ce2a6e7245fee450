"""The run behind group 8 of ``benchmarks/ssl_recipe.md`` (``benchmarks/ssl_recipe_long.md``): the
small-budget recipe at patch 7 for 1100 steps of 64 images, with four online k-NN evaluations, changed
by each variant's overrides (e.g. ``task.centering=softmax``):

    vitlab train experiments/dinov3_recipe_ablation_long.py [overrides]
"""

from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, set_patch, task, train  # noqa: F401

set_patch(7, local_crops_size=14)  # a 4x4 grid; local crops 2x2
set_budget(1100, evals=4)
