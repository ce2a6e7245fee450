"""docs/interop.md's code runs: its Python blocks in order (one namespace, in a scratch folder) and its
shell commands."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "interop.md"


def section(name: str) -> str:
    """The text of the ``## name`` section."""
    text = DOC.read_text()
    start = text.index(f"\n## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_timm_section_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    code = blocks(section("timm"), "python")
    assert len(code) >= 5
    monkeypatch.chdir(tmp_path)  # files the blocks write (a checkpoint) land here
    namespace: dict = {"__name__": "docs_interop"}
    for i, block in enumerate(code):
        try:
            exec(compile(block, f"{DOC}:timm block {i}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"docs/interop.md, timm section, Python block {i} fails:\n{block}") from exc


def test_timm_section_commands_run():
    """Every shell command but the install: ``python`` is this interpreter, vitlab this checkout."""
    pytest.importorskip("timm")
    commands = [line for b in blocks(section("timm"), "bash") for line in b.splitlines() if line.strip()]
    assert commands[0] == "pip install timm"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in commands[1:]:
        argv = shlex.split(line)
        assert argv[0] == "python", line
        proc = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        assert "vitlab_hybrid_small_p16" in proc.stdout


def export_blocks(language: str) -> list[str]:
    """The blocks of the "Save and share" and "Export" sections."""
    return blocks(section("Save and share (safetensors + config.json, the Hub)") + section("Export (torch.export, ONNX)"),
                  language)


def test_export_section_commands_parse():
    from vitlab.cli import COMMANDS

    commands = [shlex.split(line)[1:] for block in export_blocks("bash") for line in block.splitlines()
                if line.strip().startswith(".venv/bin/vitlab ")]
    assert len(commands) >= 2 and all(argv[0] == "export" for argv in commands)
    for argv in commands:
        parser = argparse.ArgumentParser(exit_on_error=False)
        importlib.import_module(COMMANDS[argv[0]][0]).add_arguments(parser)
        parser.parse_intermixed_args(argv[1:])


def test_export_sections_python_blocks_run(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    snippets = export_blocks("python")
    offline = [s for s in snippets if "push_to_hub(" not in s]  # the one that needs the network and a login
    assert len(offline) == len(snippets) - 1 >= 3
    namespace = {}
    for snippet in offline:
        exec(compile(snippet, str(DOC), "exec"), namespace)
    assert sorted(os.listdir("hybrid-fmnist")) == ["README.md", "config.json", "model.safetensors"]
    assert Path("hybrid-fmnist.onnx").stat().st_size > 0 and Path("hybrid-fmnist.pt2").exists()
