"""mypy's view of the package (.ci/mypy.py's symlink tree) and the module list in pyproject.toml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mypy_script():
    spec = importlib.util.spec_from_file_location("ci_mypy", ROOT / ".ci" / "mypy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tree_lays_out_the_mapped_folders_as_trtq_subpackages(tmp_path):
    package = _mypy_script().link_tree(tmp_path)
    assert (package / "calibrators" / "registry.py").resolve() == ROOT / "calibrators" / "registry.py"
    assert (package / "configs" / "__init__.py").resolve() == ROOT / "configs" / "__init__.py"
    assert (package / "pipeline" / "build.py").resolve() == ROOT / "trtq" / "pipeline" / "build.py"


def test_every_listed_module_and_package_exists(tmp_path):
    package = _mypy_script().link_tree(tmp_path)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    for name in config["modules"]:
        path = tmp_path.joinpath(*name.split("."))
        assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), name
    for name in config["packages"]:
        assert (tmp_path.joinpath(*name.split(".")) / "__init__.py").is_file(), name
    assert package.name == "trtq"
