"""``tools/time_variants.py``: each variant of a sweep timed in its own fresh process, interleaved over rounds."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, "tools/time_variants.py", "tests/configs/tiny_dino_variants.py"]
STEPS = ["train.max_steps=60000"]  # the minutes column reads the overridden max_steps


def test_every_variant_timed_in_every_round_with_its_ratio_and_minutes(tmp_path):
    out = tmp_path / "time.md"
    proc = subprocess.run([*TOOL, *STEPS, "--rounds", "2", "--warmup", "0", "--steps", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [ln.split(":")[1].split()[0] for ln in proc.stdout.splitlines() if ln.startswith("round ")] == \
        ["base", "koleo_0", "base", "koleo_0"]  # interleaved, in the sweep's order
    report = out.read_text()
    rows = dict(re.findall(r"^\| (\w+) \| ([\d. |x]+) \|$", report, re.M))
    assert set(rows) == {"base", "koleo_0"}, report
    for name, cells in rows.items():
        r1, r2, med, ratio, minutes = (c.strip() for c in cells.split("|"))
        assert float(med) == sorted([float(r1), float(r2), float(med)])[1] > 0  # the median of the two rounds
        assert abs(float(minutes) - float(med) * 1000) < 0.6  # the overridden 60,000 steps
        assert ratio == "1.00x" if name == "base" else float(ratio[:-1]) > 0
    assert re.search(r"fp32 matmul read \d+-\d+ GFLOP/s", report)


def test_an_unknown_variant_and_an_experiment_without_variants_are_named():
    proc = subprocess.run([*TOOL, "--variants", "base,nope"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "nope not among base, koleo_0" in proc.stderr
    proc = subprocess.run([sys.executable, "tools/time_variants.py", "tests/configs/tiny_dino.py"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "tests/configs/tiny_dino.py: has no sweep.variants" in proc.stderr
