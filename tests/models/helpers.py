"""Tiny model configs shared by the model tests."""

from vitlab.config import L
from vitlab.layers import LayerNorm, Mlp, RotaryEmbedding2D, SwiGLU
from vitlab.mixers import GLA2D, Attention, GatedConv, Hyena2D, Mamba2D, NeighborhoodAttention
from vitlab.models import Block, HybridViT

DIM = 32


def block(kind: str, **mixer_kw):
    if kind == "A":
        mixer = L(Attention)(num_heads=2, **mixer_kw)
    elif kind == "R":
        mixer = L(Attention)(num_heads=2, rope_layer=L(RotaryEmbedding2D)(base=100.0), **mixer_kw)
    elif kind == "H":
        mixer = L(Hyena2D)(order=2, filter_hidden=16, **mixer_kw)
    elif kind == "S":  # Mamba, Vision Mamba's bidirectional scan
        mixer = L(Mamba2D)(scan="bidirectional", d_state=4, **mixer_kw)
    elif kind == "V":  # Mamba, VMamba's cross scan (four directions)
        mixer = L(Mamba2D)(scan="cross", d_state=4, **mixer_kw)
    elif kind == "L":  # ViG's bidirectional gated linear attention
        mixer = L(GLA2D)(num_heads=2, chunk_size=8, **mixer_kw)
    elif kind == "N":  # neighborhood attention with RoPE, a 3x3 window (local on the tests' 4x4 grid)
        mixer = L(NeighborhoodAttention)(num_heads=2, window=3, rope_layer=L(RotaryEmbedding2D)(base=100.0), **mixer_kw)
    elif kind == "C":  # MambaOut's gated depthwise convolution
        mixer = L(GatedConv)(kernel_size=3, **mixer_kw)
    elif kind == "G":  # RoPE attention with a gated FFN and LayerScale
        return L(Block)(mixer_layer=L(Attention)(num_heads=2, rope_layer=L(RotaryEmbedding2D)(base=100.0), qk_norm_layer=L(LayerNorm)()),
                        ffn_layer=L(SwiGLU)(ratio=2.0), norm_layer=L(LayerNorm)(), layer_scale_init=0.1)
    else:
        raise ValueError(kind)
    return L(Block)(mixer_layer=mixer, ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)())


def tiny(pattern: str = "HRA", **kw):
    args = dict(in_channels=3, num_classes=5, dim=DIM, num_blocks=len(pattern), patch_size=4, image_size=16,
                num_registers=2, norm_layer=L(LayerNorm)(), readout="cls", layer_pattern=pattern)
    args.update(kw)
    if "layer_types" not in args:
        args["layer_types"] = {c: block(c) for c in set(args["layer_pattern"]) if c in "ARHGSVLNC"}
    return L(HybridViT)(**args)


def perturbed(pattern: str = "HRA", seed: int = 0, **kw):
    """A tiny model in eval mode with every tensor moved away from its init (Hyena's skip of ones, zero
    biases), so that a lost or misplaced tensor changes the output."""
    import torch

    from vitlab.config import instantiate

    torch.manual_seed(seed)
    model = instantiate(tiny(pattern, **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def assert_same_forward_backward(model, reference, x, rtol=1e-4, atol=1e-5):
    """``model`` (e.g. compiled) gives ``reference``'s outputs on ``x`` and, for the loss
    ``sum(out ** 2)``, its parameter gradients."""
    import torch

    out, ref = model(x), reference(x)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol, msg=name)
