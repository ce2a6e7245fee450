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
    vx, vy = clusters(n_per=10, noise=1.0, seed=1)
    tx, ty = clusters(n_per=20, noise=1.0, seed=2)
    out = linear_probe(x, y, vx, vy, tx, ty, epochs=30, batch_size=32, lrs=(1e-2, 1e-1), weight_decays=(0.0, 1e-3))
    assert out["linear_top1"] > 90 and out["linear_lr"] in (1e-2, 1e-1) and out["linear_weight_decay"] in (0.0, 1e-3)


def test_linear_probe_choice_ignores_test_labels():
    x, y = clusters(noise=2.0)
    vx, vy = clusters(n_per=10, noise=2.0, seed=1)
    tx, ty = clusters(n_per=20, noise=2.0, seed=2)
    grid = dict(epochs=5, batch_size=32, lrs=(1e-3, 1e-2, 1e-1), weight_decays=(0.0, 1e-2))
    a = linear_probe(x, y, vx, vy, tx, ty, **grid)
    b = linear_probe(x, y, vx, vy, tx, ty[torch.randperm(len(ty))], **grid)
    assert (a["linear_lr"], a["linear_weight_decay"], a["linear_val_top1"]) == (
        b["linear_lr"], b["linear_weight_decay"], b["linear_val_top1"])


def test_knn_float64_separates_nearly_identical_features():
    """Features equal up to ~1e-5 relative (1 - cosine ~ 1e-10): a float32 cosine rounds them all to 1."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(50)
    direction = torch.randn(4, 64, generator=g)
    common = torch.randn(64, generator=g) * 1e3
    feats = common + 1e-2 * direction[labels] + 1e-4 * torch.randn(200, 64, generator=g)
    out = knn_eval(feats[::2], labels[::2], feats[1::2], labels[1::2], ks=(5,))
    assert out["knn_k5_top1"] > 95
