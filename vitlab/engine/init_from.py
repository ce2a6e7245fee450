"""Starting a run from weights (``train.init_from``): fine-tuning, continued pretraining, and retrofitting a
hybrid from an attention checkpoint.

A source is a vitlab checkpoint (a run's ``step_N.pt`` / ``best.pt``, or converted DINOv3 weights from
``vitlab convert``; ``train.init_weights`` picks its ``model`` (for a DINOv3 run, the EMA teacher) or its
``student``), or a plain state dict in vitlab's names (``.safetensors``, ``.pt``; ``train.init_prefix``
strips a prefix such as ``module.``). Every tensor of the network is then, by name:

- ``loaded``: the file has it with the same shape, and every module on its path has the same type in the
  file's architecture (when the file carries its config);
- ``interpolated``: a learned position embedding on another patch grid, resampled bicubically (as its
  forward does at another image size, and as timm and DINOv3 do);
- ``fresh``: the file lacks it, or a module on its path changed type (a new head, a swapped mixer: an
  ``"A"`` block of the file that is an ``"H"`` block now keeps its norms, FFN and LayerScale but starts its
  mixer fresh);
- and the file's tensors nobody took are ``ignored``.

A shape mismatch anywhere else is an error naming the key and both shapes, and a file of which nothing
loads is an error (another architecture). :class:`InitReport` prints the per-module table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from vitlab.config import instantiate
from vitlab.layers.pos_embed import LearnedPosEmbed, resample_grid
from vitlab.weights import is_sharded_checkpoint, load_state_dict_file, require_file, student_weights

__all__ = ["PretrainedWeights", "InitReport", "read_pretrained", "load_matching", "module_group",
           "student_weights"]

WHICH = ("model", "student")


@dataclass
class PretrainedWeights:
    """Tensors to start from: ``backbone`` (the network's names), ``extra`` (a vitlab checkpoint's other task
    state: heads, by their task names), and the source's ``model`` config when it has one."""

    path: str
    backbone: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    model_cfg: Any = None


@dataclass
class InitReport:
    """What :func:`load_matching` did with every tensor (keys in the target's names)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    interpolated: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # the file's names
    why_fresh: dict[str, str] = field(default_factory=dict)  # module group -> reason (a type change)
    param_names: set[str] = field(default_factory=set)  # the task's names of the parameters that were loaded

    def merge(self, other: InitReport, prefix: str) -> None:
        """Add ``other`` (a report on a submodule of the task called ``prefix``, e.g. a head) to this one."""
        for name in ("loaded", "interpolated", "fresh", "ignored"):
            getattr(self, name).extend(prefix + k for k in getattr(other, name))
        self.why_fresh |= {module_group(prefix + k): v for k, v in other.why_fresh.items()}
        self.param_names |= other.param_names

    def table(self) -> str:
        """One row per top-level module and per block (``patch_embed``, ``blocks.3``, ``head``), the parts
        that started fresh and why, and the totals."""
        rows: dict[str, list[int]] = {}
        notes: dict[str, list[str]] = {}
        for col, keys in enumerate((self.loaded, self.interpolated, self.fresh, self.ignored)):
            for key in keys:
                group = module_group(key)
                row = ".".join(group.split(".")[:2]) if group.startswith("blocks.") else group
                rows.setdefault(row, [0, 0, 0, 0])[col] += 1
                if col == 2:
                    part = group[len(row) + 1:] if group != row else group
                    why = self.why_fresh.get(group, "")
                    note = f"{part} ({why})" if why else part
                    if note not in notes.setdefault(row, []):
                        notes[row].append(note)
        width = max([len(g) for g in rows] + [6])
        lines = [f"[vitlab] train.init_from={self.path!r}:",
                 f"  {'module':<{width}}  loaded  interp  fresh  ignored"]
        for row, (a, b, c, d) in rows.items():
            note = f"  fresh: {'; '.join(notes[row])}" if notes.get(row) else ""
            lines.append(f"  {row:<{width}}  {a:>6}  {b:>6}  {c:>5}  {d:>7}{note}")
        lines.append(f"  {'total':<{width}}  {len(self.loaded):>6}  {len(self.interpolated):>6}  "
                     f"{len(self.fresh):>5}  {len(self.ignored):>7}  (tensors)")
        return "\n".join(lines)


def module_group(key: str) -> str:
    """The module a tensor is reported under: a block's child (``blocks.3.mixer.qkv.weight`` ->
    ``blocks.3.mixer``), else the top-level module (``patch_embed.proj.bias`` -> ``patch_embed``)."""
    parts = key.split(".")
    if parts[0] == "blocks" and len(parts) > 3:
        return ".".join(parts[:3])
    return parts[0]


def read_pretrained(path: str | Path, *, which: str = "model", prefix: str | None = None) -> PretrainedWeights:
    """The tensors of ``path`` (see the module docstring).

    Raises:
        FileNotFoundError: naming ``train.init_from`` and the path.
        ValueError: ``which`` unknown, ``student`` asked of a file that has none, or a sharded checkpoint
            directory (named, with how to consolidate it).
    """
    path = Path(path).expanduser()
    if is_sharded_checkpoint(path):
        require_file(path, "train.init_from")  # raises: names it and how to consolidate it
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from={str(path)!r}: no such file")
    if which not in WHICH:
        raise ValueError(f"train.init_weights={which!r}: must be one of {', '.join(WHICH)}")
    if path.suffix == ".safetensors":
        tensors, ckpt = load_state_dict_file(path), None
    else:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        tensors = ckpt.get("model") if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) else ckpt
        if not isinstance(ckpt, dict) or "config" not in ckpt:
            ckpt = None  # a plain state dict
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ValueError(f"train.init_from={str(path)!r} holds neither a vitlab checkpoint nor a state dict of tensors")
    extra: dict[str, torch.Tensor] = {}
    model_cfg = None
    if ckpt is not None:
        extra = dict(ckpt.get("task", {}))
        model_cfg = OmegaConf.create(ckpt["config"]).get("model")
        if which == "student":
            student = student_weights(extra)
            if not student:
                raise ValueError(f"train.init_weights='student': {str(path)!r} has no student (it is not a DINOv3 run's)")
            tensors = student
    elif which == "student":
        raise ValueError(f"train.init_weights='student' needs a vitlab checkpoint; {str(path)!r} is a plain state dict")
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    return PretrainedWeights(str(path), dict(tensors), extra, model_cfg)


def _source_types(model_cfg: Any) -> dict[str, type] | None:
    """Module path -> class of the file's architecture, built on the meta device (no memory, no init)."""
    if model_cfg is None:
        return None
    try:
        source = instantiate(model_cfg, device="meta")
    except Exception:  # noqa: BLE001 - an architecture vitlab cannot rebuild: compare names and shapes only
        return None
    return {name: type(module) for name, module in source.named_modules()}


def _changed_type(key: str, target_types: dict[str, type], source_types: dict[str, type] | None) -> str | None:
    """The first module on ``key``'s path whose class differs between the file and the network, as a reason."""
    if source_types is None:
        return None
    parts = key.split(".")[:-1]
    for i in range(1, len(parts) + 1):
        path = ".".join(parts[:i])
        if path in source_types and path in target_types and source_types[path] is not target_types[path]:
            return f"{path}: {source_types[path].__name__} in the file, {target_types[path].__name__} here"
    return None


def _resample_pos_embed(value: torch.Tensor, holder: nn.Module) -> torch.Tensor | None:
    """The file's ``[1, prefix + h*w, D]`` embedding (a square grid) on ``holder``'s grid; None where
    ``holder`` is no learned position embedding or the file's grid is not square."""
    if not isinstance(holder, LearnedPosEmbed):
        return None
    prefix, side = holder.num_prefix, math.isqrt(value.shape[1] - holder.num_prefix)
    if value.shape[2] != holder.pos_embed.shape[2] or side * side != value.shape[1] - prefix:
        return None
    grid = resample_grid(value[:, prefix:], (side, side), (holder.grid_h, holder.grid_w))
    return torch.cat([value[:, :prefix], grid], dim=1)


def load_matching(module: nn.Module, weights: PretrainedWeights | Mapping[str, torch.Tensor], *,
                  what: str = "", owner: str = "") -> InitReport:
    """Copy into ``module`` every tensor of ``weights`` that fits (see the module docstring).

    Args:
        module: the network (or a head) to load into.
        weights: what :func:`read_pretrained` read, or a plain state dict.
        what: the module's name in messages (``"student_dino_head."``).
        owner: ``module``'s name in its task (``"student."``), for ``InitReport.param_names``.

    Raises:
        ValueError: a shape mismatch (not a position embedding), naming the key and both shapes; or
            nothing at all loads (a file of another architecture).
    """
    if not isinstance(weights, PretrainedWeights):
        weights = PretrainedWeights(what or "state dict", dict(weights))
    given, target = weights.backbone, module.state_dict()
    target_types = {name: type(m) for name, m in module.named_modules()}
    source_types = _source_types(weights.model_cfg)
    report, new_state = InitReport(weights.path), {}
    for key, current in target.items():
        changed = _changed_type(key, target_types, source_types)
        if changed is not None:
            report.fresh.append(key)
            report.why_fresh[module_group(key)] = f"type changed: {changed}"
            continue
        if key not in given:
            report.fresh.append(key)
            continue
        value = given[key]
        if value.shape != current.shape:
            resampled = _resample_pos_embed(value, module.get_submodule(key.rsplit(".", 1)[0]) if "." in key else module)
            if resampled is None:
                raise ValueError(f"train.init_from={weights.path!r}: {what}{key} has shape {tuple(value.shape)} in the "
                                 f"file but {tuple(current.shape)} in the network")
            report.interpolated.append(key)
            value = resampled
        else:
            report.loaded.append(key)
        new_state[key] = value
    report.ignored = sorted(k for k in given if k not in target or k in report.fresh)
    if not new_state:
        raise ValueError(f"train.init_from={weights.path!r}: none of its {len(given)} tensors fits the network "
                         f"({what or 'model'}: {len(target)} tensors; the file's first keys: "
                         f"{', '.join(list(given)[:4])}): a file of another architecture?")
    with torch.no_grad():
        for key, value in new_state.items():
            target[key].copy_(value)
    params = {name for name, _ in module.named_parameters()}
    report.param_names = {owner + k for k in new_state if k in params}
    return report
