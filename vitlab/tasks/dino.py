"""DINOv3 self-supervised pretraining (Siméoni et al. 2025) as a task on the vitlab trainer.

A student backbone with a DINO head (image level, on the readout embedding) and an iBOT head
(patch level, on masked patches) learns to match an EMA teacher: DINO cross-entropy over
multi-crop pairs with Sinkhorn-Knopp teacher centering, iBOT on block-masked global crops, KoLeo on
the student's global embeddings, and Gram anchoring of the student's patch similarities to a Gram
teacher (a periodically refreshed snapshot of the EMA teacher).

The readout is the backbone's own (``model.readout``): ``cls``, ``gap`` (a run that never relies on
CLS) or ``register_concat``; it is what the DINO head and KoLeo see. ``self.teacher`` is the EMA
teacher backbone, the one DINO evaluates; it is also the task's ``model`` (the contract of
:mod:`vitlab.tasks.task`), so checkpoints store it under ``model``.

Batches come from :class:`vitlab.ssl.MultiCrop` + :func:`vitlab.ssl.collate_multicrop` with iBOT
masks. Axis legend: B images, G=2 global crops, L local crops, K prototypes, N patches, M masked patches.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections import deque
from typing import Any, Callable, ClassVar

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake

from vitlab.config import build
from vitlab.config.milestones import fraction_of
from vitlab.engine.distributed import gather_objects
from vitlab.engine.init_from import InitReport, PretrainedWeights, load_matching
from vitlab.engine.schedules import as_schedule
from vitlab.eval import extract_features
from vitlab.eval.protocol import choose_knn, fixed_batch_tokens
from vitlab.ssl import (
    DINOHead,
    DINOLoss,
    GramConfig,
    GramTeacher,
    collapse_stats,
    ema_update,
    gram_loss,
    iBOTPatchLoss,
    koleo_loss,
    teacher_entropy,
)
from vitlab.tasks.task import Task

__all__ = ["DINOv3Task", "knn_monitor", "student_dino_ibot"]


class DINOv3Task(Task):
    """Student, EMA teacher, heads and losses of DINOv3.

    Args:
        model: backbone config (``num_classes=0``, ``mask_token=True``), injected by the trainer.
        dino_head, ibot_head: head configs or factories (get ``in_dim``); default :class:`DINOHead`
            with DINOv3's sizes.
        student_temp: student softmax temperature (DINOv3: 0.1).
        teacher_temp: teacher temperature schedule (DINOv3: 0.04 -> 0.07 warmup over 30 epochs).
        momentum: EMA momentum schedule (DINOv3: 0.992 -> 1.0 cosine).
        dino_weight, ibot_weight, koleo_weight, gram_weight: loss weights (numbers or schedules;
            DINOv3: 1.0, 1.0, 0.1, 2.0). ``gram_weight`` applies only when ``gram`` is set, from its
            ``start_step`` on; without ``gram`` there is no Gram loss, whatever the weight.
        centering: ``sinkhorn_knopp`` (DINOv3) or ``softmax`` (DINO's EMA center).
        gram: ``None`` (off) or a :class:`GramConfig` (a typed config node, or a dict of its fields):
            ``start_step`` (first step that adds the Gram loss) and the :class:`GramTeacher` schedule,
            in steps or as fractions of the run.
        freeze_last_layer_steps: steps during which the prototype layers (``last_layer``) of both heads
            get no update (DINOv3's ``freeze_last_layer_epochs``).
        freeze_last_layer_fraction: the same as a fraction of the run, in its place.
        ema_time_fraction: caps the EMA's time constant ``1 / (1 - momentum)`` at this fraction of the
            run: the momentum schedule starts at ``min(momentum.base, 1 - 1 / (fraction * total_steps))``,
            0 at the least (a run shorter than ``1 / fraction`` steps copies the student; None: as given). A run of a few hundred steps at DINOv3's 0.992 would end with a teacher
            still half its initialisation.
        collapse_window: steps of DINO loss and target entropy the collapse watch looks at.
        collapse_after: first step at which it may warn (every run starts with the loss at ln K).
    """

    CONFIG_ARGS: ClassVar[tuple[str, ...]] = ("model", "dino_head", "ibot_head")

    def __init__(self, *, model: Any, dino_head: Any = None, ibot_head: Any = None, student_temp: float = 0.1,
                 teacher_temp: Any = 0.07, momentum: Any = 0.992, dino_weight: Any = 1.0, ibot_weight: Any = 1.0,
                 koleo_weight: Any = 0.1, gram_weight: Any = 2.0, centering: str = "sinkhorn_knopp",
                 gram: GramConfig | None = None, freeze_last_layer_steps: int = 0,
                 freeze_last_layer_fraction: float | None = None, ema_time_fraction: float | None = None,
                 collapse_window: int = 50, collapse_after: int = 100):
        super().__init__()
        self.student = build(model)
        if getattr(self.student, "num_classes", 0):
            raise ValueError(f"DINOv3 pretrains a backbone: set model.num_classes=0 (got {self.student.num_classes})")
        if getattr(self.student, "mask_token", None) is None:
            raise ValueError("DINOv3's iBOT loss needs a mask token: set model.mask_token=True")
        embed_dim = self.student.readout.out_dim
        dino_head = dino_head if dino_head is not None else DINOHead
        ibot_head = ibot_head if ibot_head is not None else DINOHead
        self.student_dino_head = build(dino_head, in_dim=embed_dim)
        self.student_ibot_head = build(ibot_head, in_dim=self.student.dim)
        # The teacher starts as an exact copy and then only follows the student's EMA.
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.teacher_dino_head = copy.deepcopy(self.student_dino_head).requires_grad_(False)
        self.teacher_ibot_head = copy.deepcopy(self.student_ibot_head).requires_grad_(False)
        self.teachers = (self.teacher, self.teacher_dino_head, self.teacher_ibot_head)
        self.train()  # puts the teachers in eval mode (see train())
        k_dino = self.student_dino_head.last_layer.out_features
        k_ibot = self.student_ibot_head.last_layer.out_features
        kernels = getattr(self.student, "kernels", None)  # the backbone's choice (model.kernels) reaches the losses
        self.dino_loss = DINOLoss(k_dino, student_temp=student_temp, centering=centering, kernels=kernels)
        self.ibot_loss = iBOTPatchLoss(k_ibot, student_temp=student_temp, centering=centering, kernels=kernels)
        self.gram_start, self.gram_teacher, self.gram_config = None, None, None
        if gram is not None:  # its snapshot schedule is set by setup(), when the run's length is known
            self.gram_config = gram if isinstance(gram, GramConfig) else GramConfig(**gram)
            self.gram_teacher = GramTeacher.from_teacher(self.teacher)
        self.specs = {"teacher_temp": teacher_temp, "momentum": momentum, "dino_weight": dino_weight,
                      "ibot_weight": ibot_weight, "koleo_weight": koleo_weight, "gram_weight": gram_weight}
        self.schedules: dict[str, Callable[[int], float]] = {}
        self.now: dict[str, float] = {}  # every schedule's value at this step, set by before_step
        # The same values as float32 0-dim tensors on the device, what training_step reads: a compiled
        # step takes them as graph inputs, where a Python float would be a constant of the graph and
        # recompile it at every step of a warmup.
        self.step_values: dict[str, torch.Tensor] = {}
        if freeze_last_layer_fraction is not None and freeze_last_layer_steps:
            raise ValueError(f"task.freeze_last_layer_steps={freeze_last_layer_steps} and task.freeze_last_layer_fraction="
                             f"{freeze_last_layer_fraction}: set one of them (to give steps, also set the fraction to null)")
        self.freeze_last_layer_steps, self.freeze_last_layer_fraction = freeze_last_layer_steps, freeze_last_layer_fraction
        self.ema_time_fraction = ema_time_fraction
        self.recent_dino = deque(maxlen=collapse_window)  # the DINO loss and its target's entropy, per step
        self.recent_target = deque(maxlen=collapse_window)
        self.collapse_after = collapse_after
        self.step = 0
        self.gram_active = False
        self._warned_collapse = False

    @property
    def model(self) -> nn.Module:
        """The task's network in the trainer's contract (:mod:`vitlab.tasks.task`): the EMA teacher, which
        DINO evaluates and checkpoints store under ``model``, in the layout they always had."""
        return self.teacher

    def load_pretrained(self, weights: PretrainedWeights) -> InitReport:
        """Continued pretraining: the backbone weights into the student, then the teacher (and the Gram
        teacher) as its exact copies; each head loads where the file has it with the same shapes (a vitlab
        DINOv3 checkpoint) and starts fresh otherwise (released weights carry no heads)."""
        report = load_matching(self.student, weights, owner="student.")
        backbone = self.student.state_dict()
        self.teacher.load_state_dict(backbone)
        if self.gram_teacher is not None:
            self.gram_teacher.module.load_state_dict(backbone)
        for name in ("student_dino_head", "student_ibot_head", "teacher_dino_head", "teacher_ibot_head"):
            head = getattr(self, name)
            state = {k[len(name) + 1:]: v for k, v in weights.extra.items() if k.startswith(name + ".")}
            part, why = InitReport(weights.path, fresh=list(head.state_dict()), ignored=sorted(state)), None
            if state:
                try:
                    part = load_matching(head, PretrainedWeights(weights.path, state), what=f"{name}.", owner=f"{name}.")
                except ValueError as exc:  # another number of prototypes, another width: a fresh head
                    why = str(exc).split(": ", 1)[-1]
            report.merge(part, f"{name}.")
            if why:
                report.why_fresh[name] = why
        return report

    def train(self, mode: bool = True) -> DINOv3Task:
        """As DINOv3's ``SSLMetaArch.train``: the EMA teacher and its heads always run in eval mode,
        so stochastic depth (and any dropout) never reaches the targets."""
        super().train(mode)
        for teacher in getattr(self, "teachers", ()):
            teacher.eval()
        return self

    # ----------------------------------------------------------------- trainer hooks
    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.student, "dino_head": self.student_dino_head, "ibot_head": self.student_ibot_head}

    def setup(self, *, total_steps: int) -> None:
        """Every schedule and milestone for a run of ``total_steps``: fractions become steps here."""
        self.schedules = {name: as_schedule(spec, total_steps) for name, spec in self.specs.items()}
        if self.ema_time_fraction is not None:
            if not 0 < self.ema_time_fraction <= 1:
                raise ValueError(f"task.ema_time_fraction={self.ema_time_fraction} must be in (0, 1]")
            momentum = self.schedules["momentum"] = copy.copy(self.schedules["momentum"])
            momentum.base = min(momentum.base, max(0.0, 1.0 - 1.0 / (self.ema_time_fraction * total_steps)))
        if self.freeze_last_layer_fraction is not None:
            self.freeze_last_layer_steps = fraction_of(self.freeze_last_layer_fraction, total_steps,
                                                       "task.freeze_last_layer_fraction")
        if self.gram_config is not None:
            gram = dataclasses.asdict(self.gram_config.resolved(total_steps))
            self.gram_start = gram.pop("start_step")
            for name in ("start_fraction", "load_fraction", "update_fraction"):
                gram.pop(name)
            for name, value in gram.items():  # the GramTeacher's snapshot schedule
                setattr(self.gram_teacher, name, value)
        # schedules are monotone between their breakpoints: a dense probe finds any out-of-range value
        probe = sorted({0, total_steps - 1, *range(0, total_steps, max(1, total_steps // 1000))})
        checks = {"teacher_temp": (lambda v: v > 0, "> 0"), "momentum": (lambda v: 0 <= v <= 1, "in [0, 1]")}
        for name, (ok, rule) in checks.items():
            bad = next((step for step in probe if not ok(self.schedules[name](step))), None)
            if bad is not None:
                raise ValueError(f"task.{name} is {self.schedules[name](bad)} at step {bad} but must be {rule} "
                                 "(a schedule with warmup_steps starts at warmup_start, 0 by default)")

    def before_step(self, step: int) -> dict[str, float]:
        self.step = step
        # A bool, not the step, for training_step: compiled, it guards on what it reads (recompiles once).
        self.gram_active = self.gram_teacher is not None and step >= self.gram_start
        self.now = {name: float(s(step)) for name, s in self.schedules.items()}
        values = torch.tensor(list(self.now.values()), dtype=torch.float32,
                              device=next(self.student.parameters()).device)  # one host-to-device copy
        self.step_values = dict(zip(self.now, values.unbind()))
        if self.gram_teacher is not None:
            self.gram_teacher.maybe_refresh(step, self.teacher)
        return dict(self.now)

    def before_optimizer_step(self, step: int) -> None:
        # DINOv3 keeps every prototype layer (``last_layer`` of the DINO and of the iBOT head) still
        # for the first steps. DINOv3 sets their lr to 0; dropping the gradient is the same for the
        # weights, and also keeps AdamW's moments from accumulating the frozen steps' gradients.
        if step < self.freeze_last_layer_steps:
            for head in (self.student_dino_head, self.student_ibot_head):
                for p in head.last_layer.parameters():
                    p.grad = None

    @torch.no_grad()
    def after_optimizer_step(self, step: int) -> None:
        m = self.now["momentum"]
        ema_update(self.teacher, self.student, m)
        ema_update(self.teacher_dino_head, self.student_dino_head, m)
        ema_update(self.teacher_ibot_head, self.student_ibot_head, m)

    # ----------------------------------------------------------------- the step
    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        globals_ = batch["global_crops"]  # [G*B, C, H, W], crop-major
        masks = batch.get("masks")  # [G*B, N] bool
        # The masked patches by index: M is fixed by the batch shape (see sample_ibot_masks), so a
        # compiled step keeps one graph, where a boolean index would break it at a data-dependent shape.
        masked = batch.get("mask_indices")  # [M], flat into G*B*N
        if masks is not None and masked is None:
            raise KeyError("the batch has 'masks' but no 'mask_indices' (flat indices of its True entries, "
                           "as vitlab.ssl.mask_batch_entries returns them)")
        B = globals_.shape[0] // 2
        temp = self.step_values["teacher_temp"]  # a 0-dim tensor, as are the loss weights below

        t_patch_probs = None
        with torch.no_grad():
            t_feats = self.teacher.forward_features(globals_)
            t_logits = self.teacher_dino_head(self.teacher.readout(t_feats)).unflatten(0, (2, B))  # [G, B, K]
            t_probs = self.dino_loss.teacher_probs(t_logits, temp)
            if masked is not None:
                t_masked = t_feats["patches"].flatten(0, 2).index_select(0, masked)  # [M, D]
                t_patch_probs = self.ibot_loss.teacher_probs(self.teacher_ibot_head(t_masked), temp)  # [M, K]

        s_feats = self.student.forward_features(globals_, masks=masks)
        dino, ibot, s_embed, dino_terms = student_dino_ibot(self.student, (self.student_dino_head, self.student_ibot_head),
                                                (self.dino_loss, self.ibot_loss), s_feats, batch, t_probs,
                                                t_patch_probs)
        zero = dino.new_zeros(())
        koleo = sum(koleo_loss(e) for e in s_embed.float().chunk(2)) if B > 1 else zero  # per global crop
        gram = zero
        if self.gram_active:
            with torch.no_grad():
                g_patches = self.gram_teacher.module.forward_features(globals_)["patches"].flatten(1, 2)
            gram = gram_loss(s_feats["patches"].flatten(1, 2).float(), g_patches.float())
        w = self.step_values
        loss = (w["dino_weight"] * dino + w["ibot_weight"] * ibot + w["koleo_weight"] * koleo
                + (w["gram_weight"] * gram if self.gram_teacher is not None else 0.0))
        metrics = {"dino_loss": dino.detach(), "ibot_loss": ibot.detach(), "koleo_loss": koleo.detach(),
                   "gram_loss": gram.detach()} | dino_terms
        metrics |= self._collapse_watch(t_logits, t_probs, temp, dino.detach(), w["dino_weight"])
        return loss, metrics

    def train_flops(self, batch: dict[str, torch.Tensor]) -> int:
        """Backbone FLOPs of the step: the student's forward + backward on the global and local crops,
        the EMA teacher's forward on the global crops (and the Gram teacher's once it runs). The heads
        and losses are not counted (the DINO head is < 0.1% of a ViT-L/16's FLOPs)."""
        globals_, locals_ = batch["global_crops"], batch.get("local_crops")
        size = lambda t: tuple(t.shape[-2:])  # noqa: E731
        teachers = 1 + self.gram_active
        count = self.student.flop_count
        flops = len(globals_) * (count(inference=False, image_size=size(globals_))
                                 + teachers * count(inference=True, image_size=size(globals_)))
        if locals_ is not None:
            flops += len(locals_) * count(inference=False, image_size=size(locals_))
        return flops

    @torch.compiler.disable  # Python floats of this step's values: compiled, each step would recompile
    def _collapse_watch(self, t_logits: torch.Tensor, t_probs: torch.Tensor, temp: torch.Tensor,
                        dino: torch.Tensor, weight: torch.Tensor | float = 1.0) -> dict[str, torch.Tensor]:
        """The collapse watch (:func:`collapse_stats`) on the target the DINO loss uses (``t_probs``: the
        Sinkhorn-Knopp or centred teacher distribution), and beside it the entropy and largest prototype
        share of the teacher's own uncentred ``softmax(t_logits / temp)``. ``dino/kl`` is the loss less
        the target's entropy: the part the student can still reduce."""
        if is_fake(dino):  # a memory plan runs the step on shapes only (vitlab.memory): no values to watch
            return {}
        if float(weight) == 0:  # a frozen DINO loss (weight 0, Schedule(freeze_*)) trains nothing: nothing to judge
            return {}
        self.recent_dino.append(float(dino))
        self.recent_target.append(float(teacher_entropy(t_probs)))
        stats = collapse_stats(t_probs, self.recent_dino, t_probs.shape[-1], target_entropies=self.recent_target)
        own = torch.softmax(t_logits.float() / temp, dim=-1)
        own_share = float(own.reshape(-1, own.shape[-1]).mean(0).max())
        full_window = len(self.recent_dino) == self.recent_dino.maxlen
        collapsed = self.step >= self.collapse_after and (
            stats["dominant_prototype"] or (full_window and (stats["loss_at_ln_k"] or stats["target_at_ln_k"])))
        if collapsed and not self._warned_collapse:
            self._warned_collapse = True
            warnings.warn(
                f"DINO collapse at step {self.step}: loss {float(dino):.3f} and its target's entropy "
                f"{stats['entropy']:.3f} vs ln K {stats['ln_k']:.3f} (over the last {len(self.recent_dino)} steps), "
                f"largest prototype share of the target {stats['max_prototype_share']:.2f}; "
                "`vitlab doctor RUN_DIR` checks this run's likely causes",
                RuntimeWarning, stacklevel=2)
        as_t = lambda v: torch.tensor(float(v))  # noqa: E731
        return {"collapse/target_entropy": as_t(stats["entropy"]), "collapse/ln_k": as_t(stats["ln_k"]),
                "collapse/max_prototype_share": as_t(stats["max_prototype_share"]),
                "collapse/softmax_entropy": as_t(teacher_entropy(own)), "collapse/softmax_max_share": as_t(own_share),
                "collapse/dino_loss_over_ln_k": as_t(float(dino) / stats["ln_k"]),
                "dino/kl": as_t(float(dino) - stats["entropy"]),
                "collapse/collapsed": as_t(collapsed)}

    # ----------------------------------------------------------------- online k-NN monitor
    @torch.no_grad()
    def evaluate(self, make_loader: Callable[[str], Any], protocol: Any) -> dict[str, float]:
        """The online k-NN monitor (:func:`knn_monitor`) of the teacher backbone."""
        return knn_monitor(self.teacher, make_loader, protocol)


def student_dino_ibot(student: nn.Module, heads: tuple[nn.Module, nn.Module], losses: tuple[DINOLoss, iBOTPatchLoss],
                      s_feats: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], t_probs: torch.Tensor,
                      t_patch_probs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's side of DINO and iBOT: its DINO head on the readout of every crop (the global crops'
    ``s_feats``, then the local crops) against the teacher's ``t_probs`` ``[G, B, K]``, and its iBOT head
    on the masked patches (``batch["mask_indices"]``) against ``t_patch_probs`` ``[M, K]``.

    Returns:
        ``(dino, ibot, s_embed, terms)``: the two losses (iBOT zero without masks), the global crops'
        readout ``[G*B, E]`` (for KoLeo) and the DINO loss's terms apart, to log:
        ``dino/global_crops`` and ``dino/local_crops`` (:meth:`DINOLoss.forward`'s ``parts``).
    """
    B = batch["global_crops"].shape[0] // 2
    locals_, masked = batch.get("local_crops"), batch.get("mask_indices")
    s_embed = student.readout(s_feats)  # [G*B, E]
    s_logits = [heads[0](s_embed).unflatten(0, (2, B))]
    if locals_ is not None:
        s_local = student.readout(student.forward_features(locals_))
        s_logits.append(heads[0](s_local).unflatten(0, (-1, B)))
    dino, dino_terms = losses[0](torch.cat(s_logits), t_probs, parts=True)
    ibot = dino.new_zeros(())
    if masked is not None:  # M = 0 (no image masked) gives a zero loss through the empty sum
        s_masked = s_feats["patches"].flatten(0, 2).index_select(0, masked)  # [M, D]
        ibot = losses[1](heads[1](s_masked), t_patch_probs, batch["masks"], batch.get("masks_weight"))
    return dino, ibot, s_embed, {f"dino/{kind}_crops": v for kind, v in dino_terms.items()}


@torch.no_grad()
def knn_monitor(model: nn.Module, make_loader: Callable[[str], Any], protocol: Any) -> dict[str, float]:
    """Weighted k-NN top-1 of ``model``'s ``eval.readout`` on the protocol's validation split (``holdout``
    queries, ``monitor_bank`` bank; :mod:`vitlab.eval.protocol`), for each ``eval.ks``; ``knn_top1`` is the
    best of them; ``tokens/*`` are the register / token statistics of :mod:`vitlab.eval.tokens` on the
    first ``eval.token_images`` holdout images. The test set is never looked at."""
    feats = {}
    for split in ("monitor_bank", "holdout"):
        x, y = extract_features(model, make_loader(split), readout=protocol.readout)
        # Each rank embedded its shard; every rank scores the whole set.
        feats["bank" if split == "monitor_bank" else split] = tuple(torch.cat(gather_objects(t)) for t in (x, y))
    res = choose_knn(feats, protocol)
    tokens = fixed_batch_tokens(model, make_loader("holdout"), protocol, device=next(model.parameters()).device)
    return {f"knn_k{k}_top1": res[f"knn_val_k{k}_top1"] for k in sorted(protocol.ks)} | {
        "knn_top1": res["knn_val_top1"]} | {f"tokens/{k}": v for k, v in tokens.items()}
