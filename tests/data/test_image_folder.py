import warnings

import pytest
from PIL import Image

from vitlab.data import ImageFolder, build_loader, normalize


def make_tree(root, n=4, bad=()):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (8, 8), color=(i * 40, 0, 0)).save(root / cls / f"{i}.png")
    for rel, content in bad:
        (root / rel).write_bytes(content)


def test_missing_and_empty_folder_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        ImageFolder(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        ImageFolder(tmp_path / "empty")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="noimg"):
        ImageFolder(tmp_path / "noimg")


def test_bad_files_are_skipped_not_duplicated(tmp_path):
    png = (tmp_path / "ok.png")
    Image.new("RGB", (8, 8)).save(png)
    truncated = png.read_bytes()[:30]
    make_tree(tmp_path / "tree", bad=[("a/zero.png", b""), ("b/trunc.png", truncated), ("b/junk.jpg", b"not an image")])
    ds = ImageFolder(tmp_path / "tree", transform=normalize(mean=[0.5] * 3, std=[0.5] * 3))
    assert len(ds) == 11
    loader, sampler = build_loader(ds, batch_size=11, seed=0, shuffle=False, drop_last=False)
    sampler.set_epoch(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (images, labels), = list(loader)
    named = " ".join(str(w.message) for w in caught)
    assert "zero.png" in named and "trunc.png" in named and "junk.jpg" in named
    assert images.shape == (8, 3, 8, 8) and labels.tolist().count(0) == 4  # each good file exactly once


def test_consecutive_failure_cap(tmp_path):
    make_tree(tmp_path, n=1, bad=[(f"a/bad{i}.png", b"") for i in range(4)])
    ds = ImageFolder(tmp_path, max_consecutive_failures=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="in a row"):
            [ds[i] for i in range(len(ds))]
