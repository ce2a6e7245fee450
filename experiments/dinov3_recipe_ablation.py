"""The run behind every row of ``benchmarks/ssl_recipe.md``: the small-budget recipe for 200 steps of
64 images (the quickstart's length when the ablations ran), changed by each variant's overrides.
``experiments/ablate_ssl_recipe.py`` is its sweep over the recipe's one-change variants:

    vitlab sweep experiments/ablate_ssl_recipe.py
"""

from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, task, train  # noqa: F401

set_budget(200)
