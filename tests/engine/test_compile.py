"""``train.compile``: the value check, every block type compiling with ``fullgraph=True`` (inductor,
CPU), compiled training matching eager, and state-dict keys unchanged by compiling."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from tests.models.helpers import assert_same_forward_backward, tiny
from vitlab.config import TrainConfig, instantiate
from vitlab.engine.compile import apply_compile, compiled_blocks, resolve_compile

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_resolve_compile_values():
    assert resolve_compile(None, CPU) == "off" and resolve_compile(None, CUDA) == "blocks"
    assert resolve_compile("auto", CPU) == "off"
    assert resolve_compile(False, CUDA) == "off" and resolve_compile(True, CPU) == "task"
    assert resolve_compile("blocks", CPU) == "blocks"
    for bad in ("yes", 1, "block"):
        with pytest.raises(ValueError, match=r"train\.compile.*" + repr(bad).replace("'", ".")):
            resolve_compile(bad, CPU)


def test_train_config_takes_every_compile_value():
    for value in (None, False, True, "blocks"):
        assert OmegaConf.structured(TrainConfig(compile=value)).compile == value
    cfg = OmegaConf.structured(TrainConfig)
    OmegaConf.update(cfg, "compile", "blocks")
    assert cfg.compile == "blocks"


def test_compiling_keeps_state_dict_keys():
    model = instantiate(tiny("HRA"))
    keys = list(model.state_dict())
    apply_compile(model, "blocks")
    assert list(model.state_dict()) == keys and len(compiled_blocks(model)) == 3
    apply_compile(model, "task")
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize("registers", [0, 4])
@pytest.mark.parametrize("pattern,padded", [("A", False), ("R", False), ("H", False), ("H", True), ("R", True),
                                             ("N", False), ("N", True), ("C", False), ("C", True)],
                         ids=["A", "R", "H", "H-padded", "R-padded", "N", "N-padded", "C", "C-padded"])
def test_every_block_type_compiles_fullgraph(pattern, padded, registers):
    """One block of each type, forward and backward, no graph break (fullgraph=True raises on one).
    ``padded``: the token layout pads the grid for that block (``padding_types``). Hyena needs whole grid
    rows, so its unpadded case is a layout that fills them: 16 patches + CLS + 3 (or 7) registers."""
    torch.manual_seed(0)
    if pattern == "H" and not padded:
        registers += 3
    kw = dict(num_registers=registers, max_drop_path_rate=0.0, padding_types=pattern if padded else "")
    model = instantiate(tiny(pattern, **kw))
    eager = copy.deepcopy(model)
    apply_compile(model, "blocks", fullgraph=True)
    assert_same_forward_backward(model, eager, torch.randn(2, 3, 16, 16))


@pytest.mark.parametrize("pattern", ["S", "V", "L"], ids=["mamba-bidirectional", "mamba-cross", "gla"])
def test_sequence_mixer_blocks_compile_fullgraph(pattern):
    """Mamba2D and GLA2D blocks, forward and backward, no graph break: their scans are custom ops (one
    graph node each). An odd 3 x 5 grid with CLS and 3 registers, padded to whole rows (``padding_types``),
    which the mixers strip and restore."""
    torch.manual_seed(0)
    model = instantiate(tiny(pattern, num_registers=3, max_drop_path_rate=0.0, padding_types=pattern))
    eager = copy.deepcopy(model)
    apply_compile(model, "blocks", fullgraph=True)
    assert_same_forward_backward(model, eager, torch.randn(2, 3, 12, 20))
