"""The model card (``README.md``) of a pretrained folder: what the network is, what it costs, how it was
trained and how it scored, with the Hub's metadata header (Mitchell et al. 2019, "Model Cards for Model
Reporting"; the Hub reads the YAML front matter)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from vitlab.flops import format_report, per_image

__all__ = ["model_card"]


def model_card(model: nn.Module, config: Mapping[str, Any], *, training_config: Any = None,
               eval_results: Mapping[str, Any] | None = None, repo: str = "PATH_OR_REPO_ID") -> str:
    """Markdown describing ``model``.

    Args:
        model: a :class:`~vitlab.models.HybridViT` (any device, the meta device included).
        config: its LazyConfig as data (what ``config.json`` holds).
        training_config: the run's config (YAML text, ``DictConfig`` or dict), shown folded.
        eval_results: evaluation name -> result dict; top-level numbers become a table, the rest is folded.
        repo: the folder or repo id the usage snippet loads.
    """
    target = str(config["_target_"])
    name = target.rsplit(".", 1)[-1]
    task = "image-classification" if getattr(model, "num_classes", 0) else "image-feature-extraction"
    tags = ["vitlab", "vision", task]
    lines = ["---", "library_name: vitlab", "tags:", *[f"- {t}" for t in tags], "---", "",
             f"# {name} ({getattr(model, 'layer_pattern', '')})", "",
             f"A vitlab `{target}`: rebuilt from `config.json` by `vitlab.config.instantiate`, weights in "
             "`model.safetensors`.", "", "## Usage", "", "```python",
             f"from {target.rsplit('.', 1)[0]} import {name}", "",
             f'model = {name}.from_pretrained("{repo}")  # eval mode', "```", ""]
    lines += _architecture(model)
    if training_config is not None:
        if isinstance(training_config, DictConfig):
            training_config = OmegaConf.to_yaml(training_config, resolve=False)
        elif not isinstance(training_config, str):
            training_config = OmegaConf.to_yaml(OmegaConf.create(training_config))
        lines += ["## Training config", "", "<details><summary>the run's config (YAML)</summary>", "", "```yaml",
                  training_config.rstrip(), "```", "", "</details>", ""]
    if eval_results:
        lines += ["## Evaluation", ""]
        for title, result in eval_results.items():
            lines += _evaluation(title, result)
    return "\n".join(lines)


def _architecture(model: nn.Module) -> list[str]:
    """The table of shape, token layout, block types, parameters and FLOPs."""
    params = sum(p.numel() for p in model.parameters())
    pattern = getattr(model, "layer_pattern", "")
    kinds = {}
    for char, block in zip(pattern, getattr(model, "blocks", [])):
        mixer = getattr(block, "mixer", block)
        rope = " with 2D RoPE" if getattr(mixer, "rope", None) is not None else ""
        count = pattern.count(char)
        kinds.setdefault(char, f"`{char}`: {type(mixer).__name__}{rope} ({count} block{'s' * (count > 1)})")
    H, W = model.image_size
    rows = [
        ("layer pattern", f"`{pattern}`"), ("block types", "; ".join(kinds.values())),
        ("width", model.dim), ("depth", model.num_blocks), ("patch size", model.patch_size),
        ("image size", f"{H}x{W} (others divisible by the patch size work)"),
        ("class token", "yes" if model.num_cls else "no"), ("registers", model.num_registers),
        ("readout", model.readout.readout), ("classes", model.num_classes or "0 (returns the embedding)"),
        ("parameters", f"{params:,} ({params / 1e6:.2f} M)"),
        ("forward FLOPs per image", f"{model.flop_count() / 1e9:.4f} GFLOPs at {H}x{W}"),
    ]
    lines = ["## Architecture", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], "",
             "Per layer (`vitlab.flops`; 2 FLOPs per multiply-add, FFTs 5 N log2 N):", "", "```",
             format_report(per_image(model.flop_report()), params), "```", ""]
    return lines


def _evaluation(title: str, result: Any) -> list[str]:
    lines = [f"### {title}", ""]
    if isinstance(result, Mapping):
        numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            lines += ["| metric | value |", "|---|---|", *[f"| {k} | {v:.6g} |" for k, v in numbers.items()], ""]
    lines += ["<details><summary>full result (JSON)</summary>", "", "```json", json.dumps(result, indent=2),
              "```", "", "</details>", ""]
    return lines
