"""timm's model interface on HybridViT (vitlab/models/timm_interface.py).

A plain-attention vitlab ViT-S/16 (configs/models/vit_small_p16.py) holding the weights of timm's
``vit_small_patch16_224`` answers ``forward_intermediates`` as timm's ViT does; hybrids with registers
and padding answer with the right shapes, never padding, and the values of ``get_intermediate_layers``
and ``run_block``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.convert.helpers import randomize_
from tests.models.helpers import DIM, tiny
from vitlab.config import L, instantiate, load_config
from vitlab.layers import LayerNorm

ROOT = Path(__file__).resolve().parents[2]
TOL = dict(rtol=1e-5, atol=1e-5)


def timm_vit_key(key: str) -> str:
    """timm ``VisionTransformer`` name -> vitlab name (the rest is the same)."""
    if key == "pos_embed":
        return "pos_embed.pos_embed"
    return key.replace(".attn.", ".mixer.").replace(".mlp.", ".ffn.")


@pytest.fixture(scope="module")
def vit_pair():
    """timm's ViT-S/16 with random weights, and vitlab's ViT-S/16 preset holding the same weights."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = randomize_(timm.create_model("vit_small_patch16_224", pretrained=False)).eval()
    ours = instantiate(load_config(ROOT / "configs/models/vit_small_p16.py").model).eval()
    ours.load_state_dict({timm_vit_key(k): v for k, v in ref.state_dict().items()}, strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), **TOL)  # the same network before any new method
    return ref, ours, x


def test_vit_small_preset_is_timm_vit_small():
    """Same architecture: class token, learned position embedding with a CLS slot, no registers."""
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_small_patch16_224", pretrained=False)
    ours = instantiate(load_config(ROOT / "configs/models/vit_small_p16.py").model, device="meta")
    assert ours.num_cls == 1 and ours.num_registers == 0 and ref.num_prefix_tokens == 1
    assert {timm_vit_key(k): tuple(v.shape) for k, v in ref.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert ours.blocks[0].norm1.eps == ref.blocks[0].norm1.eps and ours.norm.eps == ref.norm.eps


def assert_same(ours, ref):
    """Equal nested outputs: tensors, lists, tuples, dicts."""
    assert type(ours) is type(ref), (type(ours), type(ref))
    if isinstance(ref, torch.Tensor):
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, **TOL)
    elif isinstance(ref, dict):
        assert ours.keys() == ref.keys()
        for k in ref:
            assert_same(ours[k], ref[k])
    else:
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref):
            assert_same(a, b)


@pytest.mark.parametrize("indices", [None, 4, [0, 5, 11], [-1, 2, 7]], ids=str)
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("output_fmt", ["NCHW", "NLC"])
def test_forward_intermediates_equals_timm(vit_pair, indices, norm, output_fmt):
    ref, ours, x = vit_pair
    kw = dict(indices=indices, norm=norm, output_fmt=output_fmt)
    with torch.no_grad():
        assert_same(ours.forward_intermediates(x, **kw), ref.forward_intermediates(x, **kw))


OPTIONS = [dict(indices=3, intermediates_only=True), dict(indices=[1, -2], return_prefix_tokens=True),
           dict(indices=[1, 4], stop_early=True),
           dict(indices=2, return_prefix_tokens=True, intermediates_only=True, output_fmt="NLC"),
           dict(indices=[-5], stop_early=True, norm=True), dict(indices=[3, 1], output_dict=True),
           dict(indices=1, output_dict=True, return_prefix_tokens=True, intermediates_only=True)]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_forward_intermediates_options_equal_timm(vit_pair, options):
    ref, ours, x = vit_pair
    with torch.no_grad():
        assert_same(ours.forward_intermediates(x, **options), ref.forward_intermediates(x, **options))


def test_timm_feature_wrapper_on_a_vitlab_model(vit_pair):
    """timm's FeatureGetterNet (what ``features_only=True`` builds for a ViT) prunes and wraps ours as timm's."""
    pytest.importorskip("timm")
    from timm.models._features import FeatureGetterNet

    ref, ours, x = vit_pair
    with torch.no_grad():
        expected = ref.forward_intermediates(x, indices=[2, 5], intermediates_only=True)
    wrapped = FeatureGetterNet(_copy(ours), out_indices=[2, 5])
    assert len(wrapped.model.blocks) == 6 and isinstance(wrapped.model.norm, nn.Identity)
    assert wrapped.feature_info.channels() == [384, 384] and wrapped.feature_info.reduction() == [16, 16]
    with torch.no_grad():
        assert_same(wrapped(x), expected)


def _copy(model):
    import copy

    return copy.deepcopy(model)


# ---------------------------------------------------------------- hybrids: registers and padding
PATTERNS = ["HRA", "HHR", "AHG"]


def hybrid(pattern="HRA", **kw):
    torch.manual_seed(0)
    return instantiate(tiny(pattern, **kw)).eval()


def test_the_hybrid_used_here_has_padding():
    model = hybrid()
    layout = model.layout_for(4, 5)  # 16 x 20 images, patch 4
    assert layout.num_padding > 0 and any(model.block_needs_padding)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("norm", [False, True])
def test_hybrid_intermediates_shapes_and_values(pattern, norm):
    """NCHW and NLC patches, prefix tokens [CLS, registers] and the final [prefix, patches], none padded,
    equal to ``get_intermediate_layers`` and to ``run_block`` step by step."""
    model = hybrid(pattern)
    x = torch.randn(2, 3, 16, 20)
    B, h, w, R = 2, 4, 5, model.num_registers
    with torch.no_grad():
        final, nchw = model.forward_intermediates(x, norm=norm, return_prefix_tokens=True)
        nlc = model.forward_intermediates(x, norm=norm, output_fmt="NLC", intermediates_only=True)
        dino = model.get_intermediate_layers(x, n=len(model.blocks), reshape=True, return_class_token=True,
                                             return_extra_tokens=True, norm=norm)
        tokens, layout = model.prepare_tokens(x)
        steps = []
        for i in range(len(model.blocks)):
            tokens = model.run_block(i, tokens, layout)
            steps.append(model.apply_norm(tokens, layout) if norm else tokens)
        last = model.apply_norm(tokens, layout)
    n = h * w
    assert final.shape == (B, 1 + R + n, DIM)
    torch.testing.assert_close(final, torch.cat((last[:, n:], last[:, :n]), dim=1), rtol=0, atol=0)
    assert len(nchw) == len(nlc) == len(dino) == len(model.blocks)
    for (patches, prefix), flat, (d_patches, d_cls, d_regs), step in zip(nchw, nlc, dino, steps):
        assert patches.shape == (B, DIM, h, w) and flat.shape == (B, n, DIM) and prefix.shape == (B, 1 + R, DIM)
        torch.testing.assert_close(patches, d_patches, rtol=0, atol=0)
        torch.testing.assert_close(prefix, torch.cat((d_cls[:, None], d_regs), dim=1), rtol=0, atol=0)
        torch.testing.assert_close(flat, step[:, :n], rtol=0, atol=0)
        torch.testing.assert_close(patches.flatten(2).transpose(1, 2), step[:, :n], rtol=0, atol=0)


def test_padding_never_appears_in_outputs():
    """A padded block's output holds P more tokens; what comes out holds exactly N patches and K prefix tokens."""
    model = hybrid("HHH")
    x = torch.randn(1, 3, 16, 20)
    tokens, layout = model.prepare_tokens(x)
    with torch.no_grad():
        raw = model.blocks[0](model.block_tokens(0, tokens, layout), layout)
        assert raw.shape[1] == layout.num_padded_tokens > layout.num_tokens
        out = model.forward_intermediates(x, indices=[0], output_fmt="NLC", return_prefix_tokens=True,
                                          output_dict=True)
    (patches,), (prefix,) = out["image_intermediates"], out["image_intermediates_prefix"]
    assert patches.shape[1] == layout.num_patches and prefix.shape[1] == 1 + model.num_registers
    assert out["image_features"].shape[1] == layout.num_tokens
    torch.testing.assert_close(patches, raw[:, : layout.num_patches], rtol=0, atol=0)
    torch.testing.assert_close(prefix, raw[:, layout.num_patches : layout.num_tokens], rtol=0, atol=0)


def test_no_prefix_tokens_returns_plain_intermediates():
    """Without CLS and registers there is nothing to pair: return_prefix_tokens is ignored, as in timm."""
    model = hybrid("HR", class_token=False, num_registers=0, readout="gap")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x, return_prefix_tokens=True, output_fmt="NLC")
        out = model.forward_intermediates(x, return_prefix_tokens=True, output_dict=True)
    assert final.shape == (1, 16, DIM) and all(isinstance(t, torch.Tensor) and t.shape == (1, 16, DIM) for t in inter)
    assert "image_intermediates_prefix" not in out


def test_untied_cls_norm_applies_to_prefix_tokens():
    model = hybrid("RA", cls_norm_layer=L(LayerNorm)())
    with torch.no_grad():
        model.cls_norm.weight.fill_(3.0)  # differs from the patch norm, so a mix-up shows
        x = torch.randn(1, 3, 16, 16)
        final, ((patches, prefix),) = model.forward_intermediates(x, indices=[1], norm=True, return_prefix_tokens=True)
        feats = model.forward_features(x)
    torch.testing.assert_close(prefix[:, 0], feats["cls"], rtol=0, atol=0)
    torch.testing.assert_close(prefix[:, 1:], feats["registers"], rtol=0, atol=0)
    torch.testing.assert_close(patches, feats["patches"].permute(0, 3, 1, 2), rtol=0, atol=0)
    torch.testing.assert_close(final[:, 0], feats["cls"], rtol=0, atol=0)


@pytest.mark.parametrize("bad", [0, 4, [3], [-4], [], True], ids=repr)
def test_bad_indices_name_the_argument(bad):
    model = hybrid("HRA")
    with pytest.raises((ValueError, TypeError), match="indices"):
        model.forward_intermediates(torch.randn(1, 3, 16, 16), indices=bad)
    with pytest.raises(ValueError, match="output_fmt"):
        model.forward_intermediates(torch.randn(1, 3, 16, 16), output_fmt="NHWC")


# ---------------------------------------------------------------- pruning
@pytest.mark.parametrize("indices,kept", [([0, 2], 3), ([-3], 3), (2, 5), (1, 5)], ids=str)
def test_prune_then_forward_intermediates_gives_the_same_values(indices, kept):
    model = hybrid("HRAHG")
    x = torch.randn(2, 3, 16, 20)
    with torch.no_grad():
        before = model.forward_intermediates(x, indices=indices, intermediates_only=True, return_prefix_tokens=True)
    take = model.prune_intermediate_layers(indices, prune_norm=True)
    assert len(model.blocks) == model.num_blocks == len(model.checkpointed) == len(model.layer_pattern) == kept
    assert isinstance(model.norm, nn.Identity) and isinstance(model.head, nn.Identity) and model.num_classes == 0
    with torch.no_grad():
        after = model.forward_intermediates(x, indices=take, intermediates_only=True, return_prefix_tokens=True)
    assert_same(after, before)
    assert model.flop_count() > 0 and model(x).shape == (2, DIM)  # the per-block lists stayed in step


def test_prune_keeps_norm_and_head_when_asked():
    model = hybrid("HRAH")
    with torch.no_grad():
        x = torch.randn(1, 3, 16, 16)
        before = model.forward_intermediates(x, indices=[1], norm=True, intermediates_only=True)
        model.prune_intermediate_layers([1], prune_norm=False, prune_head=False)
        after = model.forward_intermediates(x, indices=[1], norm=True, intermediates_only=True)
    assert len(model.blocks) == 2 and isinstance(model.head, nn.Linear) and model.num_classes == 5
    assert_same(after, before)


# ---------------------------------------------------------------- classifier, checkpointing, cfgs
def test_reset_and_get_classifier():
    model = hybrid("HRA")
    x = torch.randn(2, 3, 16, 16)
    assert model.get_classifier() is model.head and model.head.out_features == 5
    model.reset_classifier(7)
    assert model.get_classifier() is model.head and model.head.out_features == 7 and model.num_classes == 7
    assert not model.head.training and model(x).shape == (2, 7)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_features(x)["cls"], rtol=0, atol=0)
    model.reset_classifier(3, "gap")
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        torch.testing.assert_close(model.forward_head(model.forward_features(x)),
                                   model.head(model.forward_features(x)["patches"].flatten(1, 2).mean(1)))
    model.reset_classifier(4, "register_concat", neck_compression_ratio=4)
    assert model.readout.neck.out_features == DIM // 4 and model.head.in_features == 2 * DIM // 4
    assert model(x).shape == (2, 4)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)
    with pytest.raises(ValueError, match="readout"):
        model.reset_classifier(3, "avg")


def test_reset_classifier_on_the_meta_device():
    model = instantiate(tiny("HRA"), device="meta")
    model.reset_classifier(9)
    assert model.head.weight.is_meta and model.head.out_features == 9


def test_set_grad_checkpointing_toggles_the_one_mechanism():
    model = hybrid("HRA")
    model.set_grad_checkpointing()
    assert model.checkpointed == [True] * 3
    model.set_grad_checkpointing(False)
    assert model.checkpointed == [False] * 3
    model.set_activation_checkpointing(2)
    assert model.checkpointed == [False, True, False]
    model.set_grad_checkpointing(True)
    assert model.checkpointed == [True] * 3


def test_forward_intermediates_under_checkpointing_has_the_same_values_and_gradients():
    x = torch.randn(2, 3, 16, 20)
    grads = []
    for enable in (False, True):
        model = hybrid("HRA").train()
        model.set_grad_checkpointing(enable)
        final, inter = model.forward_intermediates(x, indices=[0, 2], return_prefix_tokens=True)
        loss = final.square().sum() + sum(p.square().sum() + q.square().sum() for p, q in inter)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_feature_info_and_pretrained_cfg():
    model = hybrid("HRA", in_channels=1, image_size=(16, 20))
    assert model.feature_info == [dict(module=f"blocks.{i}", num_chs=DIM, reduction=4) for i in range(3)]
    for info in model.feature_info:
        model.get_submodule(info["module"])  # names a real module
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 16, 20) and cfg["num_classes"] == 5 and len(cfg["mean"]) == len(cfg["std"]) == 1
    assert cfg["first_conv"] == "patch_embed.proj" and isinstance(model.get_submodule(cfg["first_conv"]), nn.Conv2d)
    assert model.default_cfg is model.pretrained_cfg
    model.default_cfg = {"input_size": (1, 32, 32)}
    assert model.pretrained_cfg == {"input_size": (1, 32, 32)}


def test_every_option_combination_runs_on_a_hybrid():
    """Smoke: every combination of the flags returns without padding and with consistent shapes."""
    model = hybrid("HRA")
    x = torch.randn(1, 3, 16, 20)
    flags = ("return_prefix_tokens", "norm", "stop_early", "intermediates_only", "output_dict")
    for values in itertools.product((False, True), repeat=len(flags)):
        kw = dict(zip(flags, values))
        with torch.no_grad():
            out = model.forward_intermediates(x, indices=[0, 1], **kw)
        inter = out["image_intermediates"] if kw["output_dict"] else out if kw["intermediates_only"] else out[1]
        for item in inter:
            patches = item[0] if isinstance(item, tuple) else item
            assert patches.shape == (1, DIM, 4, 5)
