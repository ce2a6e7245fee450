"""Block-wise patch masking for iBOT (Bao et al. 2022, "BEiT: BERT Pre-Training of Image
Transformers"; Zhou et al. 2022, "iBOT"), with the per-batch sampling of DINOv2/DINOv3
(Simeoni et al. 2025, "DINOv3", ``collate_data_and_cast``).

Masks are unions of random rectangles, so the student must fill in whole regions rather than
interpolate isolated patches; a random top-up then makes the count exact.

Axis legend: I images (global crops, crop-major), N = H * W patches, M masked patches in the batch.
"""

from __future__ import annotations

import math

import torch

from vitlab.ssl.ibot_loss import masked_patch_weights

__all__ = ["MaskingGenerator", "mask_batch_entries", "sample_ibot_masks"]


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [low, high], both ends included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


class MaskingGenerator:
    """Block masks on an ``H x W`` patch grid.

    Each block has an area drawn uniformly in ``[min_num_patches, budget]`` and a log-uniform aspect
    ratio in ``[min_aspect, max_aspect]``; it must be strictly smaller than the grid on both sides and
    add between 1 and ``budget`` new patches. Blocks are added until the target is reached or ten
    draws in a row add nothing; the rest is masked uniformly at random.

    Args:
        grid_size: ``(H, W)`` patches, or one int for a square grid. Tiny grids (4x4) are fine.
        max_num_patches: most patches one block may add (default ``0.5 * N``, as DINOv3 builds it).
        min_num_patches: smallest block area (DINOv3: 4).
        min_aspect: smallest block height/width ratio (DINOv3: 0.3).
        max_aspect: largest ratio (default ``1 / min_aspect``).
    """

    def __init__(self, grid_size: int | tuple[int, int], *, max_num_patches: int | None = None,
                 min_num_patches: int = 4, min_aspect: float = 0.3, max_aspect: float | None = None):
        self.height, self.width = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
        self.num_patches = self.height * self.width
        self.max_num_patches = int(0.5 * self.num_patches) if max_num_patches is None else max_num_patches
        self.min_num_patches = min_num_patches
        max_aspect = max_aspect or 1.0 / min_aspect
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect))

    def __repr__(self) -> str:
        return (f"MaskingGenerator(grid=({self.height}, {self.width}), block area {self.min_num_patches}.."
                f"{self.max_num_patches}, log aspect {self.log_aspect[0]:.3f}..{self.log_aspect[1]:.3f})")

    def _add_block(self, mask: torch.Tensor, budget: int, generator: torch.Generator | None) -> int:
        """Masks one rectangle in place; returns how many patches it newly covered (0 if none fit)."""
        for _ in range(10):
            area = _uniform(self.min_num_patches, budget, generator)
            aspect = math.exp(_uniform(*self.log_aspect, generator))
            h = round(math.sqrt(area * aspect))
            w = round(math.sqrt(area / aspect))
            if not (0 < h < self.height and 0 < w < self.width):
                continue
            top = _randint(0, self.height - h, generator)
            left = _randint(0, self.width - w, generator)
            block = mask[top:top + h, left:left + w]
            added = h * w - int(block.sum())
            # Reject blocks that overshoot the budget, so the count never passes the target.
            if 0 < added <= budget:
                block.fill_(True)
                return added
        return 0

    def __call__(self, num_masking_patches: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """A mask with exactly ``num_masking_patches`` True entries.

        Args:
            num_masking_patches: patches to mask, in ``[0, N]``.
            generator: optional RNG (default: torch's global one, seeded per DataLoader worker).

        Returns:
            ``[H, W]`` bool.
        """
        if not 0 <= num_masking_patches <= self.num_patches:
            raise ValueError(f"cannot mask {num_masking_patches} of {self.num_patches} patches")
        mask = torch.zeros(self.height, self.width, dtype=torch.bool)
        count = 0
        while count < num_masking_patches:
            added = self._add_block(mask, min(num_masking_patches - count, self.max_num_patches), generator)
            if added == 0:
                break
            count += added
        if count < num_masking_patches:
            free = (~mask).flatten().nonzero().squeeze(1)  # [N - count]
            pick = free[torch.randperm(free.numel(), generator=generator)[: num_masking_patches - count]]
            mask.view(-1)[pick] = True
        return mask


def sample_ibot_masks(n_images: int, mask_generator: MaskingGenerator, *, mask_probability: float = 0.5,
                      mask_ratio_min_max: tuple[float, float] = (0.1, 0.5),
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Masks for one batch of global crops, as DINOv3's collate draws them.

    ``int(n_images * mask_probability)`` images are masked; their ratios are spread evenly over
    ``mask_ratio_min_max`` (image ``i`` of ``n`` masks ``int(N * r_{i+1})`` patches with
    ``r = linspace(lo, hi, n + 1)``), so the batch covers the whole range; the other images are not
    masked, and the order is shuffled.

    The generator masks exact counts, so ``M = sum_i int(N * r_{i+1})`` depends only on ``n_images``,
    ``N``, ``mask_probability`` and ``mask_ratio_min_max``, never on the draw: a compiled training
    step selects the masked patches with ``mask_indices`` and sees one shape. (DINOv3's collate returns
    the same sum as ``upperbound``, the size of its index buffer, inherited from DINOv2, which drew
    each ratio within its interval; in DINOv3, as here, it equals ``M``.)

    Args:
        n_images: I, the number of global crops in the batch (2 x images per batch).
        mask_generator: the block mask generator for the student's patch grid.
        mask_probability: share of images that get a mask (DINOv3: 0.5).
        mask_ratio_min_max: range of masked ratios (DINOv3: (0.1, 0.5)).
        generator: optional RNG.

    Returns:
        ``masks`` ``[I, N]`` bool; ``mask_indices`` ``[M]`` long, flat indices into ``I * N`` in
        row-major order (the order of ``masks.nonzero()``);
        ``masks_weight`` ``[M]`` float32, ``1 / (masked patches in its image)``;
        ``n_masked_patches`` ``[1]`` long, ``M``.
    """
    lo, hi = mask_ratio_min_max
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"mask_ratio_min_max must satisfy 0 <= lo <= hi <= 1, got {mask_ratio_min_max}")
    n_masked_images = int(n_images * mask_probability)
    ratios = torch.linspace(lo, hi, n_masked_images + 1)[1:]  # [n_masked_images]
    n = mask_generator.num_patches
    grids = [mask_generator(int(n * float(r)), generator=generator) for r in ratios]
    grids += [mask_generator(0, generator=generator) for _ in range(n_images - n_masked_images)]
    order = torch.randperm(n_images, generator=generator)
    return mask_batch_entries(torch.stack([grids[i] for i in order]).flatten(1))


def mask_batch_entries(masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch entries of ``masks`` ``[I, N]`` bool that the DINOv3 task reads (see
    :func:`sample_ibot_masks` for each), on ``masks``' device."""
    mask_indices = masks.flatten().nonzero().squeeze(1)  # [M]
    return {
        "masks": masks,
        "mask_indices": mask_indices,
        "masks_weight": masked_patch_weights(masks),
        "n_masked_patches": torch.tensor([mask_indices.numel()], dtype=torch.long, device=masks.device),
    }
