"""Sharing networks: pretrained folders (``model.safetensors`` + ``config.json`` + model card) that
``from_pretrained`` rebuilds, locally or from the Hugging Face Hub."""

from vitlab.hub.model_card import model_card
from vitlab.hub.pretrained import (ALLOWED_TARGETS, CONFIG_NAME, MODEL_CARD_NAME, WEIGHTS_NAME, PretrainedFileError,
                                   PretrainedMixin, read_config)

__all__ = ["PretrainedMixin", "PretrainedFileError", "read_config", "model_card", "ALLOWED_TARGETS", "CONFIG_NAME",
           "WEIGHTS_NAME", "MODEL_CARD_NAME"]
