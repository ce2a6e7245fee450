"""DINOv3's ImageNet-1k pretraining recipe: data (multi-crop, iBOT masks), task, optimiser and trainer,
from facebookresearch/dinov3 ``dinov3/configs/train/vitl_im1k_lin834.yaml`` (written for ViT-L, which it
brings to 82.2 k-NN / 83.3 linear) on top of ``ssl_default_config.yaml``. Each number names its key in
those files. An experiment imports this with a backbone (``experiments/dinov3_vits16.py``).
"""

from configs.data.imagenet import MEAN, STD, data
from configs.optim.adamw import optim
from configs.train.default import train
from vitlab.config import L
from vitlab.engine import Schedule
from vitlab.ssl import DINOHead, MaskingGenerator, MultiCrop, collate_multicrop, sample_ibot_masks
from vitlab.tasks import DINOv3Task

EPOCH = 1250  # train.OFFICIAL_EPOCH_LENGTH: iterations per "epoch"
EPOCHS = 100  # optim.epochs
BATCH = 2048  # 64 per GPU x 32 GPUs (the recipe's header: total batch 2048)
PATCH = 16  # the backbone's patch size (ViT-*/16): sets the iBOT mask grid

data.train.root = "/data/imagenet/train"  # train.dataset_path: ImageNet:split=TRAIN
data.train_transform = L(MultiCrop)(
    global_crops_size=224,  # crops.global_crops_size
    local_crops_size=96,  # crops.local_crops_size
    local_crops_number=8,  # crops.local_crops_number
    global_crops_scale=[0.32, 1.0],  # crops.global_crops_scale
    local_crops_scale=[0.05, 0.32],  # crops.local_crops_scale
    mean=MEAN,  # crops.rgb_mean
    std=STD,  # crops.rgb_std
    blur_p=[0.0, 0.9, 0.5],  # what DINOv3's augmentation code applies (its wrapper inverts p; dinov3 issue 286)
    horizontal_flips=True,  # crops.horizontal_flips
)
data.collate = L(collate_multicrop)(
    masker=L(sample_ibot_masks)(
        mask_generator=L(MaskingGenerator)(grid_size=[224 // PATCH, 224 // PATCH], max_num_patches=(224 // PATCH) ** 2 // 2),
        mask_probability=0.5,  # ibot.mask_sample_probability
        mask_ratio_min_max=[0.1, 0.5],  # ibot.mask_ratio_min_max
        _partial_=True,
    ),
    _partial_=True,
)
data.batch_size = BATCH
data.num_workers = None  # DINOv3's train.num_workers is 10; here one per CPU of the rank but one (launch.cpus_per_task - 1)

task = L(DINOv3Task)(
    dino_head=L(DINOHead)(out_dim=65536, hidden_features=2048, bottleneck_dim=256, nlayers=3),  # dino.head_*
    ibot_head=L(DINOHead)(out_dim=65536, hidden_features=2048, bottleneck_dim=256, nlayers=3),  # ibot.head_* (separate_head)
    student_temp=0.1,  # DINOLoss student temperature
    teacher_temp=L(Schedule)(base=0.07, warmup_start=0.04, warmup_steps=30 * EPOCH, kind="constant"),  # teacher.*teacher_temp*
    momentum=L(Schedule)(base=0.992, final=1.0, kind="cosine"),  # teacher.momentum_teacher -> final_momentum_teacher
    dino_weight=1.0,  # dino.loss_weight
    ibot_weight=1.0,  # ibot.loss_weight
    koleo_weight=0.1,  # dino.koleo_loss_weight
    centering="sinkhorn_knopp",  # train.centering
    gram=None,  # gram.use_loss: false in this recipe (Gram anchoring is the 7B refinement stage)
    freeze_last_layer_steps=1 * EPOCH,  # optim.freeze_last_layer_epochs
)

optim.optimizer.betas = [0.9, 0.999]  # optim.adamw_beta1/2
optim.lr = L(Schedule)(
    base=1e-3,  # optim.lr, scaled by optim.lr_scaling below
    final=1e-6,  # optim.min_lr
    warmup_steps=10 * EPOCH,  # optim.warmup_epochs
    kind="cosine",
)
optim.lr_scaling = "sqrt_wrt_1024"  # optim.scaling_rule: lr x 4 sqrt(2048 / 1024) = 5.66e-3
optim.weight_decay = L(Schedule)(base=0.04, final=0.4, kind="cosine")  # optim.weight_decay -> weight_decay_end
optim.no_weight_decay = "dinov3"  # train/param_groups.py: only biases, norms and LayerScale are exempt
optim.patch_embed_lr_mult = 0.2  # optim.patch_embed_lr_mult
optim.layer_decay = 0.9  # optim.layerwise_decay

train.max_steps = EPOCHS * EPOCH
train.clip_grad = 3.0  # optim.clip_grad
train.precision = "bf16"  # compute_precision.param_dtype
train.eval_every = 10 * EPOCH  # evaluation.eval_period_iterations = 12500
train.checkpoint_every = 3 * EPOCH  # checkpointing.period = 3750
train.keep_last = 3  # checkpointing.max_to_keep
train.best_metric = "val/knn_top1"
train.log_every = 20
