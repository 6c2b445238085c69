"""The TensorRT/CUDA names our GPU code uses exist in the TensorRT versions it claims to support.

No machine here can import TensorRT, so the GPU code is checked by name:
1. (CPU) every attribute used on a TensorRT object in calibrators/trt_calibrators.py
   and trtq/engine/*.py is declared in trtq/engine/api_names.py under the right
   version path, and every declared name is used (the lists cannot drift);
2. (network, cached) the declared names exist in the real 10.16 / 11.4 bindings,
   and the 11.x path uses none of the names TensorRT 11 removed.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import trt_bindings
from trtq.engine import api_names

ROOT = Path(__file__).resolve().parents[2]
CALIBRATORS = ROOT / "calibrators" / "trt_calibrators.py"
DEVICE_MEMORY = ROOT / "calibrators" / "device_memory.py"
SOURCES = [CALIBRATORS, DEVICE_MEMORY, *sorted((ROOT / "trtq" / "engine").glob("*.py"))]


@dataclass
class Usage:
    """Attribute names used on TensorRT / CUDA objects, split by version path."""

    trt_common: set[str] = field(default_factory=set)
    trt10: set[str] = field(default_factory=set)
    cuda: set[str] = field(default_factory=set)
    members_common: set[str] = field(default_factory=set)  # "BuilderFlag.INT8"-style pairs
    where: dict[str, str] = field(default_factory=dict)


def _root_and_path(node: ast.Attribute) -> tuple[str | None, list[str]]:
    """Root variable of an attribute chain (through calls and subscripts) and the pure dotted path."""
    path = [node.attr]
    pure = True
    value = node.value
    while not isinstance(value, ast.Name):
        if isinstance(value, ast.Attribute):
            path.insert(0, value.attr)
            value = value.value
        elif isinstance(value, ast.Call):
            value, pure = value.func, False
        elif isinstance(value, ast.Subscript):
            value, pure = value.value, False
        else:
            return None, []
    return value.id, path if pure else [node.attr]


class _Scanner(ast.NodeVisitor):
    def __init__(self, usage: Usage, filename: str, whole_file_trt10: bool) -> None:
        self.usage, self.filename, self.functions = usage, filename, []
        self.whole_file_trt10 = whole_file_trt10

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, path = _root_and_path(node)
        trt10 = self.whole_file_trt10 or any(f.endswith("_trt10") for f in self.functions)
        if root in api_names.TRT_OBJECT_ROOTS:
            (self.usage.trt10 if trt10 else self.usage.trt_common).add(node.attr)
            if not trt10:
                self.usage.members_common.update(f"{a}.{b}" for a, b in itertools.pairwise(path))
            self.usage.where.setdefault(node.attr, f"{self.filename}:{node.lineno}")
        elif root in api_names.CUDA_OBJECT_ROOTS:
            self.usage.cuda.add(node.attr)
        self.generic_visit(node)


def _scan() -> Usage:
    usage = Usage()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), filename=str(path))
        _Scanner(usage, path.name, whole_file_trt10=path == CALIBRATORS).visit(tree)
    return usage


def _class_methods(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {f.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
            for f in c.body if isinstance(f, ast.FunctionDef)}


# ---- 1. the code matches the declared lists (CPU) ----

def test_scanner_sees_chains_through_calls_and_enum_members():
    tree = ast.parse("trt.BuilderFlag.INT8\nconfig.get_timing_cache().serialize()\nx.shape\n")
    usage = Usage()
    _Scanner(usage, "t.py", whole_file_trt10=False).visit(tree)
    assert usage.trt_common == {"BuilderFlag", "INT8", "get_timing_cache", "serialize"}
    assert "BuilderFlag.INT8" in usage.members_common


def test_every_trt_name_used_is_declared_for_its_path():
    usage = _scan()
    undeclared_common = usage.trt_common - api_names.COMMON_NAMES
    undeclared_10 = usage.trt10 - api_names.TRT10_NAMES
    assert not undeclared_common, {n: usage.where[n] for n in undeclared_common}
    assert not undeclared_10, {n: usage.where[n] for n in undeclared_10}
    assert usage.cuda <= api_names.CUDA_NAMES, usage.cuda - api_names.CUDA_NAMES


def test_every_declared_name_is_used():
    usage = _scan()
    assert usage.trt_common | usage.trt10 >= api_names.COMMON_NAMES, api_names.COMMON_NAMES - usage.trt_common
    assert usage.trt10 >= api_names.TRT10_ONLY_NAMES, api_names.TRT10_ONLY_NAMES - usage.trt10
    assert usage.cuda == api_names.CUDA_NAMES


def test_code_outside_trt10_functions_avoids_names_removed_in_11():
    usage = _scan()
    assert not usage.trt_common & api_names.REMOVED_IN_TRT11
    assert not usage.members_common & api_names.REMOVED_MEMBERS_IN_TRT11
    assert not api_names.TRT11_NAMES & api_names.REMOVED_IN_TRT11
    # The implicit path does use them, in _trt10 functions: the scan must see that.
    assert {"int8_calibrator", "set_calibration_profile", "INT8"} <= usage.trt10


def test_overridden_methods_are_declared():
    assert _class_methods(CALIBRATORS) >= api_names.CALIBRATOR_METHODS
    assert _class_methods(ROOT / "trtq" / "engine" / "trt_log.py") >= api_names.LOGGER_METHODS


# ---- 2. the declared names exist in the real bindings (downloads two ~1.3 MB wheels once) ----

@pytest.fixture(scope="module")
def bindings() -> dict[int, frozenset[str]]:
    try:
        return {10: trt_bindings.binding_names(trt_bindings.TRT10), 11: trt_bindings.binding_names(trt_bindings.TRT11)}
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot download tensorrt-cu12-bindings wheels: {exc}")


@pytest.mark.network
def test_extracted_names_match_known_api_differences(bindings):
    for name in ("IInt8EntropyCalibrator2", "build_serialized_network", "STRONGLY_TYPED", "set_memory_pool_limit"):
        assert name in bindings[10], name
    for name in ("IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile"):
        assert name not in bindings[11], name
    assert "build_serialized_network" in bindings[11]


@pytest.mark.network
def test_trt10_path_names_exist_in_10_16(bindings):
    assert api_names.TRT10_NAMES - bindings[10] == set()
    assert api_names.CALIBRATOR_METHODS - bindings[10] == set()


@pytest.mark.network
def test_trt11_path_names_exist_in_11_4(bindings):
    assert api_names.TRT11_NAMES - bindings[11] == set()
    assert api_names.LOGGER_METHODS - bindings[11] == set()


@pytest.mark.network
def test_removed_names_are_really_gone_in_11_4(bindings):
    assert api_names.REMOVED_IN_TRT11 - bindings[10] == set()
    assert api_names.REMOVED_IN_TRT11 & bindings[11] == set()
    # TensorRT 11 calls no calibrator: the methods we override there do not exist.
    assert api_names.CALIBRATOR_METHODS & bindings[11] == set()


@pytest.mark.network
def test_version_table_says_what_the_11_4_binary_holds(bindings):
    """Removed members (whose names no kept enum shares) are absent in 11.4; deprecated ones are still there."""
    removed = {m.split(".")[1] for m in api_names.REMOVED_MEMBERS_IN_TRT11} - api_names.MEMBER_NAMES_KEPT_ELSEWHERE
    assert removed and removed <= bindings[10]
    assert removed & bindings[11] == set()
    deprecated = {m.split(".")[1] for m in api_names.DEPRECATED_IN_TRT11}
    assert "DIRECT_IO" in deprecated and deprecated <= bindings[11]
    assert not api_names.DEPRECATED_IN_TRT11 & api_names.REMOVED_MEMBERS_IN_TRT11
    assert bindings[11] >= api_names.MEMBER_NAMES_KEPT_ELSEWHERE
