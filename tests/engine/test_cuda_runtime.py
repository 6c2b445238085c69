"""trtq finds the CUDA runtime the wheels installed (nvidia/cu13/lib) before Polygraphy's CUDA wrapper looks.

The checks run Polygraphy's own search (polygraphy.cuda.cuda._find_cuda_lib_dirs + util.find_in_dirs),
so they fail if Polygraphy would not load the runtime trtq chose.
"""

from __future__ import annotations

import os
import sys

import pytest
from polygraphy import util
from polygraphy.cuda import cuda as polygraphy_cuda

from tests.fake_trt import fake_trt
from trtq.engine import cuda_runtime


@pytest.fixture()
def site(tmp_path, monkeypatch):
    """A site-packages folder on sys.path, no LD_LIBRARY_PATH, and TensorRT for CUDA 13 'installed'."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    monkeypatch.setattr(cuda_runtime, "SYSTEM_DIRS", ())
    monkeypatch.setattr(cuda_runtime, "tensorrt_cuda_major", lambda: 13)
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)  # a namespace package remembers the folders of earlier tests
    yield folder
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        del sys.modules[name]


def _wheel_lib(site, major: int):
    lib = site.joinpath(*cuda_runtime.WHEEL_DIRS[major]) / f"libcudart.so.{major}"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"\x7fELF")
    return lib


def _polygraphy_finds():
    """Polygraphy's search, in its order, without the machine's own folders (this one may have a toolkit)."""
    dirs = [d for d in polygraphy_cuda._find_cuda_lib_dirs() if d not in ("/usr/local/cuda/lib64", "/usr/lib", "/lib")]
    return util.find_in_dirs("libcudart.so*", dirs)


def test_polygraphy_loads_the_cuda13_wheel_runtime_once_trtq_prepared_it(site):
    lib = _wheel_lib(site, 13)
    assert str(lib) not in _polygraphy_finds()  # Polygraphy alone does not search nvidia/cu13/lib
    choice = cuda_runtime.prepare_cuda_runtime()
    assert choice.path == lib and choice.source == "wheel" and choice.wanted_major == 13
    assert _polygraphy_finds()[0] == str(lib)
    assert cuda_runtime.prepare_cuda_runtime() == choice  # idempotent: the folder is not added twice
    assert str(lib.parent) in choice.describe() or str(lib) in choice.describe()


def test_the_runtime_of_tensorrt_s_cuda_major_wins_over_another(site):
    cu12, cu13 = _wheel_lib(site, 12), _wheel_lib(site, 13)
    assert _polygraphy_finds()[0] == str(cu12)  # Polygraphy alone would load the CUDA 12 runtime
    assert cuda_runtime.prepare_cuda_runtime().path == cu13
    assert _polygraphy_finds()[0] == str(cu13)


def test_without_a_wheel_runtime_polygraphy_s_own_search_is_reported_and_left_alone(site, tmp_path, monkeypatch):
    system = tmp_path / "cuda" / "lib64"
    system.mkdir(parents=True)
    (system / "libcudart.so.12").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(system))
    choice = cuda_runtime.prepare_cuda_runtime()
    assert choice.source == "system" and choice.path == system / "libcudart.so.12"
    assert choice.path and str(choice.path) == _polygraphy_finds()[0]
    assert os.environ["LD_LIBRARY_PATH"] == str(system)
    monkeypatch.delenv("LD_LIBRARY_PATH")
    assert cuda_runtime.prepare_cuda_runtime().path is None


def test_trt_runner_prepares_the_runtime_before_polygraphy_starts(site, tmp_path, monkeypatch):
    lib = _wheel_lib(site, 13)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt("11.4.0.106"))
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"ENGINE")
    from trtq.engine.runner import trt_runner

    trt_runner(engine)
    assert _polygraphy_finds()[0] == str(lib)
