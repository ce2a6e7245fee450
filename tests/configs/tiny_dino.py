"""The DINOv3 quickstart shrunk to seconds: for end-to-end tests of train, eval and sweep."""

from experiments.dinov3_quickstart import data, model, optim, task, train  # noqa: F401
from omegaconf import OmegaConf
from vitlab.config import EvalConfig
from vitlab.ssl import GramConfig

model.dim = 32
model.num_blocks = 2
model.layer_pattern = "HR"
model.layer_types.R.mixer_layer.num_heads = 2
model.layer_types.H.mixer_layer.filter_hidden = 8
model.num_registers = 2
model.neck_compression_ratio = 4
task.dino_head.out_dim = 64
task.dino_head.hidden_features = 32
task.dino_head.bottleneck_dim = 16
task.ibot_head = task.dino_head
task.gram = GramConfig(start_step=2, load_step=2, update_every=2)
task.freeze_last_layer_fraction = None  # steps, for a 3-step run
task.ema_time_fraction = None  # the quickstart's momentum, not a 3-step run's
task.momentum.base = 1 - 8 / 280
task.freeze_last_layer_steps = 1
data.train.limit = 64
data.val.limit = 100
data.batch_size = 8
data.num_workers = 0
data.train_transform.local_crops_number = 2
optim.lr.warmup_fraction = None
optim.lr.warmup_steps = 1
train.max_steps = 3
train.log_every = 1
train.checkpoint_every = 2
eval = OmegaConf.structured(EvalConfig(val_size=16, monitor_bank=32, ks=[5, 10]))  # noqa: A001 (the section)
