"""What a multi-crop batch shows its networks: the share of crops that are near-constant (all
background) and of crops that look like another image's crop (near-duplicates across images). Either
gives the DINO loss pairs whose teacher target the student cannot tell apart from other images'.

A crop is *flat* when its pixel standard deviation is below ``flat_tol`` of the batch's (every crop of
the kind pooled). Two crops are *alike* when the cosine similarity of their pixels, average-pooled to
``pool x pool`` and centred by the batch's mean, is at least ``dup_tol``, or when their distance is
within ``1 - dup_tol`` of the crops' mean norm (two flat crops of one background centre to the same
vector, whose direction says nothing); a crop is a *duplicate* when a crop alike belongs to another image.

Axis legend: N crops (crop-major: crop ``i`` is of image ``i % B``), B images, C channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["crop_stats"]


@torch.no_grad()
def crop_stats(crops: torch.Tensor, num_images: int, *, flat_tol: float = 0.1, dup_tol: float = 0.95,
               pool: int = 8) -> dict[str, float]:
    """``flat`` and ``duplicate`` shares of ``crops`` ``[N, C, H, W]`` (N a multiple of ``num_images``)."""
    if crops.shape[0] % num_images:
        raise ValueError(f"{crops.shape[0]} crops are not a whole number of crops of {num_images} images")
    x = crops.float()
    flat = x.flatten(1).std(dim=1) < flat_tol * x.std().clamp_min(1e-12)  # [N]
    small = F.adaptive_avg_pool2d(x, min(pool, x.shape[-1])).flatten(1)  # [N, C*pool*pool]
    small = small - small.mean(dim=0, keepdim=True)
    unit = F.normalize(small, dim=1)
    alike = unit @ unit.T >= dup_tol  # [N, N]
    close = torch.cdist(small, small) <= (1 - dup_tol) * small.norm(dim=1).mean()
    image = torch.arange(x.shape[0]) % num_images
    other = image[:, None] != image[None, :]
    duplicate = ((alike | close) & other).any(dim=1)
    return {"flat": flat.float().mean().item(), "duplicate": duplicate.float().mean().item()}
