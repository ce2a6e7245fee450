"""A training checkpoint's network as a pretrained folder (``vitlab export CKPT DIR``).

The checkpoint's ``config`` YAML gives the network's LazyConfig (its ``model`` key) and the model card's
training config; the weights are its ``model`` (for a DINOv3 run, the EMA teacher: the network DINOv3
evaluates and releases) or its ``student`` (``task`` keys ``student.*``, as ``train.init_weights=student``
reads them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

from omegaconf import OmegaConf

from vitlab.config import instantiate
from vitlab.weights import load_checkpoint, load_model_state, student_weights

__all__ = ["export_checkpoint", "read_eval_results"]

WEIGHTS = ("model", "student")


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *,
                      weights: Literal["model", "student"] = "model",
                      eval_json: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``out_dir`` (``model.safetensors``, ``config.json``, ``README.md``) from a vitlab checkpoint.

    Args:
        checkpoint: a run's ``step_N.pt`` / ``best.pt`` or a converted checkpoint (``vitlab convert``).
        out_dir: the pretrained folder to write.
        weights: ``model`` (the teacher of a DINOv3 run) or ``student``.
        eval_json: ``vitlab eval`` result files, shown in the model card.

    Returns:
        The folder; ``HybridViT.from_pretrained(out_dir)`` loads it.

    Raises:
        FileNotFoundError: a missing file, named.
        ValueError: ``weights`` unknown, no student in the checkpoint, a config without ``model``, an
            unreadable JSON file; or tensors that do not fit the config (every offending key named).
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    eval_results = read_eval_results(eval_json)
    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt:
        raise ValueError(f"{str(checkpoint)!r} holds no 'config' YAML; cannot rebuild its network")
    cfg = OmegaConf.create(ckpt["config"])
    if "model" not in cfg:
        raise ValueError(f"{str(checkpoint)!r}: its config has no 'model'")
    state = ckpt["model"]
    if weights == "student":
        state = student_weights(ckpt.get("task", {}))
        if not state:
            raise ValueError(f"--weights student: {str(checkpoint)!r} has no student (it is not a DINOv3 run's)")
    model = instantiate(cfg.model)
    load_model_state(model, state, f"{str(checkpoint)!r} ({weights})")
    return model.save_pretrained(out_dir, config=cfg.model, training_config=ckpt["config"],
                                 eval_results=eval_results)


def read_eval_results(files: Sequence[str | os.PathLike]) -> dict:
    """File name -> parsed JSON of each file, or an error naming the file."""
    results = {}
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation JSON not found: {str(path)!r}")
        try:
            results[path.name] = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{str(path)!r} is not valid JSON ({exc})") from None
    return results
