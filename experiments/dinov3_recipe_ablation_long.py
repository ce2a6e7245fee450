"""The run behind group 8 of ``benchmarks/ssl_recipe.md`` (``benchmarks/ssl_recipe_long.md``): the
small-budget recipe at patch 7 for 1100 steps of 64 images, with four online k-NN evaluations, changed
by each variant's overrides (e.g. ``task.centering=softmax``):

    vitlab train experiments/dinov3_recipe_ablation_long.py [overrides]
"""

from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, task, train  # noqa: F401

model.patch_size = 7
data.train_transform.local_crops_size = 14  # a 2x2 grid
data.collate.masker.mask_generator.grid_size = [4, 4]
set_budget(1100, evals=4)
