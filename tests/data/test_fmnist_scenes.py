"""Fashion-MNIST scenes: deterministic, labels equal to the pasted items, paired transforms, pretraining views."""

import pytest
import torch
from torchvision.transforms import v2

from vitlab.data import FashionMNISTScenes, normalize
from vitlab.ssl import MultiCrop


def test_deterministic_for_a_seed_and_index():
    a = FashionMNISTScenes(split="train", num_scenes=6, size=56, seed=3)
    b = FashionMNISTScenes(split="train", num_scenes=6, size=56, seed=3)
    c = FashionMNISTScenes(split="train", num_scenes=6, size=56, seed=4)
    for i in (5, 0, 2):  # any order
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    assert any(not torch.equal(a[i][1], c[i][1]) for i in range(6))


def test_labels_are_the_pasted_items():
    ds = FashionMNISTScenes(split="test", num_scenes=8, size=112, item_scale=(1.0, 2.0), threshold=16, seed=0)
    for i in range(len(ds)):
        image, mask, placed = ds.scene(i)
        assert 2 <= len(placed) <= 4 and all(p["source"] < 10000 for p in placed)  # test-split items
        assert set(mask.unique().tolist()) <= {0} | {p["label"] + 1 for p in placed}
        assert (image[mask == 0] == 0).all() and (image[mask > 0] > 16).all()  # the mask is the pasted pixels
        top = placed[-1]  # painted last: its opaque pixels show it, with its label
        window = (slice(top["top"], top["top"] + top["side"]), slice(top["left"], top["left"] + top["side"]))
        item = ds.items[top["source"]]
        if top["side"] != 28:
            item = torch.nn.functional.interpolate(item[None, None].float(), size=(top["side"],) * 2, mode="bilinear",
                                                   antialias=True)[0, 0].round().clamp(0, 255).to(torch.uint8)
        opaque = item > 16
        assert (mask[window][opaque] == top["label"] + 1).all() and torch.equal(image[window][opaque], item[opaque])
        assert int(ds.item_labels[top["source"]]) == top["label"]


def test_paired_flip_keeps_image_and_mask_aligned():
    plain = FashionMNISTScenes(split="train", num_scenes=2, size=56)
    flipped = FashionMNISTScenes(split="train", num_scenes=2, size=56,
                                 transform=v2.Compose([v2.RandomHorizontalFlip(p=1.0), normalize([0.5], [0.5])]))
    image, mask = plain[1]
    f_image, f_mask = flipped[1]
    assert f_mask.dtype == torch.long and f_image.dtype == torch.float32
    assert torch.equal(f_mask, mask.flip(-1))
    torch.testing.assert_close(f_image, (image.float() / 255).flip(-1).sub(0.5).div(0.5))


def test_pretraining_views_with_multicrop():
    crops = MultiCrop(global_crops_size=32, local_crops_size=16, local_crops_number=2, mean=[0.2], std=[0.3],
                      blur_kernel_size=3, to_rgb=False)
    ds = FashionMNISTScenes(split="train", num_scenes=3, size=56, masks=False, transform=crops)
    views, label = ds[0]
    assert [v.shape for v in views["global_crops"]] == [(1, 32, 32)] * 2 and len(views["local_crops"]) == 2
    _, mask, placed = ds.scene(0)
    counts = torch.bincount(mask.flatten().long(), minlength=11)
    assert 0 <= label < 10 and counts[label + 1] == counts[1:].max()


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="size=40"):
        FashionMNISTScenes(size=40, item_scale=(1.0, 2.0))
    with pytest.raises(ValueError, match="min_items"):
        FashionMNISTScenes(min_items=3, max_items=2)


def test_scenes_pretraining_config_gives_a_multicrop_batch():
    """``configs/data/fmnist_scenes_multicrop.py``: 112 px global and 48 px local crops of scene images, and
    iBOT masks on the 14x14 grid a patch-8 backbone sees."""
    from pathlib import Path

    from vitlab.config import instantiate, load_config

    data = load_config(Path(__file__).parents[2] / "configs/data/fmnist_scenes_multicrop.py").data
    data.train.num_scenes = 4
    dataset = instantiate(data.train, transform=instantiate(data.train_transform))
    batch = instantiate(data.collate)([dataset[i] for i in range(4)])
    assert batch["global_crops"].shape == (8, 1, 112, 112) and batch["local_crops"].shape == (24, 1, 48, 48)
    assert batch["masks"].shape == (8, 14 * 14)
