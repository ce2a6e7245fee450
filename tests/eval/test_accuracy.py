"""The shared scoring helpers: top-k hits (one definition for the task, k-NN and the probe) and eval_mode."""

import pytest
import torch

from vitlab.eval import eval_mode, topk_correct, topk_hits


def test_topk_hits_and_counts():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 2, 0])
    hits = topk_hits(scores, labels, k=2)
    assert hits.tolist() == [[True, False], [False, True], [False, False]]
    assert {k: int(v) for k, v in topk_correct(scores, labels, ks=(1, 2, 5)).items()} == {1: 1, 2: 2, 5: 3}
    grid = torch.stack([scores, -scores])  # a grid of probes: leading dims pass through
    assert topk_hits(grid, labels, k=1)[:, :, 0].tolist() == [[True, False, False], [False, False, True]]


def test_eval_mode_restores_even_on_error():
    model = torch.nn.Dropout().train()
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            assert not model.training
            raise RuntimeError("boom")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training
    with eval_mode(None) as m:  # raw pixels
        assert m is None
