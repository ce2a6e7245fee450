import torch

from vitlab.eval import knn_eval, knn_predict, linear_probe


def clusters(n_per=40, classes=4, dim=16, noise=0.3, seed=0):
    centers = torch.randn(classes, dim, generator=torch.Generator().manual_seed(0)) * 3  # same for all splits
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per)
    return centers[labels] + noise * torch.randn(len(labels), dim, generator=g), labels


def test_knn_separable_clusters():
    x, y = clusters()
    tx, ty = clusters(n_per=10, seed=1)
    out = knn_eval(x, y, tx, ty, ks=(10, 20))
    assert out["knn_k10_top1"] == 100.0 and out["knn_k20_top5"] == 100.0


def test_knn_vote_weights():
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    scores = knn_predict(train, torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.1]]), k=3, temperature=0.07)
    # the single very close class-0 neighbour outvotes two far class-1 neighbours (exp(s / T) weights)
    assert scores.argmax().item() == 0


def test_linear_probe_learns():
    x, y = clusters(noise=1.0)
    tx, ty = clusters(n_per=20, noise=1.0, seed=2)
    out = linear_probe(x, y, tx, ty, epochs=30, batch_size=32, lrs=(1e-2, 1e-1))
    assert out["linear_top1"] > 90 and out["linear_lr"] in (1e-2, 1e-1)
