"""The README's quick start is what CI runs: its two commands appear verbatim in .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if re.match(r"^ {7}\S", line)]


def test_quick_start_has_two_commands_one_installing_in_a_venv_and_one_running_pytest():
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    install, tests = commands
    assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
    assert "pip install -e '.[dev]'" in install and "trtq build" in install
    assert tests.startswith(". .venv/bin/activate && ") and "pytest" in tests


def test_ci_runs_exactly_the_quick_start_commands():
    ci_lines = {line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()}
    for command in _quick_start_commands():
        assert command in ci_lines, command
