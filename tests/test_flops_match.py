"""``vitlab flops CONFIG --match OTHER --vary KEY`` and ``vitlab.flops_match.match_flops``: equal-FLOPs controls."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.models.helpers import tiny
from vitlab.config import UnknownKeyError, load_config
from vitlab.flops_match import forward_flops, match_flops

ROOT = Path(__file__).resolve().parents[1]
RATIO = "model.layer_types.R.ffn_layer.ratio"


def cfg(pattern, **kw):
    return OmegaConf.create({"model": tiny(pattern, **kw)})


def vitlab(args):
    return subprocess.run([sys.executable, "-m", "vitlab", *args], cwd=ROOT, capture_output=True, text=True)


def test_scenes_control_sets_what_its_command_prints():
    """The command in experiments/dinov3_scenes_attn.py prints the override line the file sets, and both counts."""
    text = (ROOT / "experiments/dinov3_scenes_attn.py").read_text()
    command = next(line.lstrip("# ") for line in text.splitlines() if line.startswith("# vitlab flops"))
    run = vitlab(shlex.split(command)[1:])
    assert run.returncode == 0, run.stderr
    line, mine, target = run.stdout.splitlines()
    key, value = line.split("=")
    assert key == RATIO and float(value) == load_config(ROOT / "experiments/dinov3_scenes_attn.py").model.layer_types.R.ffn_layer.ratio
    assert mine.startswith("experiments/dinov3_scenes_attn.py: 0.4231 GFLOPs") and "112x112" in mine
    assert target.startswith("experiments/dinov3_scenes.py: 0.4229 GFLOPs") and "difference +0.045%" in target


def test_json_and_python_agree():
    args = ["flops", "experiments/dinov3_scenes_attn.py", "--match", "experiments/dinov3_scenes.py", "--vary", RATIO,
            "--image-size", "224", "224", "--json"]
    out = json.loads(vitlab(args).stdout)
    found = match_flops(ROOT / "experiments/dinov3_scenes_attn.py", ROOT / "experiments/dinov3_scenes.py", [RATIO],
                        image_size=224)
    assert out["overrides"] == found.overrides and out["image_size"] == [224, 224]
    assert out["flops"] == found.flops and abs(out["relative_difference"]) < 0.005


def test_tied_keys_take_one_value():
    found = match_flops(cfg("RA"), cfg("HRHA"), [RATIO, "model.layer_types.A.ffn_layer.ratio"])
    assert found.overrides == [f"{RATIO}={found.value!r}", f"model.layer_types.A.ffn_layer.ratio={found.value!r}"]
    assert found.value > 2.0 and abs(found.relative_difference) < 0.005
    assert found.flops == forward_flops(tiny("RA", layer_types={c: _ratio(c, found.value) for c in "RA"}), (16, 16))


def test_a_key_spelt_as_an_older_vitlab_did_varies_its_new_name():
    with pytest.warns(FutureWarning, match="is now 'model.layer_types.R.ffn_layer.ratio'"):
        found = match_flops(cfg("RA"), cfg("HRHA"), ["model.layer_types.R.ffn.ratio", "model.layer_types.A.ffn.ratio"])
    assert found.keys == [RATIO, "model.layer_types.A.ffn_layer.ratio"] and abs(found.relative_difference) < 0.005


def _ratio(kind, ratio):
    from tests.models.helpers import block

    b = block(kind)
    b.ffn_layer.ratio = ratio
    return b


def test_integer_key_skips_values_the_model_rejects():
    """RoPE attention with 2 heads needs a width divisible by 8: the search steps over the others."""
    found = match_flops(cfg("RR"), cfg("RR", dim=64), ["model.dim"])
    assert found.value == 64 and found.flops == found.target_flops


def test_depth_carries_the_layer_pattern():
    found = match_flops(cfg("HR"), cfg("HRHRHR"), ["model.num_blocks"])
    assert found.overrides == ["model.num_blocks=6", "model.layer_pattern=HRHRHR"] and found.flops == found.target_flops


def test_exact_search_reports_the_fewest_decimals():
    grid = match_flops(cfg("RR"), cfg("HRHR"), [RATIO])
    exact = match_flops(cfg("RR"), cfg("HRHR"), [RATIO], step=0)
    assert abs(exact.relative_difference) <= abs(grid.relative_difference)
    assert exact.value == round(exact.value, 2)  # 12.49: the widest hidden layer below the target's FLOPs


def test_a_key_the_flops_ignore_stays_put():
    found = match_flops(cfg("RR"), cfg("RR"), ["model.layer_types.R.mixer_layer.num_heads"])
    assert found.value == 2 and found.flops == found.target_flops


def test_errors_name_the_keys_and_the_closest_value():
    with pytest.raises(ValueError, match=r"no value of model.num_blocks .* within 0.5%.*closest, model.num_blocks=7 "
                                         r"model.layer_pattern=RRRRRRR, gives .* \(\+6.59%\)"):
        match_flops(cfg("RR"), cfg("HRHR"), ["model.num_blocks"])
    with pytest.raises(ValueError, match="FLOPs fall as model.patch_size grows"):
        match_flops(cfg("RR"), cfg("HRHR"), ["model.patch_size"])
    with pytest.raises(ValueError, match="model.readout: its value 'cls' is not a number"):
        match_flops(cfg("RR"), cfg("HRHR"), ["model.readout"])
    with pytest.raises(ValueError, match="need one type"):
        match_flops(cfg("RR"), cfg("HRHR"), [RATIO, "model.dim"])
    with pytest.raises(UnknownKeyError, match="closest existing keys: model.layer_types.R.ffn_layer.ratio"):
        match_flops(cfg("RR"), cfg("HRHR"), ["model.layer_types.R.ffn_layer.ratoi"])
    run = vitlab(["flops", "experiments/dinov3_scenes_attn.py", "--match", "experiments/dinov3_scenes.py"])
    assert run.returncode == 2 and "--match OTHER_CONFIG and --vary KEY go together" in run.stderr
