"""GatedConv against timm's MambaOut ``GatedConvBlock`` (weights copied): patches on the grid, non-patch
tokens as one-pixel images, forward and gradients."""

import pytest
import torch
from timm.models.mambaout import GatedConvBlock

from tests.models.helpers import tiny
from vitlab.config import instantiate
from vitlab.mixers import GatedConv
from vitlab.models import TokenLayout


def pair(dim, kernel_size, conv_ratio):
    """timm's block and a GatedConv holding its weights."""
    ref = GatedConvBlock(dim, kernel_size=kernel_size, conv_ratio=conv_ratio)
    mixer = GatedConv(dim, kernel_size=kernel_size, conv_ratio=conv_ratio)
    for name in ("fc1", "conv", "fc2"):
        getattr(mixer, name).load_state_dict(getattr(ref, name).state_dict())
    return ref, mixer


def timm_branch(block, x):
    """The residual branch of timm's block on images [B, h, w, D] (no LayerScale, no drop path)."""
    return block(x) - x


@pytest.mark.parametrize("dim,kernel_size,conv_ratio", [(32, 7, 1.0), (24, 3, 0.5), (16, 5, 1.0)])
@pytest.mark.parametrize("grid,cls,registers,pad", [((4, 4), 0, 0, 0), ((3, 5), 1, 2, 0), ((5, 3), 1, 0, 2)])
def test_matches_timm_gated_conv_block(dim, kernel_size, conv_ratio, grid, cls, registers, pad):
    torch.manual_seed(0)
    ref, mixer = pair(dim, kernel_size, conv_ratio)
    h, w = grid
    layout = TokenLayout(h, w, cls, registers)
    images = torch.randn(2, h, w, dim)
    extra = torch.randn(2, cls + registers + pad, dim)  # CLS, registers, padding
    x = torch.cat((images.flatten(1, 2), extra), dim=1)
    out = mixer(ref.norm(x), layout)
    torch.testing.assert_close(out[:, : h * w], timm_branch(ref, images).flatten(1, 2), atol=1e-6, rtol=1e-5)
    one_pixel = extra.reshape(-1, 1, 1, dim)  # every other token: an image of one pixel
    torch.testing.assert_close(out[:, h * w :], timm_branch(ref, one_pixel).reshape(2, -1, dim), atol=1e-6, rtol=1e-5)


def test_gradients_match_timm():
    torch.manual_seed(0)
    ref, mixer = pair(16, 7, 1.0)
    ref, mixer = ref.double(), mixer.double()
    images = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    timm_branch(ref, images).square().sum().backward()
    mixer(ref.norm(images.flatten(1, 2)), TokenLayout(3, 5, 0, 0)).square().sum().backward()
    for name in ("fc1.weight", "fc1.bias", "conv.weight", "conv.bias", "fc2.weight", "fc2.bias"):
        torch.testing.assert_close(mixer.get_parameter(name).grad, ref.get_parameter(name).grad, msg=name)


def test_network_initialises_the_conv_as_mambaout():
    model = instantiate(tiny("C"))
    conv = model.blocks[0].mixer.conv
    assert conv.weight.std() < 0.05 and (conv.bias == 0).all()  # trunc-normal 0.02, not kaiming


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="kernel_size must be an odd positive integer.*4"):
        GatedConv(16, kernel_size=4)
    with pytest.raises(ValueError, match="conv_ratio=0.0"):
        GatedConv(16, conv_ratio=0.0)
    with pytest.raises(ValueError, match="conv_ratio=4"):
        GatedConv(16, expansion_ratio=1.0, conv_ratio=4)
