"""``tools/compare_step_time.py``: one interleaved round of a tiny experiment against HEAD, in a temporary worktree."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def test_one_round_against_head_reports_both_sides_and_removes_its_worktree(tmp_path):
    out = tmp_path / "speed.md"
    worktrees = _git("worktree", "list")
    proc = subprocess.run([sys.executable, "tools/compare_step_time.py", "tests/configs/tiny_dino.py", "data.batch_size=4",
                           "--baseline", "HEAD", "--rounds", "1", "--warmup", "0", "--steps", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    head = _git("rev-parse", "--short", "HEAD")
    report = out.read_text()
    assert f"against {head}" in report and "data.batch_size=4" in report
    row = re.search(r"^\| 1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \|$", report, re.M)
    assert row, report
    base, this, ratio = map(float, row.groups())
    assert base > 0 and this > 0 and abs(ratio - base / this) < 0.01 + 0.01 * ratio
    gfl = re.search(r"fp32 matmul read (\d+)-(\d+) GFLOP/s", report)
    assert gfl and 0 < int(gfl.group(1)) <= int(gfl.group(2))
    assert "round 1: baseline" in proc.stdout
    assert _git("worktree", "list") == worktrees  # the baseline's worktree is gone


def test_a_baseline_that_is_not_a_commit_is_an_error_naming_it():
    proc = subprocess.run([sys.executable, "tools/compare_step_time.py", "tests/configs/tiny_dino.py",
                           "--baseline", "no-such-commit-xyz", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "--baseline 'no-such-commit-xyz': not a commit" in proc.stderr
    assert "Traceback" not in proc.stderr
