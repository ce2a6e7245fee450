"""tools/bench_mixers.py runs at a tiny size, writes its table, and finds the crossover."""

from tests.tool_loader import load_tool


def _load():
    return load_tool("bench_mixers")


def test_tiny_run_writes_markdown(tmp_path):
    tool = _load()
    out = tmp_path / "mixers.md"
    args = ["--device", "cpu", "--max-tokens", "196", "--repeats", "1", "--dim", "32", "--num-heads", "2"]
    assert tool.main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 196 | 14x14 |" in text and "Crossover (fwd+bwd)" in text


def test_crossover_needs_h_faster_from_there_on():
    tool = _load()
    rows = [{"tokens": n, "H fwd+bwd": h, "R fwd+bwd": r}
            for n, h, r in [(196, 2.0, 1.0), (784, 0.5, 1.0), (3136, 1.5, 1.0), (12544, 0.5, 1.0), (65536, 0.1, 1.0)]]
    assert tool.crossover(rows, "fwd+bwd") == 12544
    assert tool.crossover(rows[:3], "fwd+bwd") is None
