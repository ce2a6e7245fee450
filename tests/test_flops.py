import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.helpers import tiny
from vitlab.config import apply_overrides, instantiate, load_config
from vitlab.flops import torch_flop_count

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("pattern", ["A", "R", "H", "G", "N", "C", "HRA", "NCR"])
@pytest.mark.parametrize("registers", [0, 3])
@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
@pytest.mark.parametrize("train", [False, True])
def test_analytic_flops_match_flop_counter_mode(pattern, registers, size, train):
    readout = "register_concat" if registers else "gap"
    model = instantiate(tiny(pattern, num_registers=registers, readout=readout, neck_compression_ratio=4 if registers else None))
    analytic = model.flop_count(inference=not train, image_size=size, batch_size=2)
    measured = torch_flop_count(model, size, batch_size=2, train=train)
    assert analytic == pytest.approx(measured, rel=0.01)


@pytest.mark.parametrize("pattern", ["S", "V", "L", "SVLA"])
@pytest.mark.parametrize("registers", [0, 3])
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (20, 28)])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_sequence_mixer_flops_match_flop_counter_mode(pattern, registers, size, train, padded):
    """Mamba2D (S: bidirectional, V: cross scan) and GLA2D (L): their recurrences and GLA's decayed scores
    are custom ops with FLOP formulas of their own (a recurrence counts its multiply-adds); ``padded``
    forces the grid padding on them (padding_types), which they do not mix."""
    readout = "register_concat" if registers else "gap"
    kw = dict(padding_types=pattern) if padded else {}
    model = instantiate(tiny(pattern, num_registers=registers, readout=readout,
                             neck_compression_ratio=4 if registers else None, **kw))
    analytic = model.flop_count(inference=not train, image_size=size, batch_size=2)
    measured = torch_flop_count(model, size, batch_size=2, train=train)
    assert analytic == pytest.approx(measured, rel=0.01)


def test_padding_changes_hyena_tokens():
    model = instantiate(tiny("HA", num_registers=1))
    report = model.flop_report((16, 16))
    assert report["padding"] == 2
    assert [layer["tokens"] for layer in report["layers"]] == [20, 18]


@pytest.mark.parametrize("name,gflops", [("vit_small_p16", 9.2), ("vit_base_p16", 35.1)])
def test_published_vit_flops(name, gflops):
    # timm's results tables: ViT-S/16 4.61 GMACs, ViT-B/16 17.58 GMACs at 224 (2 FLOPs per MAC)
    model = instantiate(load_config(ROOT / f"configs/models/{name}.py").model, device="meta")
    assert model.flop_count(image_size=224) / 1e9 == pytest.approx(gflops, rel=0.01)


def test_real_vit_small_layer_matches_counter():
    cfg = load_config(ROOT / "configs/models/vit_small_p16.py")
    apply_overrides(cfg, ["model.num_blocks=1"])
    model = instantiate(cfg.model)
    assert model.flop_count(inference=False, image_size=64) == pytest.approx(torch_flop_count(model, (64, 64), train=True), rel=1e-6)


@pytest.mark.parametrize("kind, letter", [("A", "A"), ("R", "R"), ("G", "R"), ("H", "H"), ("N", "N"), ("C", "C"),
                                          ("S", "S"), ("V", "V"), ("L", "L")])
def test_a_homogeneous_model_reports_its_blocks_by_their_mixers_letters(kind, letter):
    """Without a pattern each block is named by its mixer's letter (docs/models.md), not by whether it is padded."""
    from tests.models.helpers import block
    from vitlab.config import L
    from vitlab.layers import LayerNorm
    from vitlab.models import HybridViT

    cfg = L(HybridViT)(dim=32, num_blocks=2, patch_size=4, image_size=16, num_classes=0, norm_layer=L(LayerNorm)(),
                       block_layer=block(kind))
    model = instantiate(cfg, device="meta")
    assert model.layer_pattern == letter * 2
    assert [layer["type"] for layer in model.flop_report()["layers"]] == [letter] * 2


def test_a_vit_preset_is_all_attention_in_its_report():
    model = instantiate(load_config(ROOT / "configs/models/vit_small_p16.py").model, device="meta")
    assert {layer["type"] for layer in model.flop_report()["layers"]} == {"A"} and model.layer_pattern == "A" * 12


def test_the_mode_is_a_keyword_never_a_bare_boolean():
    model = instantiate(tiny("HR"), device="meta")
    with pytest.raises(TypeError, match=r"keyword arguments only .*write flop_count\(inference=False, image_size=16\)"):
        model.flop_count(False, 16)
    with pytest.raises(TypeError, match=r"flop_count\(inference=True\)"):
        model.flop_count(True)
    train, forward = model.flop_count(inference=False, image_size=16), model.flop_count(image_size=16)
    assert train > 2 * forward > 0


def test_flops_cli_table_and_json():
    cmd = [sys.executable, "-m", "vitlab", "flops", "experiments/hybrid_hhra_small.py", "model.num_registers=0"]
    table = subprocess.run(cmd + ["--image-size", "96", "128"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "GFLOPs" in table and " H " in table and " A " in table
    out = json.loads(subprocess.run(cmd + ["--json"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    assert {"flops", "train_flops", "params", "layers"} <= set(out)
    assert [layer["type"] for layer in out["layers"]] == list("HHRA" * 3)
    assert {"index", "type", "tokens", "params", "flops"} <= set(out["layers"][0])
    assert out["flops"] == sum(layer["flops"] for layer in out["layers"]) + out["stem"]["flops"] + out["head"]["flops"]


def test_flops_cli_counts_per_image_at_a_batch_size():
    """Hyena's long convolution takes the direct path at a training batch: fewer FLOPs per image there."""
    cmd = [sys.executable, "-m", "vitlab", "flops", "experiments/dinov3_quickstart.py", "--json"]
    one, batch = (json.loads(subprocess.run(cmd + ["--batch-size", str(b)], cwd=ROOT, capture_output=True, text=True,
                                            check=True).stdout) for b in (1, 64))
    assert batch["batch_size"] == 64
    hyena = [i for i, layer in enumerate(one["layers"]) if layer["type"] == "H"]
    assert hyena and all(batch["layers"][i]["flops"] < one["layers"][i]["flops"] for i in hyena)
    assert all(batch["layers"][i]["flops"] == one["layers"][i]["flops"] for i in range(4) if i not in hyena)
    model = instantiate(load_config(ROOT / "experiments/dinov3_quickstart.py").model)
    assert batch["flops"] == pytest.approx(model.flop_count(inference=True, batch_size=64) / 64, abs=8)


def test_flops_cli_rejects_typo_and_counts_huge_models_on_meta():
    cmd = [sys.executable, "-m", "vitlab", "flops", "configs/models/vit_large_p16.py"]
    bad = subprocess.run(cmd + ["model.dimm=8"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "model.dim" in bad.stderr
    # a ViT-7B-sized config (hidden 4096, 40 blocks): meta device, no weights in memory
    big = subprocess.run(cmd + ["model.dim=4096", "model.num_blocks=40", "model.block_layer.mixer_layer.num_heads=32", "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(big.stdout)["params"] > 6e9
