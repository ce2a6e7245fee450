"""``dinov3_fmnist`` shortened to 550 steps with evaluations at 275 and 550: the protocol of the
ablation that tunes that preset (``benchmarks/ssl_recipe_long.md``, group 9). Its online k-NN reads
the validation split carved from the training set; the test set is never looked at.

    vitlab train experiments/dinov3_fmnist_ablation.py [overrides]
"""

from configs.recipes.dinov3_small_budget import set_budget
from experiments.dinov3_fmnist import data, model, optim, task, train  # noqa: F401

set_budget(550, evals=2)
