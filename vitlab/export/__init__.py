"""Getting a network out of vitlab: pretrained folders from training checkpoints (``vitlab export``).
Saving and loading pretrained folders is :mod:`vitlab.hub` (``model.save_pretrained``,
``HybridViT.from_pretrained``)."""

from vitlab.export.checkpoint import export_checkpoint

__all__ = ["export_checkpoint"]
