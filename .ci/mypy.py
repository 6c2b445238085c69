"""Type-check trtq with mypy, the mapped folders included.

trtq.calibrators and trtq.configs are installed from calibrators/ and configs/ (pyproject's package
mapping), which mypy cannot see through an editable install's import hook. So the package is laid
out as it is installed, as a tree of symlinks in a temporary folder, and mypy checks the modules
listed in pyproject.toml's [tool.mypy] there (the list grows as modules pass).

    python .ci/mypy.py          # exit code of mypy
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"calibrators": "calibrators", "configs": "configs"}  # folder -> name under trtq/


def link_tree(target: Path) -> Path:
    """`target`/trtq: symlinks to trtq/'s entries plus calibrators/ and configs/ as trtq's subpackages."""
    package = target / "trtq"
    package.mkdir()
    for entry in (ROOT / "trtq").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for folder, name in MAPPED.items():
        (package / name).symlink_to(ROOT / folder)
    return package


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="trtq-mypy-") as tmp:
        link_tree(Path(tmp))
        env = {**os.environ, "MYPYPATH": tmp}
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
        return subprocess.run(cmd, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
