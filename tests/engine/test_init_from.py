"""``train.init_from``: what loads, what starts fresh, what is interpolated, and the errors that name the key."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.convert.checkpoint import save_vitlab_checkpoint
from vitlab.engine.init_from import load_matching, module_group, read_pretrained

TINY = str(Path(__file__).resolve().parents[1] / "e2e" / "tiny_fmnist.py")


def model_cfg(*overrides):
    return apply_overrides(load_config(TINY), list(overrides)).model


def build(cfg, seed):
    torch.manual_seed(seed)
    return instantiate(cfg)


def test_retrofit_an_attention_checkpoint_into_a_hybrid(tmp_path):
    """An all-attention ``"R" * 4`` checkpoint into an ``"HR" * 2`` network: the swapped mixers start fresh
    (their type changed), everything else loads; exactly the tensors reported loaded equal the file's,
    all others equal a fresh build's with the same seed."""
    source_cfg = model_cfg("model.num_blocks=4", "model.layer_pattern=RRRR")
    source = build(source_cfg, 1)
    path = save_vitlab_checkpoint(source, source_cfg, tmp_path / "attn.pt")
    target_cfg = model_cfg("model.num_blocks=4", "model.layer_pattern=HRHR")
    target, fresh = build(target_cfg, 2), build(target_cfg, 2)
    report = load_matching(target, read_pretrained(path))
    assert {module_group(k) for k in report.fresh} == {"blocks.0.mixer", "blocks.2.mixer"}
    assert set(report.why_fresh) == {"blocks.0.mixer", "blocks.2.mixer"}
    assert "Attention in the file, Hyena2D here" in report.why_fresh["blocks.0.mixer"]
    groups = {module_group(k) for k in report.loaded}
    assert {"blocks.0.ffn", "blocks.0.norm1", "blocks.0.ls1", "blocks.1.mixer", "blocks.3.mixer", "patch_embed",
            "cls_token", "head"} <= groups
    assert {module_group(k) for k in report.ignored} == {"blocks.0.mixer", "blocks.2.mixer"}  # the old attention
    got, file, init = target.state_dict(), source.state_dict(), fresh.state_dict()
    for key in got:
        expected = file[key] if key in report.loaded else init[key]
        assert torch.equal(got[key], expected), key
    params = dict(target.named_parameters())
    assert report.param_names == {k for k in report.loaded if k in params}  # what train.init_freeze_steps holds
    table = report.table()
    assert "blocks.0.mixer" in table and "type changed" in table and "total" in table


def test_a_position_embedding_on_another_grid_is_interpolated(tmp_path):
    source_cfg = model_cfg("model.pos_embed=learned")
    source = build(source_cfg, 0)
    path = save_vitlab_checkpoint(source, source_cfg, tmp_path / "p7.pt")
    target = build(model_cfg("model.pos_embed=learned", "model.image_size=56"), 0)
    report = load_matching(target, read_pretrained(path))
    assert report.interpolated == ["pos_embed.pos_embed"]
    old, new = source.pos_embed.pos_embed.detach(), target.pos_embed.pos_embed.detach()
    prefix = source.pos_embed.num_prefix
    grid = F.interpolate(old[:, prefix:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2), size=(8, 8), mode="bicubic")
    assert torch.allclose(new[:, prefix:], grid.permute(0, 2, 3, 1).reshape(1, 64, -1), atol=1e-6)
    assert torch.equal(new[:, :prefix], old[:, :prefix])


def test_bad_files_are_named(tmp_path):
    source_cfg = model_cfg()
    path = save_vitlab_checkpoint(build(source_cfg, 0), source_cfg, tmp_path / "d32.pt")
    wider = build(model_cfg("model.dim=48"), 0)
    with pytest.raises(ValueError, match=r"cls_token has shape \(1, 1, 32\) in the file but \(1, 1, 48\)"):
        load_matching(wider, read_pretrained(path))
    other = tmp_path / "timm.pt"
    torch.save({"stem.conv.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, other)
    with pytest.raises(ValueError, match="none of its 2 tensors fits the network.*another architecture"):
        load_matching(build(source_cfg, 0), read_pretrained(other))
    with pytest.raises(FileNotFoundError, match="train.init_from=.*missing.pt.*no such file"):
        read_pretrained(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="train.init_weights='student'.*no student"):
        read_pretrained(path, which="student")


def test_a_plain_state_dict_with_a_prefix_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    cfg = model_cfg()
    source = build(cfg, 0)
    file = tmp_path / "w.safetensors"
    save_file({f"module.{k}": v.contiguous() for k, v in source.state_dict().items()}, str(file))
    target = build(cfg, 1)
    report = load_matching(target, read_pretrained(file, prefix="module."))
    assert not report.fresh and not report.ignored and len(report.loaded) == len(source.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
