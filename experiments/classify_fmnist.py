"""A small "HRHR" hybrid (Hyena 2D + RoPE attention) trained on Fashion-MNIST from scratch.

Measured on a 2-core CPU: see the numbers in the docstring of the run report (``vitlab train
experiments/classify_fmnist.py``); the target is >= 85% test top-1 within 10 minutes.
"""

from configs.data.fashion_mnist import data
from configs.models.hybrid_small_p16 import model
from configs.optim.adamw import optim
from configs.train.default import train
from vitlab.config import L
from vitlab.tasks import ClassificationTask

model.in_channels = 1  # grayscale input, no channel repeat
model.num_classes = 10
model.image_size = 28
model.patch_size = 7  # 4x4 = 16 tokens: the cheapest grid that still gives the mixers 2D structure
model.hidden_dim = 128
model.num_blocks = 4
model.layer_pattern = "HRHR"
model.layer_types.R.mixer.num_heads = 4  # head dim 32
model.layer_types.H.mixer.filter_hidden = 32
model.num_registers = 0  # 16 tokens: registers help large grids (Darcet et al. 2024), not this one
model.max_drop_path_rate = 0.0  # a 4-block model trained for a few epochs does not overfit

task = L(ClassificationTask)(label_smoothing=0.1)  # DeiT's smoothing

data.batch_size = 128
optim.lr.base = 2e-3  # a small model with few steps tolerates a larger peak lr
optim.lr.warmup_steps = 200

train.epochs = 3  # 1404 steps of 128 images: fits the 10-minute budget on a shared 2-core CPU
train.eval_every = None  # test top-1 once, at the end
train.log_every = 50
train.checkpoint_every = 500
