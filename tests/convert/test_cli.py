"""``vitlab convert dinov3``: each format to a vitlab checkpoint ``{"model", "config"}`` that loads with
``weights_only=True``, rebuilds from its YAML config and reproduces the source model."""

import pytest
import torch
from omegaconf import OmegaConf

from tests.convert.helpers import (
    hf_model,
    hf_to_official_state_dict,
    max_diffs,
    randomize_,
    split_dinov3_tokens,
)
from vitlab.cli import main
from vitlab.config import instantiate, load_config
from vitlab.convert import load_vitlab_checkpoint

TOL = 1e-4


def _reload(out):
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {"model", "config"} and isinstance(ckpt["config"], str)
    model = instantiate(OmegaConf.create(ckpt["config"]).model)
    model.load_state_dict(ckpt["model"], strict=True)
    assert load_config(out.with_suffix(".yaml")).model == OmegaConf.create(ckpt["config"]).model
    return model.eval()


def _compare(model, ref_fn, registers, size=(48, 64)):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        diffs = max_diffs(model.forward_features(x), split_dinov3_tokens(ref_fn(x), registers))
    assert max(diffs.values()) <= TOL, diffs


def test_convert_official(tmp_path):
    hf = hf_model(layers=2, registers=4)
    torch.save(hf_to_official_state_dict(hf), tmp_path / "dinov3.pth")
    out = tmp_path / "vitlab.pt"
    assert main(["convert", "dinov3", "--from", "official", str(tmp_path / "dinov3.pth"), "--out", str(out)]) == 0
    _compare(_reload(out), lambda x: hf(x).last_hidden_state, 4)
    _compare(load_vitlab_checkpoint(out), lambda x: hf(x).last_hidden_state, 4)


def test_convert_hf_directory(tmp_path):
    hf = hf_model(layers=2, registers=0, gated=True, intermediate=512)
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "vitlab.pt"
    assert main(["convert", "dinov3", "--from", "hf", str(tmp_path / "hf"), "--out", str(out)]) == 0
    _compare(_reload(out), lambda x: hf(x).last_hidden_state, 0)
    weights = next((tmp_path / "hf").glob("*.safetensors"))
    assert main(["convert", "dinov3", "--from", "hf", str(weights), "--out", str(tmp_path / "b.pt")]) == 0


def test_convert_timm(tmp_path):
    timm = pytest.importorskip("timm")
    t = randomize_(timm.create_model("vit_small_plus_patch16_dinov3_qkvb", embed_dim=192, depth=2, num_heads=3)).eval()
    torch.save(t.state_dict(), tmp_path / "timm.pth")
    out = tmp_path / "vitlab.pt"
    args = ["convert", "dinov3", "--from", "timm", str(tmp_path / "timm.pth"), "--out", str(out), "--num-heads", "3"]
    assert main(args) == 0
    _compare(_reload(out), t.forward_features, 4)


def test_convert_reports_mismatches(tmp_path, capsys):
    torch.save(hf_to_official_state_dict(hf_model(layers=1, registers=4)), tmp_path / "dinov3.pth")
    args = ["convert", "dinov3", "--from", "official", str(tmp_path / "dinov3.pth"), "--out", str(tmp_path / "o.pt"),
            "--arch", "vitb16"]
    assert main(args) == 1
    assert "missing keys" in capsys.readouterr().out and not (tmp_path / "o.pt").exists()


def test_eval_knn_on_converted_weights(tmp_path):
    """`vitlab eval knn` on a converted DINOv3 checkpoint, which carries no data config: `--data` gives one
    (Fashion-MNIST made RGB and resized for a 3-channel, patch-16 model)."""
    hf = hf_model(layers=2, registers=4)
    torch.save(hf_to_official_state_dict(hf), tmp_path / "dinov3.pth")
    out = tmp_path / "vitlab.pt"
    assert main(["convert", "dinov3", "--from", "official", str(tmp_path / "dinov3.pth"), "--out", str(out)]) == 0
    (tmp_path / "data.py").write_text(
        "from configs.data.fashion_mnist import data\n"
        "from torchvision.transforms import v2\n"
        "from vitlab.config import L\n"
        "from vitlab.data import compose, normalize\n"
        "data.eval_transform = L(compose)(transforms=[L(v2.RGB)(), L(v2.Resize)(size=32),\n"
        "                                            L(normalize)(mean=[0.5] * 3, std=[0.5] * 3)])\n"
        "data.train.limit = 64\n"
        "data.val.limit = 32\n")
    result = tmp_path / "knn.json"
    assert main(["eval", "knn", "--checkpoint", str(out), "--data", str(tmp_path / "data.py"),
                 "eval.val_size=16", "eval.ks=[5,10]", "--output", str(result)]) == 0
    import json

    scores = json.loads(result.read_text())
    assert (scores["bank_samples"], scores["holdout_samples"], scores["test_samples"]) == (48, 16, 32)
    assert 0 <= scores["knn_top1"] <= 100 and scores["knn_k"] in (5, 10)
