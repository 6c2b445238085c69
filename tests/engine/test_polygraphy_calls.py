"""trtq's Polygraphy calls fit the installed Polygraphy's signatures, and the pyproject floor is what they need.

Polygraphy is pure Python: another version's wheel is unpacked into the test asset cache and
tests/polygraphy_calls.py checks the calls against it in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import polygraphy
import pytest

from tests import polygraphy_calls
from tests.assets import CACHE

ROOT = Path(__file__).resolve().parents[2]
OLD_FLOOR = "0.49.26"  # the last 0.49 on PyPI; trtq declared polygraphy>=0.49 before


def _floor() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'"polygraphy>=([0-9.]+)"', text)
    assert match, "pyproject.toml declares no polygraphy floor"
    return match.group(1)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def _unpacked(version: str) -> Path:
    target = CACHE / "polygraphy" / version
    if not (target / ".done").exists():
        wheels = CACHE / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        if not sorted(wheels.glob(f"polygraphy-{version}-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels),
                            f"polygraphy=={version}"], check=True)
        with zipfile.ZipFile(sorted(wheels.glob(f"polygraphy-{version}-*.whl"))[-1]) as zf:
            zf.extractall(target)
        (target / ".done").touch()
    return target


def _problems_with(version: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_unpacked(version)), str(ROOT)])}
    out = subprocess.run([sys.executable, "-m", "tests.polygraphy_calls"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["version"] == version
    return result["problems"]


def test_scan_sees_calls_keywords_and_attributes():
    uses = polygraphy_calls.scan()
    run = [u for u in uses if u.path == ("Comparator", "run")]
    assert run and "streaming" in run[0].keywords
    assert any(u.path == ("TrtRunner",) and u.keywords == ("name",) for u in uses)
    assert any(u.path == ("G_LOGGER", "INFO") and not u.called for u in uses)


def test_a_call_that_does_not_fit_is_reported(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from polygraphy.backend.trt import TrtRunner\nTrtRunner(1, nmae='x')\n"
                   "from polygraphy.comparator import Comparator\nComparator.no_such_thing\n")
    found = polygraphy_calls.problems(polygraphy_calls.scan([bad]))
    assert any("nmae" in p for p in found) and any("no_such_thing" in p for p in found)


def test_every_polygraphy_call_fits_the_installed_polygraphy():
    assert _numbers(polygraphy.__version__) >= _numbers(_floor()), "the installed Polygraphy is below the floor"
    assert polygraphy_calls.problems() == []


@pytest.mark.network
def test_the_floor_runs_the_code_and_the_old_floor_did_not():
    assert _numbers(_floor()) >= (0, 53, 6)
    assert _problems_with(_floor()) == []
    old = _problems_with(OLD_FLOOR)
    assert any("streaming" in p for p in old) and any("SimpleCompareFunc" in p for p in old)
