"""tools/bench_memory.py at a tiny size: checkpointed blocks keep their input only, the table and the budget line."""

from tests.tool_loader import load_tool


def _load():
    return load_tool("bench_memory")


def test_tiny_run_writes_markdown(tmp_path):
    tool = _load()
    out = tmp_path / "memory.md"
    args = ["--device", "cpu", "--max-tokens", "196", "--max-plan-tokens", "784", "--dim", "32", "--num-heads", "2",
            "--batch-size", "2", "--budget-gib", "0.7"]
    assert tool.main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 196 | 14x14 |" in text and "| 784 | 28x28 | 448 |" in text
    assert "In 0.7 GiB, without checkpointing: the largest planned grid is 14x14 (196 tokens)" in text
    assert "In 0.7 GiB, with `train.activation_checkpointing=full`: the largest planned grid is 28x28" in text


def test_checkpointed_block_keeps_its_input():
    import torch

    tool = _load()
    blocks = tool._bench_mixers().build_blocks(32, 2, torch.device("cpu"), torch.float32)
    for blk in blocks.values():
        full = tool.block_memory(blk, 14, 32, torch.device("cpu"), checkpointed=False)["saved"]
        kept = tool.block_memory(blk, 14, 32, torch.device("cpu"), checkpointed=True)["saved"]
        assert kept == 196 * 32 * 4 and full > 10 * kept


def test_largest_fitting_grid():
    tool = _load()
    rows = [{"grid": g, "tokens": t, "none": n} for g, t, n in [("14x14", 196, 1.0), ("28x28", 784, 5.0)]]
    assert tool.largest(rows, "none", 4.0)["grid"] == "14x14"
    assert tool.largest(rows, "none", 0.5) is None
