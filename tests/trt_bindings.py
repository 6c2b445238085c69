"""API names of real TensorRT Python bindings, from the small `tensorrt-cu12-bindings` wheels.

TensorRT cannot be imported without NVIDIA's libraries and a GPU driver, but the
bindings wheel (about 1.3 MB) holds the pybind11 extension `tensorrt.so`, whose
read-only data spells out every class, method, property and enum member name it
registers, plus the package's `__init__.py`. The wheels are downloaded once with
`pip download --no-deps` into the test asset cache (TRTQ_TEST_ASSETS, default
~/.cache/trtq-test-assets, as tests/assets.py) and their identifiers are cached
as text.

Caveat: a bare name says nothing about which class it belongs to; e.g. "INT8"
exists in 11.4 as DataType.INT8 although BuilderFlag.INT8 is gone.
"""

from __future__ import annotations

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
