"""Typed run sections: a misspelt key of ``train``, ``optim``, ``data`` or ``task.gram`` fails at load time,
in an experiment file, on the command line and through ``apply_overrides``, naming the key, the closest
existing ones and (for a file) the file and line that wrote it."""

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vitlab.config import (DataConfig, OptimConfig, TrainConfig, UnknownKeyError, apply_overrides, load_config,
                           save_config)
from vitlab.ssl import GramConfig, GramTeacher

ROOT = Path(__file__).resolve().parents[2]
TINY_DINO = ROOT / "tests" / "configs" / "tiny_dino.py"

# (misspelt key as an experiment writes it, the full key, the key it should have been)
TYPOS = [
    ("train.max_step = 5", "train.max_step", "train.max_steps"),
    ("optim.lr_scalin = 'sqrt_wrt_1024'", "optim.lr_scalin", "optim.lr_scaling"),
    ("data.batch_sizes = 16", "data.batch_sizes", "data.batch_size"),
    ("task.gram.start_stp = 1", "task.gram.start_stp", "task.gram.start_step"),
    ("task.koleo_wieght = 0.2", "task.koleo_wieght", "task.koleo_weight"),
]


def experiment(tmp_path, body):
    path = tmp_path / "experiment.py"
    path.write_text(f"from tests.configs.tiny_dino import data, model, optim, task, train  # noqa: F401\n\n{body}\n")
    return path


def test_sections_are_typed():
    cfg = load_config(TINY_DINO)
    assert OmegaConf.get_type(cfg.train) is TrainConfig
    assert OmegaConf.get_type(cfg.optim) is OptimConfig
    assert OmegaConf.get_type(cfg.data) is DataConfig
    assert OmegaConf.get_type(cfg.task.gram) is GramConfig
    cfg.data.train.limit = 8  # LazyConfigs inside a typed section stay free-form
    cfg.optim.lr.warmup_steps = 3


@pytest.mark.parametrize("body, key, closest", TYPOS, ids=[t[1] for t in TYPOS])
def test_misspelt_key_in_experiment_file(tmp_path, monkeypatch, body, key, closest):
    monkeypatch.chdir(ROOT)
    path = experiment(tmp_path, body)
    with pytest.raises(UnknownKeyError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"'{key}'" in msg and closest in msg and str(path) in msg, msg
    if not key.startswith("task.koleo"):  # typed sections fail at the line that writes the key
        assert f"{path}:3" in msg, msg


def test_misspelt_key_set_by_a_base_names_the_base_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.py").write_text(textwrap.dedent("""
        from omegaconf import OmegaConf
        from vitlab.config import TrainConfig

        train = OmegaConf.structured(TrainConfig())


        def set_budget(steps):
            train.max_step = steps
    """))
    (tmp_path / "exp.py").write_text("from base import set_budget, train  # noqa: F401\n\nset_budget(10)\n")
    with pytest.raises(UnknownKeyError, match=r"base\.py:9 \(loading .*exp\.py\).*'train\.max_step'.*train\.max_steps"):
        load_config(tmp_path / "exp.py")


@pytest.mark.parametrize("override, closest", [("train.max_step=5", "train.max_steps"),
                                               ("+train.max_step=5", "train.max_steps"),
                                               ("optim.lr_scalin=linear_wrt_256", "optim.lr_scaling"),
                                               ("data.batch_sizes=16", "data.batch_size"),
                                               ("task.gram.start_stp=1", "task.gram.start_step"),
                                               ("+task.gram.start_stp=1", "task.gram.start_step"),
                                               ("task.koleo_wieght=0.2", "task.koleo_weight")])
def test_misspelt_key_in_apply_overrides(override, closest):
    cfg = load_config(TINY_DINO)
    with pytest.raises(UnknownKeyError) as info:
        apply_overrides(cfg, [override])
    assert f"'{override.lstrip('+').split('=')[0]}'" in str(info.value) and closest in str(info.value)


def test_typed_keys_cannot_be_deleted_and_values_are_checked():
    cfg = load_config(TINY_DINO)
    with pytest.raises(KeyError, match="cannot delete 'train.seed'"):
        apply_overrides(cfg, ["~train.seed"])
    with pytest.raises(ValueError, match="train.max_steps"):
        apply_overrides(cfg, ["train.max_steps=many"])
    apply_overrides(cfg, ["train.max_steps=7", "+data.val.limit=10", "task.gram.update_every=3"])
    assert cfg.train.max_steps == 7 and cfg.data.val.limit == 10 and cfg.task.gram.update_every == 3


@pytest.mark.parametrize("override, closest", [("train.max_step=5", "train.max_steps"),
                                               ("data.batch_sizes=16", "data.batch_size")])
def test_misspelt_key_on_the_command_line(override, closest):
    proc = subprocess.run([sys.executable, "-m", "vitlab", "train", str(TINY_DINO), override], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"config has no key '{override.split('=')[0]}'" in proc.stderr and closest in proc.stderr, proc.stderr
    assert "steps/epoch" not in proc.stdout  # it failed before training


def test_yaml_sections_are_typed_on_load(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  max_step: 5\n")
    with pytest.raises(UnknownKeyError, match=r"run\.yaml.*'train\.max_step'.*train\.max_steps"):
        load_config(path)


def test_save_load_round_trip_is_equal_and_typed(tmp_path):
    cfg = load_config(TINY_DINO)
    apply_overrides(cfg, ["train.max_steps=11", "optim.lr_scaling=linear_wrt_256"])
    back = load_config(save_config(cfg, tmp_path / "config.yaml"))
    assert back == cfg
    for key, cls in [("train", TrainConfig), ("optim", OptimConfig), ("data", DataConfig)]:
        assert OmegaConf.get_type(back[key]) is cls
    with pytest.raises(UnknownKeyError, match="train.max_steps"):
        apply_overrides(back, ["train.max_step=1"])


def test_gram_config_defaults_are_gram_teachers():
    params = inspect.signature(GramTeacher).parameters
    for name, value in vars(GramConfig(start_step=0)).items():
        if name != "start_step" and not name.endswith("_fraction"):  # the fractions resolve to steps first
            assert params[name].default == value, name
