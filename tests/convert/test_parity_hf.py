"""vitlab runs transformers' DINOv3ViTModel exactly: CLS, register and patch tokens after the final
norm agree to 1e-4 (fp32, eval mode), at square and rectangular sizes, with 0 and 4 registers,
MLP and gated FFN, with every ``hidden_act`` vitlab supports; and, block by block, vitlab's tokens
are DINOv3's up to the layout permutation."""

import pytest
import torch

from tests.convert.helpers import hf_model, max_diffs, split_dinov3_tokens
from vitlab.config import instantiate
from vitlab.convert import dinov3_from_hf
from vitlab.convert.dinov3_arch import ffn_act_config
from vitlab.convert.dinov3_hf import HF_ACTIVATIONS, hf_arch

pytest.importorskip("transformers")

TOL = 1e-4

CASES = {
    "mlp-4reg": dict(layers=3, registers=4),
    "mlp-0reg": dict(layers=2, registers=0),
    "gated-4reg": dict(layers=2, registers=4, gated=True, intermediate=512),
    "gated-0reg-kbias": dict(layers=2, registers=0, gated=True, key_bias=True, query_bias=False),
    # HF's default hidden_act is "gelu": use_gated_mlp=True alone is a GeGLU
    "geglu-4reg": dict(layers=2, registers=4, gated=True, intermediate=512, hidden_act="gelu"),
    "gated-gelu_pytorch_tanh": dict(layers=2, registers=4, gated=True, hidden_act="gelu_pytorch_tanh"),
    "gated-gelu_new": dict(layers=2, registers=0, gated=True, hidden_act="gelu_new"),
    "gated-relu": dict(layers=2, registers=4, gated=True, hidden_act="relu"),
    "gated-swish": dict(layers=2, registers=4, gated=True, hidden_act="swish"),
    "mlp-gelu_pytorch_tanh": dict(layers=2, registers=4, hidden_act="gelu_pytorch_tanh"),
    "mlp-silu": dict(layers=2, registers=0, hidden_act="silu"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hf_parity(case):
    hf = hf_model(**CASES[case])
    ours = dinov3_from_hf(hf)
    assert not ours.training
    for size in [(64, 96), (96, 64), (48, 48)]:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            ref = split_dinov3_tokens(hf(x).last_hidden_state, hf.config.num_register_tokens)
            diffs = max_diffs(ours.forward_features(x), ref)
        assert max(diffs.values()) <= TOL, (size, diffs)


def test_hf_parity_224_and_backbone_state_dict():
    """224 x 224, and the model given as a state dict + config (keys as on the Hub: ``layer.N``)."""
    hf = hf_model(layers=4, registers=4)
    sd = {k.replace("model.layer.", "layer."): v for k, v in hf.state_dict().items()}
    ours = dinov3_from_hf(sd, hf.config.to_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ref = split_dinov3_tokens(hf(x).last_hidden_state, 4)
        diffs = max_diffs(ours.forward_features(x), ref)
    assert max(diffs.values()) <= TOL, diffs


def test_layout_permutation_block_by_block():
    """After every block, vitlab's ``[patches, CLS, registers]`` equals HF's ``[CLS, registers, patches]``
    permuted: attention is equivariant to the token order, and RoPE rotates the same (patch) tokens."""
    R, layers = 4, 3
    hf = hf_model(layers=layers, registers=R)
    ours = dinov3_from_hf(hf)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        hidden = hf(x, output_hidden_states=True).hidden_states  # embeddings, then each layer
        tokens, layout = ours.prepare_tokens(x)
        n = layout.num_patches
        to_dinov3 = torch.cat((torch.arange(n, n + 1 + R), torch.arange(n)))  # vitlab index of DINOv3's i-th token
        assert torch.equal(tokens[:, to_dinov3], hidden[0])
        for i in range(layers):
            tokens = ours.run_block(i, tokens, layout)
            assert (tokens[:, to_dinov3] - hidden[i + 1]).abs().max() <= TOL


def test_arch_must_agree_with_the_config():
    with pytest.raises(ValueError, match="embed_dim: arch 384 vs checkpoint 192"):
        dinov3_from_hf(hf_model(layers=1), arch="vits16")


def test_hf_default_gated_config_is_a_geglu():
    transformers = pytest.importorskip("transformers")
    config = transformers.DINOv3ViTConfig(use_gated_mlp=True, hidden_size=192, num_attention_heads=3)
    assert config.hidden_act == "gelu"  # transformers' default, which vitlab once refused
    arch = hf_arch(config)
    assert (arch.ffn_layer, arch.ffn_act) == ("swiglu", "gelu")
    ffn = dinov3_from_hf(hf_model(layers=1, gated=True, hidden_act="gelu")).blocks[0].ffn
    assert type(ffn.act) is torch.nn.GELU and ffn.act.approximate == "none"


@pytest.mark.parametrize("name", list(HF_ACTIVATIONS))
def test_every_supported_hidden_act_is_the_same_function(name):
    """The activation module vitlab builds for each supported ``hidden_act`` computes transformers' function."""
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 4001, dtype=torch.float64).float()
    ours = instantiate(ffn_act_config(HF_ACTIVATIONS[name]))
    torch.testing.assert_close(ours(x), ACT2FN[name](x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("act", ["quick_gelu", "relu2", "prelu", "laplace", "no_such_act"])
def test_unsupported_hidden_act_names_field_and_value(act):
    transformers = pytest.importorskip("transformers")
    config = transformers.DINOv3ViTConfig(use_gated_mlp=True, hidden_act=act).to_dict()
    with pytest.raises(ValueError, match=f"hidden_act='{act}'"):
        hf_arch(config)
