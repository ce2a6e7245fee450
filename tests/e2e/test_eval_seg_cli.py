"""``vitlab eval seg`` end to end on a tiny checkpoint and tiny scenes, then ``vitlab viz`` with the saved head."""

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image

from vitlab.cli import main
from vitlab.config import instantiate, load_config

ROOT = Path(__file__).resolve().parents[2]


def _tiny_checkpoint(tmp_path):
    cfg = load_config(Path(__file__).with_name("tiny_fmnist.py"))
    cfg.model.num_classes = 0
    model = instantiate(cfg.model)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": OmegaConf.to_yaml(cfg)}, path)
    return path


def test_eval_seg_then_viz(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)
    tiny = ["data.train.num_scenes=20", "data.val.num_scenes=6", "data.train.size=56", "data.val.size=56",
            "data.eval_batch_size=8", "eval.seg_val_size=6", "eval.seg_epochs=1", "eval.seg_lrs=[0.01,0.1]"]
    assert main(["eval", "seg", "--checkpoint", str(ckpt), "--data", str(ROOT / "configs/data/fmnist_scenes.py"),
                 *tiny]) == 0
    result = json.loads(ckpt.with_suffix(".last1.seg.json").read_text())
    assert 0 <= result["seg_miou"] <= 100 and 0 <= result["seg_pixel_acc"] <= 100 and "seg_miou" in capsys.readouterr().out
    assert (result["bank_samples"], result["holdout_samples"], result["test_samples"]) == (14, 6, 6)
    assert result["num_classes"] == 11 and len(result["seg_iou"]) == 11 and result["seg_lr"] in (0.01, 0.1)
    assert result["patch_grid"] == [8, 8] and result["protocol"]["seg_val_size"] == 6
    saved = torch.load(ckpt.with_suffix(".last1.seg.pt"), weights_only=True)
    assert saved["num_classes"] == 11 and saved["mean"] == [0.1165]

    image = tmp_path / "scene.png"
    Image.new("L", (56, 56), color=40).save(image)
    assert main(["viz", str(ckpt), str(image), "--out", str(tmp_path / "viz"), "--size", "56"]) == 0
    seg = Image.open(tmp_path / "viz" / "seg.png")
    assert seg.size[1] > 2 * 56  # the PCA row and the mask row

    assert main(["eval", "seg", "--checkpoint", str(ckpt), "eval.seg_val_size=6"]) == 2  # fmnist: no masks
    assert "mask" in capsys.readouterr().err
