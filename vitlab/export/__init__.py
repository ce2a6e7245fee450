"""Getting a network out of vitlab: ``torch.export`` programs, ONNX files, and pretrained folders from
training checkpoints (``vitlab export``). Saving and loading pretrained folders is
:mod:`vitlab.hub` (``model.save_pretrained``, ``HybridViT.from_pretrained``)."""

from vitlab.export.checkpoint import export_checkpoint
from vitlab.export.program import export_program, export_settings
from vitlab.export.to_onnx import export_onnx

__all__ = ["export_program", "export_settings", "export_onnx", "export_checkpoint"]
