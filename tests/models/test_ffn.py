"""The FFNs take their activation as ``act_layer`` (a config or a factory): the MLP and the gated
FFN (SwiGLU with SiLU, GeGLU with GELU, ...), with state-dict keys that do not depend on it."""

import pytest
import torch
from torch import nn

from tests.models.helpers import tiny
from vitlab.config import ConfigInstantiationError, L, instantiate, load_config, save_config
from vitlab.layers import LayerNorm, Mlp, SwiGLU
from vitlab.mixers import Attention
from vitlab.models import Block


def _model(ffn):
    block = L(Block)(mixer_layer=L(Attention)(num_heads=2), ffn_layer=ffn, norm_layer=L(LayerNorm)())
    return tiny("A", layer_types={"A": block})


@pytest.mark.parametrize("ffn,act,formula", [
    (L(Mlp)(ratio=2.0), nn.GELU, lambda f, x: f.fc2(nn.functional.gelu(f.fc1(x)))),
    (L(Mlp)(ratio=2.0, act_layer=L(nn.GELU)(approximate="tanh")), nn.GELU,
     lambda f, x: f.fc2(nn.functional.gelu(f.fc1(x), approximate="tanh"))),
    (L(SwiGLU)(ratio=2.0), nn.SiLU,
     lambda f, x: f.w3(nn.functional.silu(f.w12(x).chunk(2, -1)[0]) * f.w12(x).chunk(2, -1)[1])),
    (L(SwiGLU)(ratio=2.0, act_layer=L(nn.GELU)()), nn.GELU,
     lambda f, x: f.w3(nn.functional.gelu(f.w12(x).chunk(2, -1)[0]) * f.w12(x).chunk(2, -1)[1])),
    (L(SwiGLU)(ratio=2.0, act_layer=L(nn.ReLU)()), nn.ReLU,
     lambda f, x: f.w3(torch.relu(f.w12(x).chunk(2, -1)[0]) * f.w12(x).chunk(2, -1)[1])),
], ids=["mlp-gelu", "mlp-gelu_tanh", "swiglu", "geglu", "reglu"])
def test_ffn_runs_its_activation(ffn, act, formula):
    f = instantiate(_model(ffn)).blocks[0].ffn
    assert type(f.act) is act
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(f(x), formula(f, x), rtol=1e-5, atol=1e-6)


def test_act_layer_as_a_factory():
    f = SwiGLU(8, hidden_features=16, act_layer=nn.Tanh)
    x = torch.randn(3, 8)
    gate, value = f.w12(x).chunk(2, -1)
    torch.testing.assert_close(f(x), f.w3(torch.tanh(gate) * value))


def test_activation_leaves_the_state_dict_alone():
    swiglu = instantiate(_model(L(SwiGLU)(ratio=2.0)))
    geglu = instantiate(_model(L(SwiGLU)(ratio=2.0, act_layer=L(nn.GELU)())))
    assert swiglu.state_dict().keys() == geglu.state_dict().keys()
    geglu.load_state_dict(swiglu.state_dict())
    x = torch.randn(1, 3, 16, 16)
    assert not torch.allclose(swiglu(x), geglu(x))  # same weights, another activation: it is used
    assert "(act): GELU(approximate='none')" in repr(geglu)


def test_act_layer_config_saves_and_loads(tmp_path):
    cfg = _model(L(SwiGLU)(ratio=2.0, act_layer=L(nn.GELU)(approximate="tanh")))
    path = save_config(cfg, tmp_path / "model.yaml")
    back = load_config(path)
    assert back == cfg
    act = instantiate(back).blocks[0].ffn.act
    assert type(act) is nn.GELU and act.approximate == "tanh"


def test_bad_act_layer_names_the_config_path():
    with pytest.raises(ConfigInstantiationError, match="layer_types.A"):
        instantiate(_model(L(SwiGLU)(ratio=2.0, act_layer=L(nn.GELU)(approximation="tanh"))))
