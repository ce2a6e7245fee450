"""The quickstart's recipe run longer (at most 45 minutes on a 2-core CPU), with four online k-NN
evaluations along the way (compare with ``benchmarks/curves/dinov3_fmnist.csv``).

    vitlab train experiments/dinov3_fmnist.py
"""

from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, task, train  # noqa: F401

set_budget(1000, evals=4)
