"""docs/interop_export.md's snippets run as written (in a scratch folder) and its commands parse."""

import argparse
import importlib
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the page is merged into docs/interop.md later
DOC = next(p for p in (ROOT / "docs/interop_export.md", ROOT / "docs/interop.md") if p.exists())


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


def test_every_vitlab_command_parses():
    from vitlab.cli import COMMANDS

    commands = [shlex.split(line)[1:] for block in blocks("bash") for line in block.splitlines()
                if line.strip().startswith(".venv/bin/vitlab ")]
    assert len(commands) >= 2 and all(argv[0] == "export" for argv in commands)
    for argv in commands:
        parser = argparse.ArgumentParser(exit_on_error=False)
        importlib.import_module(COMMANDS[argv[0]][0]).add_arguments(parser)
        parser.parse_intermixed_args(argv[1:])


def test_python_snippets_run(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    snippets = blocks("python")
    offline = [s for s in snippets if "push_to_hub(" not in s]  # the one that needs the network and a login
    assert len(offline) == len(snippets) - 1 >= 3
    namespace = {}
    for snippet in offline:
        exec(compile(snippet, str(DOC), "exec"), namespace)
    assert sorted(os.listdir("hybrid-fmnist")) == ["README.md", "config.json", "model.safetensors"]
    assert Path("hybrid-fmnist.onnx").stat().st_size > 0 and Path("hybrid-fmnist.pt2").exists()
