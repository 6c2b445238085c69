"""The install extras: one per CUDA world, each TensorRT with the cuda-python of its CUDA major (issue 16 item 3)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _extras() -> dict[str, dict[str, Requirement]]:
    extras: dict[str, dict[str, Requirement]] = {}
    for line in importlib.metadata.metadata("trtq").get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        match = re.search(r'extra == "([^"]+)"', str(requirement.marker or ""))
        if match:
            extras.setdefault(match.group(1), {})[requirement.name] = requirement
    return extras


def _allows(requirement: Requirement, version: str) -> bool:
    return requirement.specifier.contains(version, prereleases=True)


def test_tensorrt_is_tensorrt11_with_cuda_python_13():
    tensorrt = _extras()["tensorrt"]
    assert _allows(tensorrt["tensorrt"], "11.4.0.106") and not _allows(tensorrt["tensorrt"], "10.16.1.11")
    assert _allows(tensorrt["cuda-python"], "13.4.4") and not _allows(tensorrt["cuda-python"], "12.9.10")


def test_tensorrt10_is_the_cuda12_world_with_implicit_int8():
    tensorrt10 = _extras()["tensorrt10"]
    assert _allows(tensorrt10["tensorrt-cu12"], "10.16.1.11") and not _allows(tensorrt10["tensorrt-cu12"], "11.4.0.106")
    assert _allows(tensorrt10["cuda-python"], "12.9.10") and not _allows(tensorrt10["cuda-python"], "13.0.0")
    assert not _allows(tensorrt10["cuda-python"], "12.6.0")  # no cuda.bindings.runtime before 12.6.1


def test_pycuda_extra_and_every_extra_trtq_names_exists():
    extras = _extras()
    assert "pycuda" in extras["pycuda"]
    named = set()
    for path in [*ROOT.joinpath("trtq").rglob("*.py"), *ROOT.joinpath("calibrators").rglob("*.py"),
                 ROOT / "README.md", ROOT / ".github" / "workflows" / "gpu.yml"]:
        named |= set(re.findall(r"trtq\[([a-z0-9_,]+)\]", path.read_text()))
    names = {name for group in named for name in group.split(",")}
    assert {"tensorrt", "tensorrt10", "pycuda"} <= names
    assert names <= set(extras), names - set(extras)


def test_readme_and_workflow_pass_nvidia_s_index_for_the_libs_stubs():
    from trtq.pipeline.doctor import NVIDIA_INDEX

    for path in (ROOT / "README.md", ROOT / ".github" / "workflows" / "gpu.yml"):
        text = path.read_text()
        assert f"--extra-index-url {NVIDIA_INDEX}" in text, path
    assert "-libs" in (ROOT / "README.md").read_text()


def test_gpu_workflow_builds_the_readme_quick_start_example_with_an_engine():
    readme = (ROOT / "README.md").read_text()
    quick = re.search(r"(trtq build example/\S+ --calib \S+ -c \S+ --height \d+ --width \d+)\n", readme)
    assert quick, "README has no quick-start build command"
    workflow = (ROOT / ".github" / "workflows" / "gpu.yml").read_text()
    builds = [line.strip() for line in workflow.splitlines() if line.strip().startswith("trtq build ")]
    assert len(builds) == 3 and all(b.startswith(quick.group(1) + " --require-engine") for b in builds), builds
    assert workflow.count("python -m tests.check_report") == 3
    assert workflow.count("trtq doctor --json --require engine") == 2
