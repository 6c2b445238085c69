"""Find the CUDA runtime library (libcudart) the pip wheels installed, before Polygraphy looks for one.

Polygraphy's CUDA wrapper (polygraphy.cuda.cuda.Cuda, created on first use by TrtRunner) searches
`libcudart.so*` in LD_LIBRARY_PATH, /usr/local/cuda/lib64, /usr/lib, /lib and
`site-packages/nvidia/cuda_runtime/lib` (the CUDA 12 wheel, nvidia-cuda-runtime-cu12). The CUDA 13
wheel (nvidia-cuda-runtime 13.x, pulled in by tensorrt-cu13) installs `nvidia/cu13/lib/libcudart.so.13`,
which it does not search: on a machine with only a driver, TrtRunner then fails at start. Polygraphy
reads LD_LIBRARY_PATH when it builds the wrapper, so putting the wheel's directory first there (in this
process, before the first TrtRunner) makes it load the runtime TensorRT was built against.

    choice = prepare_cuda_runtime()   # idempotent; choice.path, choice.source ("wheel"/"system"/None)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Where the runtime wheels put libcudart, per CUDA major version (relative to a site-packages folder).
WHEEL_DIRS = {13: ("nvidia", "cu13", "lib"), 12: ("nvidia", "cuda_runtime", "lib")}
# The folders Polygraphy searches besides LD_LIBRARY_PATH and the CUDA 12 wheel (polygraphy/cuda/cuda.py).
SYSTEM_DIRS = ("/usr/local/cuda/lib64", "/usr/lib", "/lib")
PATTERN = "libcudart.so*"


@dataclass(frozen=True)
class RuntimeChoice:
    """The libcudart Polygraphy will load: path, where it comes from, and the CUDA major it was picked for."""

    path: Path | None
    source: str | None  # "wheel" (set by trtq), "system" (found by Polygraphy's own search), None (none found)
    wanted_major: int | None

    def describe(self) -> str:
        if self.path is None:
            return "no libcudart found (Polygraphy's TrtRunner cannot start)"
        major = f", for CUDA {self.wanted_major} TensorRT" if self.wanted_major else ""
        return f"{self.path} ({self.source}{major})"


def _site_dirs() -> list[Path]:
    """sys.path folders plus the locations of the `nvidia` namespace package (a .pth may add it)."""
    dirs = [Path(p) for p in sys.path if p and os.path.isdir(p)]
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(loc).parent for loc in spec.submodule_search_locations]
    return list(dict.fromkeys(dirs))


def wheel_runtimes() -> dict[int, Path]:
    """CUDA major -> the libcudart a runtime wheel installed (first one on sys.path)."""
    found: dict[int, Path] = {}
    for major, parts in WHEEL_DIRS.items():
        for site in _site_dirs():
            libs = sorted(site.joinpath(*parts).glob(PATTERN))
            if libs:
                found[major] = libs[-1]
                break
    return found


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def tensorrt_cuda_major() -> int | None:
    """The CUDA major the installed TensorRT wheels are built for (tensorrt-cu13 / -cu12), else cuda-python's."""
    for major in (13, 12):
        if any(_installed(f"tensorrt-cu{major}{suffix}") for suffix in ("", "-libs", "-bindings")):
            return major
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return int(importlib.metadata.version(dist).split(".")[0])
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    return None


def _system_runtime() -> Path | None:
    """What Polygraphy's own search (without trtq's help) finds first."""
    dirs = [*os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep), *SYSTEM_DIRS]
    dirs += [str(site.joinpath(*WHEEL_DIRS[12])) for site in _site_dirs()]
    for folder in dirs:
        if folder and os.path.isdir(folder):
            libs = sorted(Path(folder).glob(PATTERN))
            if libs:
                return libs[0]
    return None


def choose_runtime() -> RuntimeChoice:
    """The wheel runtime for TensorRT's CUDA major if there is one, else what Polygraphy would find itself."""
    wanted = tensorrt_cuda_major()
    wheels = wheel_runtimes()
    if wanted in wheels:
        return RuntimeChoice(wheels[wanted], "wheel", wanted)
    system = _system_runtime()
    if system is not None:
        return RuntimeChoice(system, "system", wanted)
    if wheels:  # a runtime of another major: better than none, doctor reports the mismatch
        major = max(wheels)
        return RuntimeChoice(wheels[major], "wheel", wanted)
    return RuntimeChoice(None, None, wanted)


def prepare_cuda_runtime() -> RuntimeChoice:
    """Put the chosen wheel runtime's folder first in LD_LIBRARY_PATH (this process), so Polygraphy loads it."""
    choice = choose_runtime()
    if choice.source == "wheel" and choice.path is not None:
        folder = str(choice.path.parent)
        paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        if not paths or paths[0] != folder:
            os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([folder, *(p for p in paths if p != folder)])
            log.debug("CUDA runtime for Polygraphy: %s", choice.path)
    return choice
