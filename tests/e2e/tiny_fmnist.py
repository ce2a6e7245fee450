"""The Fashion-MNIST experiment shrunk for end-to-end tests: a 2-block "HR" hybrid, 256 images."""

from experiments.classify_fmnist import data, model, optim, task, train

model.dim = 32
model.num_blocks = 2
model.layer_pattern = "HR"
model.layer_types.R.mixer_layer.num_heads = 2
model.layer_types.H.mixer_layer.filter_hidden = 16
model.max_drop_path_rate = 0.1  # exercises the training RNG in resume tests
task.mixup_alpha = 0.2  # so does mixup

data.train.limit = 256
data.val.limit = 64
data.batch_size = 32
data.eval_batch_size = 64
optim.lr.warmup_steps = 2

train.max_steps = 8
train.epochs = None
train.log_every = 1
train.eval_every = None
train.checkpoint_every = 4
