"""``tools/data_cost.py`` on the tiny DINO config: the loader's cost per batch and per step, written out."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_data_cost_report(tmp_path):
    out = tmp_path / "cost.md"
    subprocess.run([sys.executable, "tools/data_cost.py", "tests/configs/tiny_dino.py", "--batches", "2", "--steps", "2",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    text = out.read_text()
    assert "s per batch" in text and "fed by the loader" in text and "fetched beforehand" in text
    assert "fp32 matmul" in text and "from each step" in text
