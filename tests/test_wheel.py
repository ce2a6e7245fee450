"""A built wheel carries the model presets: installed in a fresh virtual environment, outside the checkout,
vitlab lists them and timm builds one (setup.py ships ``configs/models`` as ``vitlab/presets/configs/models``)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vitlab.config import model_presets

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "vitlab", "configs")


def run(*cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_the_presets_and_timm_builds_one(tmp_path):
    pytest.importorskip("timm")
    # build from a copy, so the checkout gets no build/ or egg-info
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, src)
    (wheel,) = dist.glob("vitlab-*.whl")

    # a fresh environment that reuses the installed torch and timm: --system-site-packages for a system
    # install, and a path line (no .pth code runs from it) for this environment's site-packages
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    (purelib / "_host_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel)

    script = textwrap.dedent(f"""
        import importlib.util, pathlib
        import torch, timm, vitlab, vitlab.timm
        from vitlab.config import model_presets, model_presets_dir
        venv = pathlib.Path({str(venv)!r})
        assert pathlib.Path(vitlab.__file__).is_relative_to(venv), vitlab.__file__
        assert model_presets_dir().is_relative_to(venv), model_presets_dir()
        assert importlib.util.find_spec("configs") is None  # no top-level `configs` package is installed
        assert model_presets() == {model_presets()!r}, model_presets()
        m = timm.create_model("vitlab_hybrid_small_p16", pretrained=False, num_classes=10, features_only=True)
        with torch.no_grad():
            out = m(torch.randn(1, 3, 32, 48))
        assert [tuple(o.shape) for o in out] == [(1, 384, 2, 3)] * 3, [o.shape for o in out]
        print("ok", len(model_presets()))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = run(python, "-I", "-c", script, cwd=tmp_path, env=env)  # -I: nothing from the checkout or cwd
    assert out.split() == ["ok", str(len(model_presets()))]
