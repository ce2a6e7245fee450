"""ThreeAugment: one of grayscale / solarization / Gaussian blur per image, each as DeiT III's PIL version."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps

from vitlab.data import ThreeAugment


def image(seed=0, size=32):
    g = np.random.default_rng(seed)
    small = g.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BICUBIC)  # smooth colour blobs


def which(out, img):
    """The transform that turned img into out."""
    a = np.asarray(out).astype(int)
    if (a == np.asarray(img.convert("L").convert("RGB"))).all():
        return "gray"
    if (a == np.asarray(ImageOps.solarize(img, threshold=128))).all():
        return "solarize"
    return "blur"


def test_each_of_the_three_with_equal_probability():
    img, aug = image(), ThreeAugment()
    counts = {"gray": 0, "solarize": 0, "blur": 0}
    for seed in range(300):
        torch.manual_seed(seed)
        out = aug(img)
        assert out.size == img.size and out.mode == "RGB"
        counts[which(out, img)] += 1
    assert all(70 <= c <= 130 for c in counts.values()), counts  # 100 each expected; sd 8


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_blur_matches_pil_gaussian_blur_of_that_radius(sigma):
    """deit ``augment.py`` blurs with PIL's ``GaussianBlur(radius)``; the radius is the standard deviation."""
    img = image(1, 64)
    ours = np.asarray(ThreeAugment(blur_sigma=(sigma, sigma)).transforms[2](img)).astype(float)
    pil = np.asarray(img.filter(ImageFilter.GaussianBlur(radius=sigma))).astype(float)
    effect = np.abs(np.asarray(img).astype(float) - pil).mean()
    assert np.abs(ours - pil).mean() < 1.0 < effect  # within a grey level on average, well below the blur
    # away from the borders (PIL and torch pad differently); PIL approximates the Gaussian by three box blurs
    assert np.abs(ours - pil)[8:-8, 8:-8].max() <= 3


def test_uint8_tensor_input_and_seeded_replay():
    t = torch.from_numpy(np.array(image(2))).permute(2, 0, 1).contiguous()  # [3, H, W] uint8
    aug = ThreeAugment()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append([aug(t) for _ in range(6)])
    assert all(o.shape == t.shape and o.dtype == torch.uint8 for o in outs[0])
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_bad_sigma_rejected():
    with pytest.raises(ValueError, match="blur_sigma"):
        ThreeAugment(blur_sigma=(2.0, 0.1))
