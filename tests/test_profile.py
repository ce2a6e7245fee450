"""``vitlab profile``: a tiny DINOv3 run profiled end to end (report written, families summed, the
evaluation's feature extraction profiled), the operator families, and bad counts rejected by name."""

import subprocess
import sys
from pathlib import Path

import pytest

from vitlab.cli import main
from vitlab.profile import family

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "configs" / "tiny_dino.py"


def test_profile_writes_the_report(tmp_path, capsys):
    out = tmp_path / "profile.md"
    assert main(["profile", str(TINY), "--warmup", "1", "--steps", "2", "--profile-steps", "1",
                 "--eval-images", "20", "--top", "5", "--out", str(out)]) == 0
    report = out.read_text()
    assert report.startswith(f"# Profile of `{TINY}`")
    assert "fp32 matmul" in report and "s per step" in report and "GFLOP/s achieved" in report
    assert "## Training step (1 steps profiled)" in report
    assert "## Evaluation feature extraction (20 images, no grad)" in report
    assert "ms per image" in report
    assert "matrix products" in report and "copies and fills" in report
    # two tables per section (by operator; by operator and shapes), each with a header and 5 rows
    rows = [line for line in report.splitlines() if line.startswith("| `")]
    assert len(rows) == 4 * 5
    assert report in capsys.readouterr().out


def test_operator_families():
    assert family("aten::addmm") == family("aten::bmm") == "matrix products"
    assert family("aten::_fft_r2c") == "FFTs"
    assert family("aten::copy_") == family("aten::cat") == family("aten::fill_") == "copies and fills"
    assert family("aten::mkldnn_convolution") == "convolutions"
    assert family("aten::gelu") == "other"


@pytest.mark.parametrize("flag", ["--steps", "--profile-steps"])
def test_bad_counts_name_the_flag(flag):
    proc = subprocess.run([sys.executable, "-m", "vitlab", "profile", str(TINY), flag, "0", "--out", "-"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert f"{flag} must be >= 1, got 0" in proc.stderr
