"""The raw-pixel baseline of vitlab's k-NN protocols on Fashion-MNIST: the normalised 28x28 pixels
as features, scored by the same ``vitlab.eval.knn_eval`` (weighted vote, T = 0.07, cosine) as a
backbone.

    .venv/bin/python tools/knn_raw_pixels.py            # both banks, k = 10 and 20
    .venv/bin/python tools/knn_raw_pixels.py --json out.json

Banks: the online monitor's (the first 10k training images, ``data.knn_train``) and ``vitlab eval
knn``'s (all 60k training images); queries: the 10k test images. With ``--val`` the queries are
training images 50,000-59,999 instead (the validation split of ``tools/ablate_ssl_recipe.py``).
"""

from __future__ import annotations

import argparse
import json

from vitlab.data import DEFAULT_ROOT, FashionMNIST
from vitlab.eval import knn_eval

MEAN, STD = 0.2860, 0.3530  # configs/data/fashion_mnist.py


def pixels(ds: FashionMNIST):
    return ((ds.images.float() / 255 - MEAN) / STD).flatten(1), ds.labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--val", action="store_true", help="queries: train images 50,000-59,999")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.val:
        queries = pixels(FashionMNIST(args.root, split="train", start=50000, limit=10000))
    else:
        queries = pixels(FashionMNIST(args.root, split="test"))
    results = {}
    for bank_name, limit in (("bank_10k", 10000), ("bank_60k", None)):
        if args.val and limit is None:
            limit = 50000  # the bank must not hold the queries
            bank_name = "bank_50k"
        bank = pixels(FashionMNIST(args.root, split="train", limit=limit))
        res = knn_eval(*bank, *queries, ks=(10, 20), temperature=0.07)
        results[bank_name] = {k: round(v, 2) for k, v in res.items() if k.endswith("top1")}
        print(f"raw pixels, {bank_name}, {'val' if args.val else 'test'} queries: "
              + ", ".join(f"{k} {v:.2f}" for k, v in results[bank_name].items()), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
