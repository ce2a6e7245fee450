"""``vitlab eval knn|linear`` on a training checkpoint (the model is rebuilt from the stored config)."""

import json

from conftest import check, vitlab


def test_knn_and_linear_from_checkpoint(reference_run, tmp_path):
    ckpt = reference_run / "checkpoints" / "step_00000008.pt"
    out = tmp_path / "knn.json"
    proc = check(vitlab("eval", "knn", "--checkpoint", str(ckpt), "--readout", "gap", "--output", str(out)))
    result = json.loads(out.read_text())
    assert {"knn_k10_top1", "knn_k20_top1", "knn_k10_top5"} <= set(result) and "knn_k20_top1" in proc.stdout
    assert result["train_samples"] == 256 and result["val_samples"] == 64 and result["knn_k10_top1"] > 10
    proc = check(vitlab("eval", "linear", "data.val.limit=32", "--checkpoint", str(ckpt), "--epochs", "2"))
    result = json.loads(ckpt.with_suffix(".linear.json").read_text())
    assert result["val_samples"] == 32 and 0 <= result["linear_top1"] <= 100 and "linear_top1" in proc.stdout
