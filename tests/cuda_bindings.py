"""The cuda-python runtime API (cuda.bindings.runtime) of real cuda-bindings wheels, for name checks.

Two things are read from the wheel, both present in 12.x and 13.x:
- functions and their parameters: the compiled `cuda/bindings/runtime*.so` embeds every function's
  signature as text (Cython's embedsignature: `cudaMemcpy(dst, src, size_t count, kind: cudaMemcpyKind)`);
- every identifier of the runtime's .so/.pxd/.pxi files (enum members such as cudaSuccess live in
  cyruntime.pxd in 13.x, in cyruntime_types.pxi in 12.x; struct fields such as `major` likewise).
The wheels (~7 MB) are downloaded once with `pip download --no-deps` into the test asset cache (as
tests/trt_bindings.py) and the parsed API is cached as JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.assets import CACHE
from tests.trt_bindings import identifiers

CUDA12 = "12.9.6"
CUDA13 = "13.4.4"

_SIGNATURE = re.compile(rb"\b(cuda[A-Z]\w*)\(([^()\n]*)\)")


def _wheel(version: str) -> Path:
    wheel_dir = CACHE / "wheels"
    pattern = f"cuda_bindings-{version}-*.whl"
    if not sorted(wheel_dir.glob(pattern)):
        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "-d", str(wheel_dir),
                        f"cuda-bindings=={version}"], check=True)
    return sorted(wheel_dir.glob(pattern))[-1]


def param_name(text: str) -> str:
    """`size_t count` -> count, `kind: cudaMemcpyKind` -> kind, `kind not None` -> kind."""
    text = text.split("=")[0].split(":")[0].replace("not None", "").strip()
    return text.split()[-1].lstrip("*") if text else ""


def runtime_api(version: str) -> dict:
    """{"functions": {name: [param names]}, "names": [identifiers]} of cuda-bindings `version` (cached)."""
    cached = CACHE / "cuda-bindings" / f"{version}.json"
    if not cached.exists():
        functions: dict[str, list[str]] = {}
        names: set[str] = set()
        with zipfile.ZipFile(_wheel(version)) as zf:
            for member in zf.namelist():
                if not (member.startswith("cuda/bindings/") and "runtime" in Path(member).name):
                    continue
                data = zf.read(member)
                names |= identifiers(data)
                if member.endswith(".so") and "/_internal/" not in member:
                    for name, params in _SIGNATURE.findall(data):
                        parsed = [param_name(p) for p in params.decode("latin-1").split(",") if p.strip()]
                        if len(parsed) >= len(functions.get(name.decode(), [])):
                            functions[name.decode()] = parsed
        if "cudaMalloc" not in functions or "cudaSuccess" not in names:
            raise RuntimeError(f"cuda-bindings {version} does not look like the CUDA runtime bindings")
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps({"functions": functions, "names": sorted(names)}))
        tmp.replace(cached)
    return json.loads(cached.read_text())
