import pytest
import torch
from torch import nn

from tests.models.helpers import DIM, block, tiny
from vitlab.config import ConfigInstantiationError, L, instantiate
from vitlab.layers import LayerNorm, Mlp
from vitlab.models import Block, HybridViT, TokenLayout


@pytest.mark.parametrize("kind", ["A", "R", "H", "G"])
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
def test_every_block_type_forward_backward(kind, size):
    model = instantiate(tiny(kind * 2))
    x = torch.randn(2, 3, *size)
    out = model(x)
    assert out.shape == (2, 5)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.blocks[0].mixer.qkv.weight.grad.abs().sum() > 0 if kind != "H" else True


def test_features_shapes_and_layout():
    model = instantiate(tiny("HRA", num_registers=3)).eval()
    feats = model.forward_features(torch.randn(2, 3, 12, 20))  # grid 3 x 5
    assert feats["patches"].shape == (2, 3, 5, DIM)
    assert feats["cls"].shape == (2, DIM)
    assert feats["registers"].shape == (2, 3, DIM)
    assert feats["prenorm"].shape == (2, 15 + 1 + 3, DIM)
    normed = model.norm(feats["prenorm"])
    torch.testing.assert_close(feats["cls"], normed[:, 15])
    torch.testing.assert_close(feats["registers"], normed[:, 16:19])
    torch.testing.assert_close(feats["patches"].flatten(1, 2), normed[:, :15])


@pytest.mark.parametrize("h,w,cls,regs", [(14, 14, 1, 4), (14, 14, 1, 0), (3, 5, 0, 0), (4, 7, 1, 13), (2, 2, 1, 1)])
def test_padding_arithmetic(h, w, cls, regs):
    layout = TokenLayout(h, w, cls, regs)
    assert layout.num_padding == (-(h * w + cls + regs)) % w
    assert layout.num_padded_tokens % w == 0
    assert 0 <= layout.num_padding < w
    assert layout.register_start == h * w + cls


def test_only_padding_types_see_padding():
    model = instantiate(tiny("HRAH", num_registers=1)).eval()
    seen = {}
    for i, blk in enumerate(model.blocks):
        blk.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].shape[1]))
    model(torch.randn(1, 3, 16, 16))  # 16 patches + CLS + 1 register = 18 -> padded to 20
    assert seen == {0: 20, 1: 18, 2: 18, 3: 20}
    model = instantiate(tiny("HRAH", num_registers=1, padding_types=["H", "A"])).eval()
    seen.clear()
    for i, blk in enumerate(model.blocks):
        blk.register_forward_pre_hook(lambda m, args, i=i: seen.__setitem__(i, args[0].shape[1]))
    model(torch.randn(1, 3, 16, 16))
    assert seen == {0: 20, 1: 18, 2: 20, 3: 20}


def test_padding_follows_the_mixer_not_the_letter():
    from tests.models.helpers import block

    model = instantiate(tiny("YA", num_registers=1, layer_types={"Y": block("H"), "A": block("A")})).eval()
    assert model.block_needs_padding == [True, False]  # a Hyena block under "Y" is padded without padding_types
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 5)


def test_padding_is_zero_when_hyena_sees_it():
    model = instantiate(tiny("H", num_registers=1)).eval()
    captured = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    model(torch.randn(1, 3, 16, 16))
    assert captured[0].shape[1] == 20
    assert torch.all(captured[0][:, 18:] == 0)


def test_hyena_without_padding_types_is_a_clear_error():
    model = instantiate(tiny("HA", num_registers=1, padding_types=[]))
    with pytest.raises(ValueError, match="whole grid rows"):
        model(torch.randn(1, 3, 16, 16))


def test_registers_sit_after_cls():
    model = instantiate(tiny("A", num_registers=2)).eval()
    tokens, layout = model.prepare_tokens(torch.randn(1, 3, 16, 16))
    assert torch.equal(tokens[0, 16], model.cls_token[0, 0] + model.pos_embed.pos_embed[0, 0])
    assert torch.equal(tokens[0, 17:19], model.register_tokens[0])
    assert layout.register_start == 17


def test_drop_path_schedules():
    linear = instantiate(tiny("AAAAA", max_drop_path_rate=0.2, drop_path_schedule="linear"))
    assert [b.ls1.drop_path_rate for b in linear.blocks] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    constant = instantiate(tiny("AAA", max_drop_path_rate=0.3))
    assert [b.ls2.drop_path_rate for b in constant.blocks] == [0.3] * 3
    with pytest.raises(ConfigInstantiationError, match="drop_path_schedule"):
        instantiate(tiny("AA", max_drop_path_rate=0.1, drop_path_schedule="cosine"))


def test_drop_path_is_active_only_in_training():
    model = instantiate(tiny("AA", max_drop_path_rate=0.5))
    x = torch.randn(8, 3, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.allclose(a, b)


def test_readouts():
    x = torch.randn(2, 3, 16, 16)
    gap = instantiate(tiny("AR", readout="gap", num_classes=0)).eval()
    feats = gap.forward_features(x)
    torch.testing.assert_close(gap(x), feats["patches"].mean(dim=(1, 2)))
    rc = instantiate(tiny("AR", readout="register_concat", num_registers=3, neck_compression_ratio=4, num_classes=0)).eval()
    out = rc(x)
    assert out.shape == (2, 3 * DIM // 4)
    feats = rc.forward_features(x)
    torch.testing.assert_close(out, (feats["registers"] @ rc.readout.neck.weight.T).flatten(1))
    assert rc.readout.neck.bias is None
    cls = instantiate(tiny("AR", readout="cls", num_classes=0)).eval()
    torch.testing.assert_close(cls(x), cls.forward_features(x)["cls"])
    from vitlab.eval import readout_features

    regs = readout_features(cls, x, "registers")  # parameter-free: the 2 normed register tokens side by side
    torch.testing.assert_close(regs, cls.forward_features(x)["registers"].flatten(1))
    assert regs.shape == (2, 2 * DIM)
    with pytest.raises(ValueError, match="num_registers=0"):
        readout_features(instantiate(tiny("AR", num_registers=0, num_classes=0)).eval(), x, "registers")


@pytest.mark.parametrize("kwargs,match", [
    (dict(readout="cls", class_token=False), "needs a CLS token"),
    (dict(readout="register_concat", num_registers=0, neck_compression_ratio=2), "needs registers"),
    (dict(readout="register_concat", num_registers=2), "neck_compression_ratio"),
    (dict(readout="register_concat", num_registers=2, neck_compression_ratio=5), "dividing"),
    (dict(readout="mean"), "readout must be one of"),
    (dict(layer_pattern="AX"), "does not define"),
    (dict(num_blocks=3), "num_blocks=3"),
    (dict(block_layer=block("A")), "exactly one of"),
    (dict(image_size=18), "not divisible"),
    (dict(reg_init="uniform"), "reg_init"),
])
def test_construction_errors(kwargs, match):
    with pytest.raises(ConfigInstantiationError, match=match):
        instantiate(tiny("AR", **kwargs))


def test_rope_parametrization_errors():
    from vitlab.layers import RotaryEmbedding2D

    with pytest.raises(ValueError, match="either base or min_period"):
        RotaryEmbedding2D(16, base=100.0, min_period=0.5, max_period=10.0)
    with pytest.raises(ValueError, match="divisible by 4"):
        RotaryEmbedding2D(18)
    with pytest.raises(ConfigInstantiationError, match="divisible by 4"):
        instantiate(tiny("R", dim=36))  # 2 heads of 18
    with pytest.raises(ValueError, match="normalize_coords"):
        RotaryEmbedding2D(16, normalize_coords="diag")


@pytest.mark.parametrize("shape,match", [((1, 3, 18, 16), "not divisible by patch_size=4"),
                                         ((1, 1, 16, 16), "in_channels=3"), ((3, 16, 16), "expected images")])
def test_input_errors(shape, match):
    model = instantiate(tiny("AR"))
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_rectangular_and_other_sizes_interpolate_pos_embed():
    model = instantiate(tiny("HRA")).eval()
    for size in [(16, 16), (8, 24), (32, 12)]:
        assert model(torch.randn(1, 3, *size)).shape == (1, 5)


def test_homogeneous_mode_and_drop_path_injection():
    cfg = L(HybridViT)(dim=DIM, num_blocks=3, patch_size=4, image_size=16, num_classes=2,
                       norm_layer=L(LayerNorm)(), block_layer=block("H"), max_drop_path_rate=0.1, num_registers=1)
    model = instantiate(cfg)
    assert len(model.blocks) == 3 and all(model.block_needs_padding)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 2)


class ScaledIdentityMixer(nn.Module):
    """A user-defined mixer: tokens times a learned scalar."""

    def __init__(self, dim, *, scale=2.0, kernels=None, device=None, dtype=None):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, device=device, dtype=dtype))

    def forward(self, x, layout):
        return x * self.scale

    def flop_count(self, tokens, layout, batch_size=1):
        return 0

    def backward_flop_count(self, tokens, layout, batch_size=1):
        return 0


def test_user_block_type_without_registry():
    class CountingBlock(nn.Module):  # defined inside the test, no registration anywhere
        def __init__(self, dim, *, drop_path_rate=0.0, kernels=None, device=None, dtype=None):
            super().__init__()
            self.drop_path_rate = drop_path_rate
            self.lin = nn.Linear(dim, dim, device=device, dtype=dtype)

        def forward(self, x, layout):
            return x + self.lin(x)

    custom = L(Block)(mixer_layer=L(ScaledIdentityMixer)(scale=3.0), ffn_layer=L(Mlp)(), norm_layer=L(LayerNorm)())
    cfg = tiny("AXC", layer_types={"A": block("A"), "X": custom, "C": L(CountingBlock)()}, max_drop_path_rate=0.2,
               drop_path_schedule="linear")
    model = instantiate(cfg)
    assert isinstance(model.blocks[1].mixer, ScaledIdentityMixer) and model.blocks[1].mixer.scale.item() == 3.0
    assert model.blocks[2].drop_path_rate == pytest.approx(0.2)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 5)


def test_get_intermediate_layers():
    model = instantiate(tiny("HRA", num_registers=2)).eval()
    x = torch.randn(2, 3, 12, 16)
    outs = model.get_intermediate_layers(x, n=2, reshape=True, return_class_token=True, return_extra_tokens=True)
    assert len(outs) == 2
    patches, cls, regs = outs[-1]
    assert patches.shape == (2, DIM, 3, 4) and cls.shape == (2, DIM) and regs.shape == (2, 2, DIM)
    feats = model.forward_features(x)
    torch.testing.assert_close(patches.permute(0, 2, 3, 1), feats["patches"])
    torch.testing.assert_close(cls, feats["cls"])
    raw = model.get_intermediate_layers(x, n=[0], norm=False)
    assert raw[0].shape == (2, 12, DIM)
    with pytest.raises(ValueError, match="out of range"):
        model.get_intermediate_layers(x, n=[5])


def test_mask_token_replaces_masked_patches():
    model = instantiate(tiny("RA", mask_token=True)).eval()
    with torch.no_grad():
        model.mask_token.normal_()
    x = torch.randn(2, 3, 16, 16)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, :5] = True
    tokens, _ = model.prepare_tokens(x, masks)
    plain, _ = model.prepare_tokens(x)
    pe = model.pos_embed.pos_embed[:, 1:]
    torch.testing.assert_close(tokens[0, :5], (model.mask_token + pe[0, :5]).expand(5, -1))
    torch.testing.assert_close(tokens[1], plain[1])
    with pytest.raises(ValueError, match="no mask token"):
        instantiate(tiny("RA")).prepare_tokens(x, masks)


def test_meta_device_builds_without_memory():
    model = instantiate(tiny("HRA", dim=4096, num_blocks=3), device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert model.flop_count() > 0


def test_no_weight_decay_and_layer_ids():
    model = instantiate(tiny("GA", mask_token=True))
    nwd = model.no_weight_decay()
    assert {"cls_token", "register_tokens", "mask_token", "pos_embed.pos_embed", "blocks.0.ls1.gamma"} <= nwd
    assert model.layer_id("patch_embed.proj.weight") == 0
    assert model.layer_id("blocks.1.mixer.qkv.weight") == 2
    assert model.layer_id("head.weight") == 3


def test_cls_and_registers_start_on_dinov3s_scale():
    torch.manual_seed(0)
    model = instantiate(tiny("HR", dim=256, num_registers=4))
    for token in (model.cls_token, model.register_tokens):  # DINOv3: normal, std 0.02 (timm's CLS: 1e-6)
        assert 0.012 < float(token.std()) < 0.03


def test_patch_embedding_runs_through_its_forward():
    """Hooks on ``patch_embed`` fire (its forward is the path that runs), and it returns tokens and grid."""
    import torch

    from tests.models.helpers import tiny
    from vitlab.config import instantiate

    model = instantiate(tiny("HR"))
    seen = []
    model.patch_embed.register_forward_hook(lambda m, args, out: seen.append((out[0].shape, out[1])))
    model(torch.randn(2, 3, 16, 16))
    assert seen == [(torch.Size([2, 16, 32]), (4, 4))]
