"""DINOv3 (Siméoni et al. 2025) scaled to a budget of minutes on a CPU: the Fashion-MNIST hybrid,
multi-crop data, the DINOv3 task, optimiser and trainer settings, in one place.

Every number is DINOv3's (facebookresearch/dinov3 ``configs/ssl_default_config.yaml`` and
``train/vitl_im1k_lin834.yaml``) unless its comment says otherwise; each departure was chosen by a
measured ablation on the 2-core CPU, listed with its k-NN in ``benchmarks/ssl_recipe.md``. Every
step-dependent milestone (the lr warmup, the prototype freeze, Gram anchoring, the EMA momentum's start)
is a fraction of the run, resolved when the trainer knows its length, so ``train.max_steps=N`` anywhere
(file, command line, sweep grid) moves them all. An experiment imports this file and calls
``set_budget(steps)``, which sets the length and spaces the evaluations and checkpoints:

    from configs.recipes.dinov3_small_budget import data, model, optim, set_budget, task, train
    set_budget(1000)
"""

from configs.data.fashion_mnist_multicrop import data
from configs.models.hybrid_fmnist import model
from configs.optim.adamw import optim
from configs.train.default import train
from vitlab.config import L
from vitlab.engine import Schedule
from vitlab.ssl import DINOHead, GramConfig
from vitlab.tasks import DINOv3Task

# No LayerScale (DINOv3: 1e-5). With 1e-5 the untrained backbone's k-NN on the validation split was
# 7.0 (below chance) and the DINO loss sat at ln K for all 200 steps (the collapse watch fired);
# without it the untrained backbone gives 59.0 and the DINO loss leaves ln K (ssl_recipe.md).
model.layer_types.H.layer_scale_init = None
model.layer_types.R.layer_scale_init = None

# Prototypes: DINOv3 uses 65536 / 2048 / 256 and a plain prototype layer; a 128-wide backbone on 10
# classes of gray images learns faster with a smaller head and DINO v1's weight-normalised
# prototypes (cosine logits). 4096 prototypes were within the seed spread at 200 steps (ssl_recipe.md),
# so the cheaper head stays.
head = L(DINOHead)(out_dim=1024, hidden_features=512, bottleneck_dim=128, weight_norm=True)

task = L(DINOv3Task)(
    dino_head=head,
    ibot_head=head,  # DINOv3: separate heads of the same shape (separate_head: true)
    student_temp=0.1,
    # DINOv3 warms the teacher temperature 0.04 -> 0.07 over 30 of 100 epochs; a run of minutes is
    # the start of that warmup; at 0.07 the DINO loss stayed at ln K and the collapse watch fired (ssl_recipe.md).
    teacher_temp=L(Schedule)(base=0.04, kind="constant"),
    momentum=L(Schedule)(base=0.992, final=1.0, kind="cosine"),  # DINOv3: 0.992 -> 1.0 cosine
    # EMA momentum at most 1 - 8 / steps (cosine to 1): DINOv3's 0.992 for runs of >= 1000 steps; shorter runs
    # get a faster teacher, or it would still be half its initialisation at the end (the product of
    # 0.992 -> 1 over 200 steps is 0.45). At 200 steps 0.96 beat 0.992 by 2.4 k-NN points.
    ema_time_fraction=1 / 8,
    dino_weight=1.0,
    ibot_weight=1.0,
    koleo_weight=0.1,  # DINOv3; 0 did not beat random init, 0.3 was within the seed spread, 1.0 collapsed (ssl_recipe.md)
    gram_weight=1.0,  # DINOv3's gram.loss_weight; anchoring off was within the seed spread
    # DINOv3 anchors a long-trained teacher late in training: here the second half of the run, the
    # snapshot refreshed every quarter
    gram=GramConfig(start_fraction=0.5, load_fraction=0.5, update_fraction=0.25),
    # DINOv3 freezes the prototypes for the first 1 of 100 epochs; 5% here: at 1% of a few hundred
    # steps they would be frozen for a handful of steps only
    freeze_last_layer_fraction=0.05,
)

# 4x DINOv3's base lr (1e-3): at 200 steps 1e-3 / 2e-3 / 4e-3 / 8e-3 gave k-NN 62.4 / 66.0 / 68.1 / 67.2.
optim.lr = L(Schedule)(base=4e-3, final=1e-6, warmup_fraction=0.1, kind="cosine")  # DINOv3: min_lr 1e-6, warmup 10 of 100 epochs
optim.lr_scaling = "sqrt_wrt_1024"  # DINOv3: lr x 4 sqrt(B / 1024), = 1 at this recipe's batch of 64
optim.weight_decay = L(Schedule)(base=0.04, final=0.4, kind="cosine")  # DINOv3: 0.04 -> 0.4 cosine
optim.no_weight_decay = "dinov3"  # biases, norms, LayerScale only; tokens are decayed (DINOv3)
optim.patch_embed_lr_mult = 0.2  # DINOv3
optim.layer_decay = 0.9  # DINOv3

train.clip_grad = 3.0  # DINOv3
train.eval_at_start = True  # k-NN of the random-init teacher, for comparison
train.best_metric = "val/knn_top1"
train.log_every = 10


def set_budget(steps: int, *, evals: int = 1) -> None:
    """A run of ``steps`` optimizer steps with ``evals`` online k-NN evaluations after step 0 (1: only at
    the end) and five checkpoints. The milestones above follow the length by themselves."""
    train.max_steps = steps
    train.eval_every = steps // evals if evals > 1 else None  # None: only at the end
    train.checkpoint_every = max(steps // 5, 1)


def set_patch(size: int, local_crops_size: int) -> None:
    """Use patch ``size`` with local crops of ``local_crops_size`` px (a multiple of ``size``), and
    give iBOT's mask generator the global crops' grid, so the three settings stay consistent."""
    if local_crops_size % size:
        raise ValueError(f"local_crops_size={local_crops_size} is not a multiple of patch size {size}")
    grid = data.train_transform.global_crops_size // size
    model.patch_size = size
    data.train_transform.local_crops_size = local_crops_size
    data.collate.masker.mask_generator.grid_size = [grid, grid]
