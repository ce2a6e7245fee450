import textwrap

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from vitlab.config import (ConfigInstantiationError, EvalConfig, L, TrainConfig, typed_sections, apply_overrides, instantiate, load_config,
                           parse_sweep, save_config)
from vitlab.layers import LayerNorm, Mlp
from vitlab.mixers import Attention
from vitlab.models import Block, HybridViT


def tiny_model(**kw):
    block = L(Block)(mixer_layer=L(Attention)(num_heads=2), ffn_layer=L(Mlp)(ratio=2.0), norm_layer=L(LayerNorm)())
    args = dict(in_channels=3, num_classes=5, dim=16, num_blocks=2, patch_size=4, image_size=16,
                norm_layer=L(LayerNorm)(), layer_pattern="AA", layer_types={"A": block})
    args.update(kw)
    return L(HybridViT)(**args)


def test_L_records_import_path_and_instantiates_exactly():
    cfg = L(torch.nn.Linear)(in_features=3, out_features=4, bias=False)
    assert isinstance(cfg, DictConfig)
    assert cfg._target_ == "torch.nn.modules.linear.Linear"
    lin = instantiate(cfg)
    assert isinstance(lin, torch.nn.Linear) and lin.bias is None and lin.weight.shape == (4, 3)


def test_instantiate_overrides_and_nested_model():
    model = instantiate(tiny_model(), num_classes=7)
    assert model.head.out_features == 7
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_error_names_config_path_target_and_cause():
    root = OmegaConf.create({"model": tiny_model()})
    root.model.layer_types.A.mixer_layer.num_heads = 3  # 16 is not divisible by 3
    with pytest.raises(ConfigInstantiationError) as info:
        instantiate(root.model)
    msg = str(info.value)
    assert "model.layer_types.A" in msg
    assert "model.layer_types.A.mixer_layer" in msg  # the innermost failing node
    assert "vitlab.mixers.attention.Attention" in msg
    assert "num_heads=3" in msg and "ValueError" in msg
    assert isinstance(info.value.original, ValueError)


def test_error_for_unknown_argument_and_bad_target():
    with pytest.raises(ConfigInstantiationError, match="unexpected keyword argument 'bogus'"):
        instantiate(L(torch.nn.Linear)(in_features=1, out_features=1, bogus=1))
    with pytest.raises(ConfigInstantiationError, match="no.such.Thing"):
        instantiate(OmegaConf.create({"_target_": "no.such.Thing"}))


def test_local_class_instantiates_but_cannot_be_saved(tmp_path):
    class Local:
        def __init__(self, value):
            self.value = value

    cfg = L(Local)(value=3)
    assert instantiate(cfg).value == 3
    with pytest.raises(ValueError, match="YAML cannot store"):
        save_config(OmegaConf.create({"x": cfg}), tmp_path / "c.yaml")


def test_overrides_set_add_delete_and_typo():
    cfg = OmegaConf.create({"model": tiny_model()})
    apply_overrides(cfg, ["model.num_registers=4", "model.layer_types.A.mixer_layer.num_heads=4", "+model.dropout_rate=0.5"])
    assert cfg.model.num_registers == 4 and cfg.model.layer_types.A.mixer_layer.num_heads == 4
    assert cfg.model.dropout_rate == 0.5
    apply_overrides(cfg, ["~model.dropout_rate"])
    assert "dropout_rate" not in cfg.model
    with pytest.raises(KeyError) as info:
        apply_overrides(cfg, ["model.num_register=4"])
    assert "model.num_register" in str(info.value) and "model.num_registers" in str(info.value)
    with pytest.raises(ValueError, match="sweep"):
        apply_overrides(cfg, ["model.num_registers=0,4"])


def test_parse_sweep_is_cartesian():
    combos = parse_sweep(["model.num_registers=0,4", "model.readout=cls,gap", "train.max_steps=3"])
    assert len(combos) == 4
    assert ["model.num_registers=4", "model.readout=gap", "train.max_steps=3"] in combos


def test_save_and_load_round_trip(tmp_path):
    cfg = OmegaConf.create({"model": tiny_model(num_registers=2), "train": TrainConfig(max_steps=3, seed=1)})
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    back = load_config(path)
    assert back == typed_sections(cfg)  # a run config gains the eval protocol it is scored with
    assert back.eval.val_size == EvalConfig().val_size
    assert load_config(save_config(back, tmp_path / "again.yaml")) == back
    model = instantiate(back.model)
    assert model.num_registers == 2


def test_python_config_file_imports_a_base_without_leaking(tmp_path):
    pkg = tmp_path / "myconfigs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text(textwrap.dedent("""
        from vitlab.config import L
        import torch
        model = L(torch.nn.Linear)(in_features=4, out_features=2)
        train = dict(max_steps=10)
    """))
    (pkg / "variant.py").write_text(textwrap.dedent("""
        from myconfigs.base import model, train
        model.out_features = 8
        train["max_steps"] = 20
    """))
    variant = load_config(pkg / "variant.py")
    assert variant.model.out_features == 8 and variant.train.max_steps == 20
    base = load_config(pkg / "base.py")
    assert base.model.out_features == 2 and base.train.max_steps == 10  # the variant's edits did not leak
    assert set(base.keys()) == {"model", "train", "eval", "launch"}  # eval, launch: every run config states them


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="defines no config"):
        load_config(tmp_path / "empty.py")


def test_edits_to_imported_bases_never_leak_between_loads(tmp_path, monkeypatch):
    """A config outside the repository that edits a base it imports from the working directory
    must not change what a later load of another file (here, one with its own import root) sees."""
    from pathlib import Path

    from vitlab.config import load_config

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    (tmp_path / "edit.py").write_text("from configs.data.fashion_mnist import data\ndata.num_workers = 7\n")
    assert load_config(tmp_path / "edit.py").data.num_workers == 7
    assert load_config(repo / "tests" / "e2e" / "tiny_fmnist.py").data.num_workers == 0
    assert load_config(repo / "configs" / "data" / "fashion_mnist.py").data.num_workers == 0
