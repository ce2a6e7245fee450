"""Renamed arguments and attributes keep working for one release, warning with their new name: in Python
calls, in saved configs (YAML of an older vitlab) and in command-line overrides."""

import inspect

import pytest
from omegaconf import OmegaConf

from vitlab.compat import RenamedAttribute, renamed_args_of, renamed_kwargs
from vitlab.config import L, UnknownKeyError, apply_overrides, instantiate, load_config, rename_old_keys, save_config


class Part:
    """A class whose ``size_cfg`` is now ``size`` and whose attribute ``old`` is now ``new``."""

    old = RenamedAttribute("new")

    @renamed_kwargs(size_cfg="size")
    def __init__(self, *, size: int = 1, child=None):
        self.size, self.child, self.new = size, child, 0


def test_an_old_keyword_warns_with_its_new_name_and_still_works():
    with pytest.warns(FutureWarning, match="Part.*'size_cfg' is now 'size'"):
        assert Part(size_cfg=3).size == 3
    with pytest.raises(TypeError, match="'size_cfg' and its new name 'size'"):
        Part(size_cfg=3, size=4)
    assert list(inspect.signature(Part).parameters) == ["size", "child"]  # what config checks see
    assert renamed_args_of(Part) == {"size_cfg": "size"} and renamed_args_of(dict) == {}


def test_an_old_attribute_reads_and_sets_the_new_one():
    part = Part()
    with pytest.warns(FutureWarning, match="Part.old: 'old' is now 'new'"):
        part.old = 5
    assert part.new == 5
    with pytest.warns(FutureWarning, match="'new'"):
        assert part.old == 5


def test_a_saved_config_with_an_old_key_loads_under_the_new_one(tmp_path):
    cfg = OmegaConf.create({"model": {"_target_": "tests.test_compat.Part", "size_cfg": 2,
                                      "child": {"_target_": "tests.test_compat.Part", "size_cfg": 7}}})
    path = save_config(cfg, tmp_path / "config.yaml")
    with pytest.warns(FutureWarning, match="config key 'model.child.size_cfg'"):
        loaded = load_config(path)
    assert loaded.model.size == 2 and loaded.model.child.size == 7 and "size_cfg" not in loaded.model
    with pytest.raises(UnknownKeyError, match="'m.size_cfg' and its new name 'm.size'"):
        rename_old_keys(OmegaConf.create({"m": {"_target_": "tests.test_compat.Part", "size_cfg": 2, "size": 3}}))


def test_an_override_with_an_old_key_sets_the_new_one():
    cfg = OmegaConf.create({"model": L(Part)(size=1, child=L(Part)())})
    with pytest.warns(FutureWarning, match="'model.child.size_cfg' is now 'model.child.size'"):
        apply_overrides(cfg, ["model.child.size_cfg=4"])
    assert instantiate(cfg.model).child.size == 4 and "size_cfg" not in cfg.model.child


OLD_VIT = {  # a homogeneous ViT's config.yaml as an older vitlab saved it: every part under its old name
    "_target_": "vitlab.models.vit.HybridViT", "_recursive_": False, "dim": 32, "num_blocks": 2, "patch_size": 4,
    "image_size": 16, "num_classes": 3,
    "norm_cfg": {"_target_": "vitlab.layers.norm.LayerNorm"},
    "cls_norm_cfg": {"_target_": "vitlab.layers.norm.LayerNorm"},
    "block_cfg": {"_target_": "vitlab.models.block.Block", "_recursive_": False,
                  "mixer": {"_target_": "vitlab.mixers.attention.Attention", "_recursive_": False, "num_heads": 2,
                            "qk_norm": {"_target_": "vitlab.layers.norm.LayerNorm"},
                            "rope": {"_target_": "vitlab.layers.rope.RotaryEmbedding2D", "base": 100.0}},
                  "ffn": {"_target_": "vitlab.layers.mlp.Mlp", "ratio": 2.0},
                  "norm": {"_target_": "vitlab.layers.norm.LayerNorm"}},
}
NEW_KEYS = {"norm_layer", "cls_norm_layer", "block_layer"}


def test_a_network_config_of_an_older_vitlab_loads_resumes_and_overrides(tmp_path):
    """A run directory's config.yaml with ``norm_cfg`` / ``block_cfg`` / ``mixer`` / ``ffn`` / ``norm`` /
    ``qk_norm`` / ``rope`` loads under the new names and builds the network its checkpoint holds."""
    import torch

    path = save_config(OmegaConf.create({"model": OLD_VIT}), tmp_path / "config.yaml")
    with pytest.warns(FutureWarning, match="'block_cfg' is now 'block_layer'"):
        cfg = load_config(path)
    assert NEW_KEYS <= set(cfg.model) and {"mixer_layer", "ffn_layer", "norm_layer"} <= set(cfg.model.block_layer)
    assert {"qk_norm_layer", "rope_layer"} <= set(cfg.model.block_layer.mixer_layer)
    with pytest.warns(FutureWarning, match="'model.block_cfg.mixer.num_heads' is now "
                                           "'model.block_layer.mixer_layer.num_heads'"):
        apply_overrides(cfg, ["model.block_cfg.mixer.num_heads=4"])
    new = instantiate(cfg.model)
    assert new.blocks[0].mixer.num_heads == 4 and new.blocks[0].mixer.rope is not None
    old_cfg = OmegaConf.create(OLD_VIT)
    old_cfg.block_cfg.mixer.num_heads = 4
    with pytest.warns(FutureWarning, match="HybridViT\\(\\): 'norm_cfg' is now 'norm_layer'"):
        old = instantiate(old_cfg)  # the constructors map the old names too
    old.load_state_dict(new.state_dict())  # the same tensors under the same names
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(old.eval()(x), new.eval()(x))
    assert set(old.pretrained_config()) >= NEW_KEYS  # save_pretrained writes the new names


@pytest.mark.parametrize("cls, old, new", [
    ("vitlab.models.HybridViT", "norm_cfg", "norm_layer"),
    ("vitlab.models.HybridViT", "block_cfg", "block_layer"),
    ("vitlab.models.HybridViT", "cls_norm_cfg", "cls_norm_layer"),
    ("vitlab.models.Block", "mixer", "mixer_layer"),
    ("vitlab.models.Block", "ffn", "ffn_layer"),
    ("vitlab.models.Block", "norm", "norm_layer"),
    ("vitlab.mixers.Attention", "qk_norm", "qk_norm_layer"),
    ("vitlab.mixers.Attention", "rope", "rope_layer"),
    ("vitlab.mixers.NeighborhoodAttention", "qk_norm", "qk_norm_layer"),
    ("vitlab.mixers.NeighborhoodAttention", "rope", "rope_layer"),
    ("vitlab.mixers.Attention", "backend", "attn_impl"),
    ("vitlab.mixers.NeighborhoodAttention", "backend", "attn_impl"),
    ("vitlab.ssl.DINOLoss", "backend", "kernels"),
    ("vitlab.ssl.iBOTPatchLoss", "backend", "kernels"),
])
def test_every_renamed_part_names_its_new_name(cls, old, new):
    from hydra.utils import get_class

    assert renamed_args_of(get_class(cls))[old] == new


def test_a_loss_built_with_backend_gets_kernels():
    from vitlab.ssl import DINOLoss

    with pytest.warns(FutureWarning, match="'backend' is now 'kernels'"):
        loss = DINOLoss(8, backend="torch")
    assert loss.kernels == "torch"
