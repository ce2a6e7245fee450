import random

import numpy as np
import torch
from torch.utils.data import Dataset

from vitlab.data import ResumableSampler, build_loader


def indices(sampler):
    return [i for i, _ in sampler]


def test_two_ranks_cover_one_rank_batches():
    one = ResumableSampler(50, batch_size=8, seed=3)
    r0 = ResumableSampler(50, batch_size=4, seed=3, rank=0, world_size=2)
    r1 = ResumableSampler(50, batch_size=4, seed=3, rank=1, world_size=2)
    a, b, c = indices(one), indices(r0), indices(r1)
    assert one.batches_per_epoch == r0.batches_per_epoch == 6
    for k in range(6):
        assert a[8 * k: 8 * k + 8] == b[4 * k: 4 * k + 4] + c[4 * k: 4 * k + 4]


def test_epochs_differ_and_resume_skips_exactly():
    s = ResumableSampler(40, batch_size=5, seed=1)
    full = list(s)
    s.set_epoch(1)
    assert indices(s) != [i for i, _ in full]
    s.set_epoch(0, start_batch=3)
    assert list(s) == full[15:]


class Noisy(Dataset):
    """Returns torch / numpy / python random draws made while loading."""

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return torch.rand(1), torch.tensor(np.random.rand()), torch.tensor(random.random())


def test_augmentation_seed_independent_of_workers_and_global_rng():
    def first_epoch(workers):
        loader, sampler = build_loader(Noisy(), batch_size=4, seed=0, shuffle=True, num_workers=workers)
        sampler.set_epoch(0)
        return [b[0] for b in loader], loader

    before = torch.get_rng_state()
    single, _ = first_epoch(0)
    assert torch.equal(before, torch.get_rng_state())  # loading left the training RNG alone
    multi, loader = first_epoch(2)
    assert all(torch.equal(x, y) for x, y in zip(single, multi))


def test_workers_get_distinct_numpy_streams():
    loader, sampler = build_loader(Noisy(), batch_size=1, seed=0, shuffle=False, num_workers=2)
    sampler.set_epoch(0)
    draws = [b[1].item() for b in loader]
    assert len(set(draws)) == len(draws)  # worker 0 and 1 do not repeat each other's numpy draws
