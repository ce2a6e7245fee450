"""``tools/bench_long_conv.py`` runs both sweeps end to end at a tiny size and writes its tables."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_token_and_batch_sweeps(tmp_path):
    for extra, expect in (([], "Crossover (fwd+bwd)"), (["--batches", "1,2"], "(9 tokens):")):
        out = tmp_path / "long_conv.md"
        subprocess.run([sys.executable, "tools/bench_long_conv.py", "--sides", "2,3", "--dim", "8", "--repeats", "1",
                        "--tokens", "18", "--out", str(out), *extra], cwd=ROOT, check=True, capture_output=True)
        text = out.read_text()
        assert "| grid | tokens | batch | direct fwd+bwd (ms)" in text and expect in text
        assert len([ln for ln in text.splitlines() if ln.startswith("| 3x3")]) == (2 if extra else 1)
