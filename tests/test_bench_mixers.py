"""tools/bench_mixers.py runs at a tiny size, writes its table, and finds the crossover; a measurement that
runs out of memory, dies or runs out of time becomes a table cell, and the run finishes."""

import json
import sys

from tests.tool_loader import load_tool

TINY = ["--device", "cpu", "--max-tokens", "196", "--repeats", "1", "--dim", "32", "--num-heads", "2"]


def _load():
    return load_tool("bench_mixers")


def test_tiny_run_writes_markdown(tmp_path):
    tool = _load()
    out = tmp_path / "mixers.md"
    assert tool.main([*TINY, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 196 | 14x14 |" in text and "Crossover (fwd+bwd)" in text
    assert "n/a" not in text and "Not measured" not in text


def test_allocation_over_the_memory_cap_is_an_oom_cell(tmp_path):
    """The worker's RLIMIT_AS turns an allocation past the cap into an OOM cell; the other cells still run.

    The fault allocates cap + 1 GiB (9 GiB): without the cap that would succeed (overcommit), so the cell
    reads OOM because the cap works under torch.
    """
    tool = _load()
    out = tmp_path / "mixers.md"
    fault = ["--types", "AR", "--max-memory-gib", "8", "--_fault", "196 A fwd+bwd oom"]
    assert tool.main([*TINY, *fault, "--out", str(out)]) == 0
    fwd_bwd, fwd = out.read_text().split("## fwd: ")
    assert "| 196 | 14x14 | OOM |" in fwd_bwd and "| n/a |" in fwd_bwd
    assert "Crossover (fwd+bwd): A not compared with R (left out: 196 tokens, A OOM)." in fwd_bwd
    assert "| 196 | 14x14 | OOM |" not in fwd  # A's forward was measured
    assert "n/a" not in fwd.split("## Not measured")[0]
    assert "- 196 tokens, A fwd+bwd: OOM: " in fwd and "8 GiB of address space" in fwd


def _fake_worker(body: str) -> list[str]:
    """A worker that starts measuring "R fwd" (no torch: milliseconds) and then runs ``body``."""
    begin = "@bench " + json.dumps({"begin": "R fwd", "phase": "warm-up"})
    return [sys.executable, "-c", f"import os, signal, sys, time\nprint({begin!r}, flush=True)\n{body}"]


def test_a_dead_or_late_worker_costs_the_running_cell():
    tool = _load()
    done, failed, died = tool.run_worker(_fake_worker("os.kill(os.getpid(), signal.SIGKILL)"), None)
    assert (done, died, failed["R fwd"][0]) == ({}, "R fwd", "killed (SIGKILL)")
    assert "OOM killer" in failed["R fwd"][1]
    done, failed, died = tool.run_worker(_fake_worker("time.sleep(60)"), 0.2)
    assert (done, died, failed["R fwd"][0]) == ({}, "R fwd", "timeout")
    assert tool.run_worker(_fake_worker("sys.exit(3)"), None)[1]["R fwd"][0] == "error (exit 3)"


def test_the_size_reruns_without_a_dead_cell_which_larger_sizes_skip(tmp_path, monkeypatch):
    tool = _load()
    asked = []

    def run_worker(cmd, timeout_s, say):  # R fwd+bwd dies; at 196 tokens H fwd runs out of memory inside
        spec = tool.json.loads(cmd[-1])
        asked.append((spec["side"] ** 2, spec["cells"]))
        if "R fwd+bwd" in spec["cells"]:
            return {}, {"R fwd+bwd": ("killed (SIGKILL)", "a signal")}, "R fwd+bwd"
        oom = {"H fwd": ("OOM", "over the cap")} if spec["side"] == 14 else {}
        return {c: 1.0 if c[0] == "H" else 2.0 for c in spec["cells"] if c not in oom}, oom, None

    monkeypatch.setattr(tool, "run_worker", run_worker)
    out = tmp_path / "mixers.md"
    assert tool.main([*TINY, "--max-tokens", "784", "--types", "RH", "--out", str(out)]) == 0
    everything = ["R fwd", "R fwd+bwd", "H fwd", "H fwd+bwd"]
    assert asked == [(196, everything), (196, ["R fwd", "H fwd", "H fwd+bwd"]), (784, ["R fwd", "H fwd+bwd"])]
    text = out.read_text()
    assert "| 196 | 14x14 | killed (SIGKILL) | 1.00 | n/a |" in text
    assert "| 784 | 28x28 | skipped | 1.00 | n/a |" in text
    assert "| 196 | 14x14 | 2.00 | OOM | n/a |" in text and "| 784 | 28x28 | 2.00 | skipped | n/a |" in text
    assert "Crossover (fwd+bwd): H not compared with R (left out: 196 tokens, R killed (SIGKILL); " \
           "784 tokens, R skipped)." in text
    assert "- 784 tokens, H fwd: skipped: not run: it failed at 196 tokens" in text


def test_crossover_needs_h_faster_from_there_on():
    tool = _load()
    rows = [{"tokens": n, "H fwd+bwd": h, "R fwd+bwd": r}
            for n, h, r in [(196, 2.0, 1.0), (784, 0.5, 1.0), (3136, 1.5, 1.0), (12544, 0.5, 1.0), (65536, 0.1, 1.0)]]
    assert tool.crossover(rows, "fwd+bwd") == 12544
    assert tool.crossover(rows[:3], "fwd+bwd") is None


def test_crossover_leaves_out_sizes_not_measured():
    """A failed cell is never a win: not for the type that failed, nor against an R that failed."""
    tool = _load()
    rows = [{"tokens": n, "H fwd+bwd": h, "R fwd+bwd": r}
            for n, h, r in [(196, 2.0, 1.0), (784, 0.5, 1.0), (3136, 0.5, 1.0), (12544, 0.5, "OOM"),
                            (65536, "timeout", "skipped")]]
    assert tool.crossover(rows, "fwd+bwd") == 784
    assert tool.crossover(rows[:1] + rows[3:], "fwd+bwd") is None
    rows[2]["H fwd+bwd"] = "OOM"  # a hole in the middle neither breaks nor makes the run of wins
    assert tool.crossover(rows, "fwd+bwd") == 784
    assert tool._crossover_line(rows, "fwd+bwd", "H") == (
        "Crossover (fwd+bwd): H faster than R from 784 tokens (left out: 3136 tokens, H OOM; "
        "12544 tokens, R OOM; 65536 tokens, H timeout, R skipped).")
