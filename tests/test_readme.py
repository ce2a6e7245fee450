"""The README's commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fenced_commands(text: str) -> list[str]:
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Tests**", 1)[1]
    test_command = fenced_commands(section)[0]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert test_command in ci_lines
    assert "pytest" in test_command and "tools/setup.sh" in test_command


def test_readme_main_job_command_is_present():
    readme = (ROOT / "README.md").read_text()
    main_job = fenced_commands(readme.split("**Main job**", 1)[1])[0]
    assert main_job.startswith("bash tools/setup.sh && .venv/bin/vitlab ")


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_vitlab_commands() -> list[list[str]]:
    """argv (after ``vitlab``) of every vitlab command in the bash blocks of the README and of ``docs/``."""
    import shlex

    out = []
    for line in (c for page in DOCS for c in fenced_commands(page.read_text())):
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            starts = [i for i, w in enumerate(words) if w.endswith("vitlab") and (i == 0 or words[i - 1] == "-m"
                                                                                    or w.endswith("bin/vitlab"))]
            if starts:
                out.append(words[starts[0] + 1:])
    return out


def test_every_readme_vitlab_command_parses():
    """Each command's subcommand exists and accepts its options (placeholders like CKPT are fine)."""
    import argparse
    import importlib

    from vitlab.cli import COMMANDS

    commands = readme_vitlab_commands()
    assert len(commands) >= 10
    for argv in commands:
        assert argv and argv[0] in COMMANDS, argv
        parser = argparse.ArgumentParser(prog=f"vitlab {argv[0]}", exit_on_error=False)
        importlib.import_module(COMMANDS[argv[0]][0]).add_arguments(parser)
        try:
            parser.parse_intermixed_args(argv[1:])
        except TypeError:  # nested sub-commands (`vitlab convert dinov3 ...`)
            parser.parse_args(argv[1:])


def test_readme_is_an_index_and_its_links_resolve():
    """The README stays short and points into docs/; every relative link of every page exists."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), (page.name, target)
    linked = set(re.findall(r"\]\(docs/([^)]+\.md)\)", readme))
    assert linked == {p.name for p in (ROOT / "docs").glob("*.md")}, linked
