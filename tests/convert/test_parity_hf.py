"""vitlab runs transformers' DINOv3ViTModel exactly: CLS, register and patch tokens after the final
norm agree to 1e-4 (fp32, eval mode), at square and rectangular sizes, with 0 and 4 registers,
MLP and gated FFN; and, block by block, vitlab's tokens are DINOv3's up to the layout permutation."""

import pytest
import torch

from tests.convert.helpers import hf_model, max_diffs, split_dinov3_tokens
from vitlab.convert import dinov3_from_hf

pytest.importorskip("transformers")

TOL = 1e-4

CASES = {
    "mlp-4reg": dict(layers=3, registers=4),
    "mlp-0reg": dict(layers=2, registers=0),
    "gated-4reg": dict(layers=2, registers=4, gated=True, intermediate=512),
    "gated-0reg-kbias": dict(layers=2, registers=0, gated=True, key_bias=True, query_bias=False),
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
