"""The typed sections of a run config: ``train``, ``optim``, ``data``, ``eval`` and ``launch``.

Each is an omegaconf structured config of a dataclass below, so its keys are fixed: writing,
overriding or loading a misspelt key (``train.max_step``) fails at once, naming the key and the
closest existing ones, where a plain dict would be silently accepted. Every default is written here,
once; config files build a section with the values they change::

    train = OmegaConf.structured(TrainConfig(clip_grad=3.0))

Values that describe objects (datasets, transforms, schedules, the optimizer) are ``L(...)``
LazyConfigs inside, free-form as ever, and checked by their constructors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

__all__ = ["TrainConfig", "OptimConfig", "DataConfig", "EvalConfig", "LaunchConfig", "LAUNCHERS", "SECTIONS", "is_typed", "typed_sections",
           "eval_config"]


@dataclass(kw_only=True)
class TrainConfig:
    """Trainer settings (``vitlab.engine.Trainer``)."""

    seed: int = 0
    max_steps: Optional[int] = None  # optimizer steps; None: ``epochs`` x steps per epoch
    epochs: Optional[int] = 1
    output_dir: Optional[str] = None  # None: runs/<experiment>/<timestamp>
    resume: Optional[str] = None  # None | auto | path/to/step_N.pt | path/to/step_N (sharded)
    # weights to start from (vitlab.engine.init_from): a vitlab checkpoint, converted DINOv3 weights or a
    # state dict (.safetensors / .pt); step 0, a fresh optimizer. A resumed run ignores it.
    init_from: Optional[str] = None
    init_weights: str = "model"  # of a vitlab checkpoint: model (a DINOv3 run's EMA teacher) | student
    init_prefix: Optional[str] = None  # of a plain state dict: the prefix its keys carry (``module.``)
    init_freeze_steps: int = 0  # the loaded parameters get no update for this many steps (fresh heads warm up)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    strategy: str = "ddp"  # ddp | fsdp | none (only used under torchrun)
    # torch.compile: null (auto: blocks on CUDA, off on CPU) | false | true (the whole task forward) |
    # blocks (each block in place, fullgraph, as torchtitan); see vitlab.engine.compile
    compile: Optional[Any] = None
    # recompute activations in backward: none | full (every block) | k (every k-th block, as torchtitan);
    # see vitlab.engine.activation_checkpointing
    activation_checkpointing: Optional[Any] = "none"
    # the device's dense peak TFLOP/s for train/mfu; None: vitlab.engine.mfu's table (CUDA devices only)
    peak_tflops: Optional[float] = None
    grad_accum_steps: int = 1
    clip_grad: Optional[float] = 1.0  # max grad norm; None/0: no clipping (the norm is still logged)
    # global: one norm over every trained parameter; module: one per trainable module (DINOv3: backbone,
    # DINO head and iBOT head apart), each module's norm logged as train/grad_norm/<module>
    clip_grad_scope: str = "global"
    log_every: int = 20
    eval_every: Optional[int] = None  # steps; the run always evaluates at its end
    eval_at_start: bool = False  # also evaluate the untrained network (logged at step 0)
    checkpoint_every: int = 500
    keep_last: int = 2
    # full: one file, gathered and written by rank 0 | sharded: a directory, every rank writing its own shards
    # with torch.distributed.checkpoint (resumes on any world size; `vitlab convert --consolidate` makes a file)
    checkpoint_format: str = "full"
    async_checkpoint: bool = False  # sharded only: write in the background while training goes on
    best_metric: str = "val/top1"
    best_mode: str = "max"  # max | min
    max_nonfinite_steps: int = 5  # consecutive NaN/Inf steps before the run stops


@dataclass(kw_only=True)
class OptimConfig:
    """Optimizer, per-step lr / weight-decay schedules and parameter groups (``vitlab.engine.optim``)."""

    optimizer: Any = MISSING  # L(torch.optim.AdamW)(...): the parameter groups are injected
    lr: Any = MISSING  # a number (constant) or L(Schedule)(...); total_steps comes from the run
    weight_decay: Any = 0.0  # a number (constant) or L(Schedule)(...)
    layer_decay: float = 1.0  # 1.0 = off; fine-tuning uses ~0.65-0.75 (BEiT)
    patch_embed_lr_mult: float = 1.0  # DINOv3 uses 0.2
    # None: lr as written | sqrt_wrt_1024 (DINOv3) | linear_wrt_256 (Goyal et al.)
    lr_scaling: Optional[str] = None
    # timm: biases, 1-D params, tokens exempt | dinov3: bias/norm/gamma names only
    no_weight_decay: str = "timm"


@dataclass(kw_only=True)
class DataConfig:
    """Datasets (``L(...)`` configs that get ``transform=``), transforms and loader settings
    (``vitlab.engine.batches``)."""

    train: Any = MISSING
    val: Any = None  # evaluation queries; None: no evaluation
    train_transform: Any = None
    eval_transform: Any = None
    collate: Any = None  # e.g. multi-crop views + iBOT masks
    # global (all ranks, all accumulated micro-batches): the batch of one optimizer step
    batch_size: int = MISSING
    eval_batch_size: Optional[int] = None  # None: batch_size
    # loader worker processes per rank; None: 0, or inside a Slurm job its CPUs per task less the one
    # the training process uses (launch.cpus_per_task)
    num_workers: Optional[int] = None


@dataclass(kw_only=True)
class EvalConfig:
    """The frozen-feature protocol (``vitlab.eval.protocol``) of ``vitlab eval``, ``vitlab sweep`` and an SSL
    run's online k-NN monitor: hyperparameters are chosen on a validation split carved from
    ``data.train``; ``data.val`` (the test set) is scored once, with the chosen values."""

    readout: Optional[str] = None  # cls | gap | cls+gap | registers | register_concat | pixels; None: the model's own
    val_size: int = 10000  # validation images, drawn (seeded, fixed) from data.train; never in a bank
    split_seed: int = 0  # seed of that draw
    monitor_bank: Optional[int] = 10000  # the online monitor's bank: this many of the other training images
    ks: list[int] = field(default_factory=lambda: [10, 20, 50, 100])  # k-NN grid (DINO: 10, 20, 100, 200)
    temperature: float = 0.07  # k-NN vote temperature (DINO)
    # up to 1.0: on standardised features the dinov3_fmnist probe chose 0.1, the top of a grid that ended there
    probe_lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0])
    probe_weight_decays: list[float] = field(default_factory=lambda: [0.0, 1e-4, 1e-3])
    probe_epochs: int = 20
    token_images: int = 64  # the fixed batch (the first holdout images) of the register / token statistics
    outlier_factor: float = 4.0  # a high-norm token: norm above this x the layer's median patch norm
    # the segmentation probe (vitlab.eval.seg): DINOv3's linear head on the last block's (1) or last 4 blocks' patch tokens
    seg_layers: int = 1
    seg_val_size: int = 500  # validation images drawn from data.train (with split_seed) to choose the lr on
    # AdamW lrs, one head each; to 0.1: on 200 scenes a 24-step checkpoint chose 3e-2, the old grid's top
    seg_lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    seg_epochs: int = 10  # over the cached features of the other training images
    # what `vitlab sweep` scores per run: knn and linear (one `vitlab eval all`), seg (`vitlab eval seg`),
    # monitor (no evaluation: the run's own metrics.jsonl, the keys in monitor_metrics)
    protocols: list[str] = field(default_factory=lambda: ["knn", "linear"])
    # metrics.jsonl keys the monitor protocol tabulates: a val/* key's last value (its step-0 value, with
    # train.eval_at_start, is the random-init baseline); any other key's mean over the last tenth of its records
    monitor_metrics: list[str] = field(default_factory=lambda: ["val/knn_top1"])
    seg_data: Optional[str] = None  # data config file of `vitlab eval seg` (None: the run's own data, with masks)


LAUNCHERS = ("local", "slurm")


@dataclass(kw_only=True)
class LaunchConfig:
    """Where a run (or every run of a sweep) executes: this machine, or Slurm jobs submitted with submitit
    (``vitlab.slurm``). The Slurm fields map onto sbatch's flags; one task per GPU."""

    launcher: str = "local"  # local | slurm
    nodes: int = 1
    tasks_per_node: int = 1  # processes (ranks) per node: one per GPU
    gpus_per_node: int = 0
    cpus_per_task: Optional[int] = None  # None: the cluster's default; data loader workers follow it
    mem_gb: Optional[float] = None  # per node; None: the cluster's default
    partition: Optional[str] = None  # None: the cluster's default partition
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    time_min: int = 60  # wall-time limit of one job, in minutes; a run longer than that requeues itself
    signal_delay_s: int = 120  # Slurm signals the job this long before its time limit (sbatch --signal)
    max_requeues: int = 3  # how many times a preempted or timed-out job puts itself back in the queue
    array_parallelism: int = 64  # a sweep's training runs at once (the job array's %N)
    additional_parameters: dict[str, Any] = field(default_factory=dict)  # any other sbatch flag: {"exclusive": True}
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load, conda activate)
    folder: Optional[str] = None  # submitit's job files and logs; None: <run dir>/slurm (a sweep: <sweep>/slurm)
    job_id: Optional[str] = None  # written by vitlab inside a Slurm job (the resolved config records it)


SECTIONS: dict[str, type] = {"train": TrainConfig, "optim": OptimConfig, "data": DataConfig, "eval": EvalConfig,
                             "launch": LaunchConfig}


def is_typed(node: Any) -> bool:
    """True for a structured config node (its keys are those of a dataclass)."""
    return isinstance(node, DictConfig) and is_dataclass(OmegaConf.get_type(node))


def typed_sections(cfg: DictConfig) -> DictConfig:
    """Make ``cfg``'s ``train``, ``optim``, ``data``, ``eval`` and ``launch`` typed (in place) where they are plain mappings.

    A run config (one with ``model`` and ``train``) without ``eval`` gets the default protocol, so the
    config a run saves states how it was scored. A config read from YAML (a run's ``config.yaml``, a checkpoint's config) holds plain mappings;
    merging each into its dataclass makes it as strict as the config file that wrote it.

    Raises:
        omegaconf.errors.ConfigKeyError: a section has a key its dataclass lacks.
    """
    if "train" in cfg and "model" in cfg and "eval" not in cfg:  # a run config states the protocol it is scored with
        cfg["eval"] = OmegaConf.structured(EvalConfig)
    if "train" in cfg and "model" in cfg and "launch" not in cfg:  # and where it runs: `launch.launcher=slurm` works on any
        cfg["launch"] = OmegaConf.structured(LaunchConfig)
    for key, cls in SECTIONS.items():
        node = cfg._get_node(key) if key in cfg else None
        if isinstance(node, DictConfig) and not is_typed(node):
            cfg[key] = OmegaConf.merge(OmegaConf.structured(cls), node)
    return cfg


def eval_config(cfg: DictConfig) -> DictConfig:
    """``cfg.eval`` as a typed :class:`EvalConfig` (the defaults where the config has no ``eval``)."""
    node = cfg.get("eval") if isinstance(cfg, DictConfig) else None
    return node if is_typed(node) else OmegaConf.merge(OmegaConf.structured(EvalConfig), node or {})
