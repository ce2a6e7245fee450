"""``tools/bench_selective_scan.py`` times both algorithms at a tiny size and reports their agreement."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_both_algorithms_timed_and_agree():
    out = subprocess.run([sys.executable, "tools/bench_selective_scan.py", "--batch", "2", "--length", "20",
                          "--channels", "4", "--state", "3", "--repeats", "1"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert "chunked parallel scan (sqrt L):" in out and "streamed (one chunk):" in out and "GFLOP/s" in out
    assert float(re.search(r"largest difference (\S+)", out).group(1)) < 1e-5
