"""The wheel holds every package of the source tree, the mapped folders (calibrators/, configs/) included."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> the package it is installed as.
FOLDERS = {"trtq": "trtq", "calibrators": "trtq/calibrators", "configs": "trtq/configs"}


def _source_packages() -> set[str]:
    """Every package folder of the checkout, as its path inside the wheel."""
    found = set()
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(str(Path(installed) / init.parent.relative_to(ROOT / folder)))
    return found


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources (no build/ or egg-info left in the checkout)."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = tmp_path / "wheel"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                             "-w", str(out), str(src)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("trtq-*.whl")
    return wheel


def test_every_package_and_data_file_is_in_the_wheel(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = _source_packages()
    assert {"trtq/pipeline", "trtq/accuracy", "trtq/calibrators", "trtq/configs"} <= packages
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    assert "trtq/report/report.schema.json" in names
    assert {f"trtq/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")} <= names
    # Nothing of the checkout's other folders lands in the wheel as a top-level package.
    assert {n.split("/")[0] for n in names if not n.startswith("trtq-")} == {"trtq"}
