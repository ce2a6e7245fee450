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
