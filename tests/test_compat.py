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
