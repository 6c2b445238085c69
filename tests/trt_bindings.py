"""API names of real TensorRT Python bindings, from the small `tensorrt-cu12-bindings` wheels.

TensorRT cannot be imported without NVIDIA's libraries and a GPU driver, but the
bindings wheel (about 1.3 MB) holds the pybind11 extension `tensorrt.so`, whose
read-only data spells out every class, method, property and enum member name it
registers, plus the package's `__init__.py`. The wheels are downloaded once with
`pip download --no-deps` into the test asset cache (TRTQ_TEST_ASSETS, default
~/.cache/trtq-test-assets, as tests/assets.py) and their identifiers are cached
as text.

Caveat: a bare name says nothing about which class it belongs to; e.g. "INT8"
exists in 11.4 as DataType.INT8 although BuilderFlag.INT8 is gone. class_members()
recovers the class of documented methods from the docstring symbols; enum members
have none, so removed members are checked qualified (api_names.REMOVED_MEMBERS_IN_TRT11).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.assets import CACHE

TRT10 = "10.16.1.11"
TRT11 = "11.4.0.106"

_IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{2,}")
_PLATFORM = "manylinux_2_28_x86_64"  # the names do not depend on the platform; pin one for a stable cache


def _wheel(version: str) -> Path:
    wheel_dir = CACHE / "wheels"
    pattern = f"tensorrt_cu12_bindings-{version}-*.whl"
    found = sorted(wheel_dir.glob(pattern))
    if not found:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.11", "--platform", _PLATFORM, "-d", str(wheel_dir),
             f"tensorrt-cu12-bindings=={version}"],
            check=True,
        )
        found = sorted(wheel_dir.glob(pattern))
    return found[-1]


def identifiers(data: bytes) -> set[str]:
    """Identifier-like tokens (3+ characters) in a binary or source file."""
    return {m.decode("ascii") for m in _IDENTIFIER.findall(data)}


def binding_names(version: str) -> frozenset[str]:
    """Every identifier in the tensorrt_bindings package (extension + Python files) of `version`."""
    cached = CACHE / "trt-bindings" / f"{version}.txt"
    if not cached.exists():
        names: set[str] = set()
        with zipfile.ZipFile(_wheel(version)) as zf:
            for member in zf.namelist():
                if member.startswith("tensorrt_bindings/") and member.endswith((".so", ".py")):
                    names |= identifiers(zf.read(member))
        if not {"Builder", "OnnxParser", "ILogger"} <= names:
            raise RuntimeError(f"tensorrt-cu12-bindings {version} does not look like TensorRT's bindings")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text("\n".join(sorted(names)) + "\n")
        tmp.replace(cached)
    return frozenset(cached.read_text().split())


def _strings(version: str) -> list[bytes]:
    with zipfile.ZipFile(_wheel(version)) as zf:
        so = next(m for m in zf.namelist() if m.startswith("tensorrt_bindings/") and m.endswith(".so"))
        return zf.read(so).split(b"\0")


_DOC_SYMBOL = re.compile(rb"_ZN8tensorrt(\d+)")


def class_members(version: str) -> dict[str, frozenset[str]]:
    """class -> members documented under it, from the docstring symbols `tensorrt::<Class>Doc::<member>`.

    The bindings keep each docstring in a C++ variable in namespace `<Class>Doc`, whose mangled name
    stays in the symbol table; it says which class a method belongs to. Not every member has one
    (link-time optimisation drops some), so a member missing here is not proof that it is gone.
    """
    cached = CACHE / "trt-bindings" / f"{version}.classes.json"
    if not cached.exists():
        found: dict[str, set[str]] = {}
        for blob in _strings(version):
            for match in _DOC_SYMBOL.finditer(blob):
                i, n = match.end(), int(match.group(1))
                owner = blob[i:i + n].decode("latin-1")
                i += n + (blob[i + n:i + n + 1] == b"L")
                size = re.match(rb"\d+", blob[i:i + 4])
                if not owner.endswith("Doc") or not size:
                    continue
                i += len(size.group(0))
                member = blob[i:i + int(size.group(0))].decode("latin-1")
                if blob[i + len(member):i + len(member) + 1] == b"E":
                    found.setdefault(owner[:-3], set()).add(member)
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({k: sorted(v) for k, v in found.items()}))
    return {k: frozenset(v) for k, v in json.loads(cached.read_text()).items()}


def documented_params(version: str, method: str) -> set[tuple[str, ...]]:
    """Parameter lists (without self) of `def <method>(...)` examples in the bindings' docstrings."""
    pattern = re.compile(rb"def " + method.encode() + rb"\(([^)]*)\)")
    found = set()
    for blob in _strings(version):
        for params in pattern.findall(blob):
            names = tuple(p.split(b":")[0].strip().decode() for p in params.split(b",") if p.strip())
            found.add(tuple(n for n in names if n != "self"))
    return found
