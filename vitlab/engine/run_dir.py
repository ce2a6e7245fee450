"""The run directory: ``train.output_dir`` or ``runs/<experiment>/<timestamp>``, with the resolved config."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vitlab.config import save_config
from vitlab.engine import distributed
from vitlab.engine.distributed import DistInfo

__all__ = ["prepare_run_dir"]


def prepare_run_dir(cfg: DictConfig, experiment: str, info: DistInfo) -> Path:
    """Resolve interpolations, choose the folder (rank 0's timestamp on all ranks), save ``config.yaml``.

    ``train.output_dir`` is written back into ``cfg`` so the saved config names its own folder.
    """
    OmegaConf.resolve(cfg)
    out = cfg.train.output_dir
    if not out:
        stamp = distributed.broadcast_object(time.strftime("%Y%m%d-%H%M%S"))
        out = f"runs/{experiment}/{stamp}"
        cfg.train.output_dir = out
    run_dir = Path(out)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    distributed.barrier()
    return run_dir
