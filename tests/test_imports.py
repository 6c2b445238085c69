"""trtq imports and its CLI runs without TensorRT, CUDA or PyAV."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import trtq
import trtq.calibrators
import trtq.configs

_BLOCK_OPTIONAL = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorrt', 'cuda', 'pycuda', 'av', 'torch', 'onnxslim'):
            raise ImportError('blocked for test: ' + name)
        return None
sys.meta_path.insert(0, _Block())
"""


def _all_modules() -> list[str]:
    # trtq.calibrators and trtq.configs come from their own folders (calibrators/, configs/), which
    # walking trtq.__path__ does not reach under an editable install: walk them too.
    names = ["trtq"]
    for package in (trtq, trtq.calibrators, trtq.configs):
        if package is not trtq:
            names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in names:
                names.append(info.name)
    return names


def test_the_walk_reaches_the_mapped_folders():
    names = _all_modules()
    assert {"trtq.calibrators.registry", "trtq.calibrators.trt_calibrators", "trtq.configs"} <= set(names)
    assert {"trtq.pipeline.build", "trtq.accuracy.compare", "trtq.runtime.session"} <= set(names)


def test_every_module_imports_without_optional_packages():
    code = _BLOCK_OPTIONAL + "import importlib\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in _all_modules()
    ) + "print('ok')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_help_works_without_optional_packages():
    code = _BLOCK_OPTIONAL + "from trtq.cli import main\nmain(['--help'])\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "inspect" in result.stdout and "doctor" in result.stdout


def test_no_top_level_optional_imports():
    # In a fresh interpreter: importing every module must not pull in TensorRT, CUDA or PyAV.
    code = "import importlib, sys\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in _all_modules()
    ) + "print(sorted(m for m in ('tensorrt', 'cuda', 'av') if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_trtq_help_imports_no_heavy_package():
    # Start-up: `trtq --help` took ~1 s importing onnx (ml_dtypes), numpy and polygraphy; commands import
    # what they need when they run (issue 15).
    code = ("import sys\nfrom trtq.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime', 'polygraphy', 'tqdm') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
