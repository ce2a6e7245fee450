"""Block masks: exact counts, shapes, block structure, DINOv3's per-batch ratios."""

import functools

import pytest
import torch

from vitlab.ssl import MaskingGenerator, sample_ibot_masks


@pytest.mark.parametrize("grid", [(4, 4), (14, 14), (6, 10), (10, 3)])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_exact_count_and_shape(grid, ratio):
    gen = MaskingGenerator(grid)
    g = torch.Generator().manual_seed(0)
    n = int(ratio * grid[0] * grid[1])
    for _ in range(5):
        mask = gen(n, generator=g)
        assert mask.shape == grid and mask.dtype == torch.bool
        assert int(mask.sum()) == n


def test_defaults_follow_dinov3():
    gen = MaskingGenerator(14)
    assert (gen.height, gen.width, gen.num_patches) == (14, 14, 196)
    assert gen.max_num_patches == 98 and gen.min_num_patches == 4
    assert gen.log_aspect[1] == pytest.approx(-gen.log_aspect[0])


def test_masks_are_blocky():
    """Block masks have far fewer mask/unmasked borders than uniform random masks of the same size."""
    g = torch.Generator().manual_seed(1)
    gen = MaskingGenerator(14)

    def borders(mask):
        m = mask.int()
        return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())

    block = sum(borders(gen(60, generator=g)) for _ in range(20))
    uniform = 0
    for _ in range(20):
        m = torch.zeros(196, dtype=torch.bool)
        m[torch.randperm(196, generator=g)[:60]] = True
        uniform += borders(m.view(14, 14))
    assert block < 0.7 * uniform


def test_reproducible_with_generator():
    gen = MaskingGenerator((5, 7))
    a = gen(12, generator=torch.Generator().manual_seed(3))
    b = gen(12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_rejects_impossible_count():
    with pytest.raises(ValueError):
        MaskingGenerator(4)(17)


@pytest.mark.parametrize("grid,n_images", [((4, 4), 8), ((6, 10), 10), ((14, 14), 64)])
def test_batch_masks_follow_dinov3_collate(grid, n_images):
    gen = MaskingGenerator(grid)
    n = grid[0] * grid[1]
    out = sample_ibot_masks(n_images, gen, generator=torch.Generator().manual_seed(0))
    masks = out["masks"]
    assert masks.shape == (n_images, n) and masks.dtype == torch.bool
    counts = sorted(masks.sum(1).tolist())
    n_masked = int(n_images * 0.5)
    ratios = torch.linspace(0.1, 0.5, n_masked + 1)[1:]
    assert counts == sorted([0] * (n_images - n_masked) + [int(n * float(r)) for r in ratios])
    assert all(0.1 * n <= c <= 0.5 * n for c in counts if c > 0)
    # Indices, weights and count agree with the masks.
    assert torch.equal(out["mask_indices"], masks.flatten().nonzero().squeeze(1))
    assert out["n_masked_patches"].tolist() == [int(masks.sum())]
    per_image = torch.zeros(n_images).index_add_(0, out["mask_indices"] // n, out["masks_weight"])
    torch.testing.assert_close(per_image, (masks.sum(1) > 0).float())


@pytest.mark.parametrize("n_images,probability,ratios",
                         [(8, 0.5, (0.1, 0.5)), (10, 0.3, (0.2, 0.9)), (6, 1.0, (0.0, 0.1))])
def test_mask_count_is_fixed_by_the_batch_shape(n_images, probability, ratios):
    """M depends on the sizes and settings only, never on the draw: a compiled step sees one shape."""
    gen, n = MaskingGenerator((6, 7)), 42
    n_masked = int(n_images * probability)
    m = sum(int(n * float(r)) for r in torch.linspace(*ratios, n_masked + 1)[1:])
    for seed in range(10):
        out = sample_ibot_masks(n_images, gen, mask_probability=probability, mask_ratio_min_max=ratios,
                                generator=torch.Generator().manual_seed(seed))
        assert out["mask_indices"].shape == out["masks_weight"].shape == (m,) and int(out["masks"].sum()) == m


def test_batch_masks_custom_probability_and_single_image():
    gen = MaskingGenerator((4, 4))
    out = sample_ibot_masks(4, gen, mask_probability=1.0, mask_ratio_min_max=(0.25, 0.25))
    assert out["masks"].sum(1).tolist() == [4, 4, 4, 4]
    one = sample_ibot_masks(1, gen)  # int(1 * 0.5) = 0 masked images, as in DINOv3
    assert one["masks"].shape == (1, 16) and one["n_masked_patches"].item() == 0


def test_masker_plugs_into_partial():
    masker = functools.partial(sample_ibot_masks, mask_generator=MaskingGenerator((2, 8)))
    assert masker(6)["masks"].shape == (6, 16)
