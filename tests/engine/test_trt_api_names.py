"""The TensorRT/CUDA names our GPU code uses exist in the TensorRT versions it claims to support.

No machine here can import TensorRT, so the GPU code is checked by name:
1. (CPU) every attribute used on a TensorRT object (also through hasattr/getattr strings and keyword
   names) in calibrators/trt_calibrators.py, calibrators/device_memory.py, trtq/engine/*.py and every
   other trtq module that touches tensorrt or cuda-python (trtq doctor) is declared in
   trtq/engine/api_names.py under the right version path, and every declared name is used;
   the overridden calibrator/logger methods take the arguments TensorRT passes;
2. (network, cached) the declared names exist in the real 10.16 / 11.4 bindings, methods under
   their class where the binary records the class (docstring symbols), the 11.x path uses none of
   the names TensorRT 11 removed, and the CUDA calls exist with their arity in the cuda-bindings
   12.x and 13.x wheels.
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
_TOUCHES_GPU = ("import tensorrt", 'require("tensorrt")', "cuda.bindings")


def _sources() -> list[Path]:
    """The calibrators, trtq/engine, and every other trtq module that imports tensorrt or cuda-python."""
    engine = sorted((ROOT / "trtq" / "engine").glob("*.py"))
    others = [p for p in sorted((ROOT / "trtq").rglob("*.py")) if p not in engine and p.name != "_lazy.py"
              and any(marker in p.read_text() for marker in _TOUCHES_GPU)]
    return [CALIBRATORS, DEVICE_MEMORY, *engine, *others]


SOURCES = _sources()


@dataclass
class Usage:
    """Attribute names used on TensorRT / CUDA objects, split by version path."""

    trt_common: set[str] = field(default_factory=set)
    trt10: set[str] = field(default_factory=set)
    cuda: set[str] = field(default_factory=set)
    members_common: set[str] = field(default_factory=set)  # "BuilderFlag.INT8"-style pairs
    probes: set[str] = field(default_factory=set)  # hasattr(trt, "X") / getattr(trt, "X", default)
    keywords: set[str] = field(default_factory=set)  # keyword names of calls on TensorRT objects
    on_class: dict[tuple[str, str], bool] = field(default_factory=dict)  # (class, member) -> on the 10.x path
    cuda_calls: dict[str, int] = field(default_factory=dict)  # cudart function -> positional arguments
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

    def _trt10(self) -> bool:
        return self.whole_file_trt10 or any(f.endswith("_trt10") for f in self.functions)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("hasattr", "getattr") and len(node.args) >= 2 \
                and isinstance(node.args[0], ast.Name) and node.args[0].id in api_names.TRT_OBJECT_ROOTS \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            self.usage.probes.add(node.args[1].value)
            self.usage.where.setdefault(node.args[1].value, f"{self.filename}:{node.lineno}")
        if isinstance(func, ast.Attribute):
            root, _ = _root_and_path(func)
            if root in api_names.TRT_OBJECT_ROOTS:
                self.usage.keywords.update(k.arg for k in node.keywords if k.arg)
            elif root in api_names.CUDA_OBJECT_ROOTS and isinstance(func.value, ast.Name):
                self.usage.cuda_calls[func.attr] = len(node.args)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        root, path = _root_and_path(node)
        trt10 = self._trt10()
        if isinstance(node.value, ast.Name) and node.value.id in api_names.ROOT_CLASSES:
            key = (api_names.ROOT_CLASSES[node.value.id], node.attr)
            self.usage.on_class[key] = self.usage.on_class.get(key, True) and trt10
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


# ---- 3. probes, keywords, overridden methods' arity, methods per class, CUDA calls (issue 16 item 8) ----

def test_scanner_sees_probes_keywords_classes_and_cuda_calls():
    tree = ast.parse("hasattr(trt, 'IInt8X')\nconfig.set_timing_cache(c, ignore_mismatch=False)\n"
                     "cudart.cudaMemcpy(a, b, c, d)\ndef f_trt10():\n    config.int8_calibrator = 1\n")
    usage = Usage()
    _Scanner(usage, "t.py", whole_file_trt10=False).visit(tree)
    assert usage.probes == {"IInt8X"} and usage.keywords == {"ignore_mismatch"}
    assert usage.cuda_calls == {"cudaMemcpy": 4}
    assert usage.on_class == {("IBuilderConfig", "set_timing_cache"): False,
                              ("IBuilderConfig", "int8_calibrator"): True}


def test_doctor_and_every_module_touching_tensorrt_is_scanned():
    names = {p.name for p in SOURCES}
    assert {"doctor.py", "trt_calibrators.py", "device_memory.py", "builder.py", "cuda_check.py"} <= names


def test_probes_and_keywords_are_declared():
    usage = _scan()
    assert usage.probes == api_names.PROBE_NAMES
    assert usage.keywords == api_names.KEYWORD_NAMES


def test_overridden_methods_take_the_arguments_tensorrt_passes():
    import inspect

    from tests.fake_trt import FakeCudart, fake_trt
    from trtq.calibrators.trt_calibrators import make_trt_calibrator
    from trtq.engine.trt_log import make_trt_logger

    calibrator = make_trt_calibrator("entropy", [], lambda: None, lambda d: None, ["x"],
                                     trt_module=fake_trt("10.16.1.11"), cudart_module=FakeCudart())
    logger = make_trt_logger(fake_trt("11.4.0.106"))
    for obj, arity in ((calibrator, api_names.CALIBRATOR_ARITY), (logger, api_names.LOGGER_ARITY)):
        for method, count in arity.items():
            inspect.signature(getattr(obj, method)).bind(*[None] * count)  # raises TypeError if it does not fit


@pytest.mark.network
def test_probes_keywords_and_overridden_arity_match_the_bindings(bindings):
    assert all(any(p in bindings[v] for v in (10, 11)) for p in api_names.PROBE_NAMES)
    assert bindings[10] & bindings[11] >= api_names.KEYWORD_NAMES
    for version, arity in ((trt_bindings.TRT10, {**api_names.CALIBRATOR_ARITY, **api_names.LOGGER_ARITY}),
                           (trt_bindings.TRT11, api_names.LOGGER_ARITY)):
        for method, count in arity.items():
            documented = trt_bindings.documented_params(version, method)
            assert all(len(params) == count for params in documented), (version, method, documented)
    assert trt_bindings.documented_params(trt_bindings.TRT10, "get_batch") == {("names",)}


@pytest.fixture(scope="module")
def classes() -> dict[int, dict[str, frozenset[str]]]:
    try:
        return {10: trt_bindings.class_members(trt_bindings.TRT10), 11: trt_bindings.class_members(trt_bindings.TRT11)}
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot download tensorrt-cu12-bindings wheels: {exc}")


@pytest.mark.network
def test_methods_belong_to_their_class_in_each_version(classes, bindings):
    assert "set_calibration_profile" in classes[10]["IBuilderConfig"]
    assert "set_calibration_profile" not in classes[11]["IBuilderConfig"]  # removed from the class in 11
    usage = _scan()
    undocumented = set()
    for (cls, member), trt10_only in usage.on_class.items():
        for version in (10,) if trt10_only else (10, 11):
            if member not in classes[version].get(cls, frozenset()):
                undocumented.add((cls, member))
                assert member in bindings[version], (cls, member, version)
            elsewhere = {c for c, members in classes[version].items() if member in members}
            assert not elsewhere or cls in elsewhere or (cls, member) in api_names.UNDOCUMENTED_MEMBERS, \
                f"{cls}.{member}: the {version}.x binary documents it only under {sorted(elsewhere)}"
    assert undocumented == set(api_names.UNDOCUMENTED_MEMBERS) & set(usage.on_class)


@pytest.mark.network
def test_cuda_calls_exist_with_their_arity_in_cuda_bindings_12_and_13():
    from tests import cuda_bindings

    usage = _scan()
    assert usage.cuda_calls["cudaMemcpy"] == 4 and "cudaDriverGetVersion" in usage.cuda_calls
    for version in (cuda_bindings.CUDA12, cuda_bindings.CUDA13):
        try:
            api = cuda_bindings.runtime_api(version)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot download cuda-bindings {version}: {exc}")
        for name, count in usage.cuda_calls.items():
            assert name in api["functions"], (version, name)
            assert len(api["functions"][name]) == count, (version, name, api["functions"][name])
        assert set(api["names"]) | set(api["functions"]) >= api_names.CUDA_NAMES, version
