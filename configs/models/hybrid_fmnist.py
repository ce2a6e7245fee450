"""The Fashion-MNIST hybrid: ``"HR" * 2`` (Hyena 2D + 2D-RoPE attention), width 128, patch 4 on
28 px (a 7x7 grid), 4 registers. The DINOv3 quickstart, ``dinov3_fmnist`` and the registers x readouts
ablation pretrain it; edit a copy for other shapes.
"""

from configs.models.hybrid_small_p16 import model

model.num_classes = 0  # pretraining: forward returns the readout embedding
model.in_channels = 1  # Fashion-MNIST is gray
model.mask_token = True  # iBOT masks patches
model.image_size = 28
model.patch_size = 4
model.dim = 128
model.num_blocks = 4
model.layer_pattern = "HR" * 2
model.layer_types.R.mixer_layer.num_heads = 4  # head dim 32
model.layer_types.H.mixer_layer.filter_hidden = 32
model.num_registers = 4  # Darcet et al. 2024 use 4
model.max_drop_path_rate = 0.0  # a 4-block model pretrained for minutes does not overfit
