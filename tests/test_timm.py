"""vitlab's presets in timm's registry (vitlab/timm.py): every preset builds through ``timm.create_model``,
``features_only=True`` wraps ``forward_intermediates``, and ``pretrained=True`` loads vitlab checkpoints
and ``.safetensors`` files offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vitlab.config import instantiate, load_model_preset, model_presets
from vitlab.convert.checkpoint import save_vitlab_checkpoint
from vitlab.layers.pos_embed import resample_grid
from vitlab.models import HybridViT

timm = pytest.importorskip("timm")
vitlab_timm = pytest.importorskip("vitlab.timm")

ROOT = Path(__file__).resolve().parents[1]
PRESETS = model_presets()


def test_every_preset_is_registered():
    assert PRESETS == sorted(p.stem for p in (ROOT / "configs/models").glob("*.py") if p.name != "__init__.py")
    names = [f"vitlab_{p}" for p in PRESETS]
    assert vitlab_timm.registered_models() == names
    assert timm.list_models("vitlab_*") == names
    assert timm.list_models("vitlab_*", pretrained=True) == []  # no weights are published
    for name in names:
        assert callable(getattr(vitlab_timm, name)) and name in vitlab_timm.__all__


def test_importing_vitlab_registers_nothing():
    """Registration is the one side effect of ``import vitlab.timm``; ``import vitlab`` has none."""
    code = ("import timm, vitlab, vitlab.models, vitlab.config; assert not timm.list_models('vitlab_*'); "
            "import vitlab.timm; assert timm.list_models('vitlab_*')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_through_timm(preset):
    """At full size on the meta device (the same network as the preset), then at two blocks for real:
    logits, and features through timm's feature wrapper."""
    name = f"vitlab_{preset}"
    cfg = load_model_preset(preset)
    full = timm.create_model(name, pretrained=False, device="meta")
    ref = instantiate(cfg, device="meta")
    assert isinstance(full, HybridViT) and str(full) == str(ref)
    assert {k: v.shape for k, v in full.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    registered = timm.models.get_pretrained_cfg(name)
    assert registered.input_size == ref.pretrained_cfg["input_size"] and registered.num_classes == ref.num_classes
    assert full.pretrained_cfg["architecture"] == name and full.default_cfg is full.pretrained_cfg

    pattern = cfg.get("layer_pattern")
    small = dict(layer_pattern=pattern[:2], num_blocks=2) if pattern else dict(num_blocks=2)
    p, c = ref.patch_size, ref.in_channels
    x = torch.randn(2, c, 2 * p, 3 * p)
    model = timm.create_model(name, pretrained=False, num_classes=3, **small).eval()
    feats = timm.create_model(name, pretrained=False, features_only=True, out_indices=(0, 1), **small).eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)
        out = feats(x)
    assert [o.shape for o in out] == [(2, ref.dim, 2, 3)] * 2
    assert feats.feature_info.channels() == [ref.dim] * 2 and feats.feature_info.reduction() == [p] * 2


def test_features_only_is_forward_intermediates():
    """The brief's command: timm's FeatureGetterNet around the pruned model, values of the unpruned one."""
    torch.manual_seed(0)
    feats = timm.create_model("vitlab_hybrid_small_p16", pretrained=False, num_classes=10, features_only=True).eval()
    torch.manual_seed(0)
    whole = timm.create_model("vitlab_hybrid_small_p16", pretrained=False, num_classes=10).eval()
    assert type(feats).__name__ == "FeatureGetterNet" and feats.feature_info.out_indices == (9, 10, 11)
    assert isinstance(feats.model.head, nn.Identity) and isinstance(feats.model.norm, nn.Identity)
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        got = feats(x)
        expected = whole.forward_intermediates(x, indices=3, intermediates_only=True)
    assert len(got) == 3
    for a, b in zip(got, expected):
        assert a.shape == (1, 384, 4, 3)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_timm_arguments_are_translated():
    m = timm.create_model("vitlab_vit_small_p16", num_classes=10, img_size=64, in_chans=1, drop_rate=0.25,
                          drop_path_rate=0.1, global_pool="avg", num_blocks=3, device="meta")
    assert (m.num_classes, m.image_size, m.in_channels, m.head_drop.p) == (10, (64, 64), 1, 0.25)
    assert m.drop_path_rates == [0.1] * 3 and m.readout.readout == "gap" and len(m.blocks) == 3
    assert timm.create_model("vitlab_vit_small_p16", global_pool="token", device="meta").readout.readout == "cls"
    with pytest.raises(ValueError, match="global_pool=''"):
        timm.create_model("vitlab_vit_small_p16", global_pool="", device="meta")
    with pytest.raises(ValueError, match="'in_chans' or vitlab's 'in_channels'"):
        timm.create_model("vitlab_vit_small_p16", in_chans=1, in_channels=1, device="meta")
    with pytest.raises(Exception, match="num_blokcs"):
        timm.create_model("vitlab_vit_small_p16", num_blokcs=3, device="meta")


# ---------------------------------------------------------------- pretrained=True from files
@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A two-block ViT-S/16 with non-zero weights everywhere, as a vitlab checkpoint and a .safetensors file."""
    from safetensors.torch import save_file

    from tests.convert.helpers import randomize_

    folder = tmp_path_factory.mktemp("weights")
    cfg = load_model_preset("vit_small_p16")
    cfg.num_blocks = 2
    model = randomize_(instantiate(cfg)).eval()
    ckpt = save_vitlab_checkpoint(model, cfg, folder / "vit.pt")
    st = folder / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st))
    return model, ckpt, st


@pytest.mark.parametrize("kind", ["checkpoint", "safetensors"])
def test_pretrained_file_loads_offline(source, kind, monkeypatch):
    model, ckpt, st = source
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = ckpt if kind == "checkpoint" else st
    loaded = timm.create_model("vitlab_vit_small_p16", pretrained=True, num_blocks=2,
                               pretrained_cfg_overlay=dict(file=str(path))).eval()
    assert loaded.pretrained_cfg["file"] == str(path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0, msg=k)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_vitlab_checkpoint_is_read_with_weights_only(source, monkeypatch):
    """timm reads the file with torch.load(weights_only=True): the format holds no pickled code."""
    _, ckpt, _ = source
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    timm.create_model("vitlab_vit_small_p16", pretrained=True, num_blocks=2, pretrained_cfg_overlay=dict(file=str(ckpt)))
    assert calls == [True]


def test_pretrained_adapts_head_channels_and_grid(source):
    """timm's adaptations on vitlab weights: a new head for other classes, the stem conv summed to one
    channel, and the learned position embedding resampled to another image size."""
    model, ckpt, _ = source
    m = timm.create_model("vitlab_vit_small_p16", pretrained=True, num_blocks=2, num_classes=7, in_chans=1,
                          img_size=96, pretrained_cfg_overlay=dict(file=str(ckpt)))
    assert m.head.out_features == 7
    stem = model.patch_embed.proj.weight
    torch.testing.assert_close(m.patch_embed.proj.weight, stem.sum(dim=1, keepdim=True))
    pe = model.pos_embed.pos_embed
    expected = torch.cat((pe[:, :1], resample_grid(pe[:, 1:], (14, 14), (6, 6))), dim=1)
    torch.testing.assert_close(m.pos_embed.pos_embed, expected, rtol=0, atol=0)
    torch.testing.assert_close(m.blocks[1].mixer.qkv.weight, model.blocks[1].mixer.qkv.weight, rtol=0, atol=0)


def test_pretrained_mask_token_is_training_only(source):
    """A checkpoint without the iBOT mask token loads into a model with one (kept at its init, zeros)."""
    model, ckpt, _ = source
    m = timm.create_model("vitlab_vit_small_p16", pretrained=True, num_blocks=2, mask_token=True,
                          pretrained_cfg_overlay=dict(file=str(ckpt)))
    assert torch.equal(m.mask_token, torch.zeros_like(m.mask_token))
    torch.testing.assert_close(m.cls_token, model.cls_token, rtol=0, atol=0)


def test_pretrained_errors(source):
    _, ckpt, _ = source
    with pytest.raises(RuntimeError, match="No pretrained weights exist for vitlab_vit_small_p16"):
        timm.create_model("vitlab_vit_small_p16", pretrained=True)
    with pytest.raises(RuntimeError, match="blocks.2"):  # the preset's 12 blocks against a 2-block file
        timm.create_model("vitlab_vit_small_p16", pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt)))
