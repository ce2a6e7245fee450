"""Trainer settings; every run overrides a few (``train.max_steps=...``). The defaults, each with its
meaning, are :class:`vitlab.config.TrainConfig`'s."""

from omegaconf import OmegaConf

from vitlab.config import TrainConfig

train = OmegaConf.structured(TrainConfig())
