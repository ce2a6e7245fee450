"""SimpleRandomCrop (DeiT III's SRC): a window of the shorter-side-resized, reflect-padded image."""

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from vitlab.data import SimpleRandomCrop


def offsets(img, size, pad, draws):
    """The (x, y) offset in the padded resized image of each of ``draws`` crops."""
    resized = np.asarray(v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)(img))
    padded = np.pad(resized, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    crop, found = SimpleRandomCrop(size=size, padding=pad), []
    for seed in range(draws):
        torch.manual_seed(seed)
        out = np.asarray(crop(img))
        assert out.shape == (size, size, 3)
        hits = [(x, y) for y in range(padded.shape[0] - size + 1) for x in range(padded.shape[1] - size + 1)
                if (padded[y:y + size, x:x + size] == out).all()]
        assert hits, "the crop is not a window of the padded resized image"
        found.append(hits[0])
    return found


def test_crop_is_a_window_that_moves_along_the_longer_side():
    g = np.random.default_rng(0)
    img = Image.fromarray(g.integers(0, 256, (24, 48, 3), dtype=np.uint8))  # landscape, 2:1
    found = offsets(img, size=16, pad=2, draws=40)  # resized to 16 x 32, padded to 20 x 36
    xs, ys = {x for x, _ in found}, {y for _, y in found}
    assert max(ys) <= 4 and max(xs) <= 20  # y within the padding, x along the whole width
    assert len(xs) > len(ys) and max(xs) > 4


def test_portrait_and_square_sizes():
    crop = SimpleRandomCrop(size=12)
    for w, h in [(20, 40), (12, 12), (30, 13)]:
        assert crop(Image.new("RGB", (w, h))).size == (12, 12)
