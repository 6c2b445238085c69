"""Caches and Q/DQ models are byte-identical to the ones committed in tests/fixtures/byte_identity/.

The fixtures were made with the code before the architecture move (issue 19), which was to change
no output: a test that regenerates them proves it. After a deliberate change of an output, remake
them with `python -m tests.test_byte_identity` and say why in the commit.

ONNX Runtime's CPU kernels are chosen by instruction set, and its AVX-512 kernels round some
activations one ulp apart from its AVX2 ones, which moves a cache value by one ulp: the fixtures
are kept per kernel family (fixtures/byte_identity/<family>/). The x86-avx2 set was made on an AMD
EPYC (AVX2) with the pre-move code; the x86-avx512 set on an Intel Xeon (AVX-512) with code that
reproduced the AVX2 set there. A machine of another family skips, saying how to make its set.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests import assets
from tests.image_models import conv_classifier, save
from trtq.cli import main


def kernel_family() -> str:
    """The instruction-set family ONNX Runtime's CPU kernels are chosen by (x86: AVX-512F, else AVX2)."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return f"{machine}-unknown"
        if " avx512f" in flags:
            return "x86-avx512"
        return "x86-avx2" if " avx2" in flags else "x86-other"
    return machine


FIXTURES = Path(__file__).parent / "fixtures" / "byte_identity" / kernel_family()
# ema first: its run also records the moving-average observer the others do not need.
METHODS = ("ema", "minmax", "percentile", "entropy", "mse", "auto")
# Q/DQ variants: (name, cache method, extra quantize flags).
QDQ_VARIANTS = (
    ("default", "minmax", ()),
    ("int8_fp16_clip", "entropy", ("--weights", "int8", "--fp16", "--weight-clipping", "mse")),
    ("auto_exclude", "auto", ("--exclude-op-types", "Softmax,HardSigmoid")),
)
PPOCR = ("-c", "ppocr", "--height", "48", "--width", "192", "--batch-size", "4")


def _run(*args: str) -> None:
    result = CliRunner().invoke(main, ["-q", *args])
    assert result.exit_code == 0, result.output


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _caches_and_models(model: Path, data: tuple[str, ...], work: Path, methods: tuple[str, ...] = METHODS,
                       variants: tuple = QDQ_VARIANTS) -> dict[str, str]:
    """Calibrate `model` with each method (one model run, then saved statistics) and quantize the variants."""
    stats = work / "stats.npz"
    caches = {}
    for i, method in enumerate(methods):
        cache = work / f"{method}.cache"
        source = (*data, "--save-stats", str(stats)) if i == 0 else ("--load-stats", str(stats))
        _run("calibrate", str(model), *source, "--cache", str(cache), "--method", method)
        caches[method] = cache
    out = {f"{m}.cache": caches[m].read_text() for m in methods}
    for name, method, flags in variants:
        qdq = work / f"{name}.qdq.onnx"
        _run("quantize", str(model), "--cache", str(caches[method]), "-o", str(qdq), *flags)
        out[f"{name}.qdq.sha256"] = _sha256(qdq)
    return out


def classifier_outputs(work: Path) -> dict[str, str]:
    """The PP-OCR direction classifier calibrated on six real photos (the quicker methods: mse and auto are slow)."""
    photos = work / "photos"
    photos.mkdir(parents=True)
    for path in assets.color_photos()[:6]:
        shutil.copy(path, photos / path.name)
    model = assets.ocr_model(assets.OCR_CLASSIFIER)
    return _caches_and_models(model, ("--calib", str(photos), *PPOCR), work, METHODS[:4], QDQ_VARIANTS[:2])


def conv_outputs(work: Path) -> dict[str, str]:
    """The in-code conv classifier calibrated on seeded random data (no download)."""
    work.mkdir(parents=True)
    model = save(conv_classifier(), work / "conv.onnx")
    return _caches_and_models(model, ("--allow-random-data", "--random-samples", "16", "--seed", "3"), work)


def _compare(name: str, produced: dict[str, str]) -> None:
    expected = json.loads((FIXTURES / f"{name}.json").read_text())
    assert sorted(produced) == sorted(expected)
    for key, value in produced.items():
        assert value == expected[key], f"{name}/{key} differs from the committed fixture"


needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no byte-identity fixtures for this CPU's kernel "
                                    f"family ({kernel_family()}): make them with `python -m tests.test_byte_identity`")


@needs_fixtures
def test_conv_classifier_outputs_are_unchanged(tmp_path):
    _compare("conv", conv_outputs(tmp_path / "conv"))


@needs_fixtures
@pytest.mark.network
def test_ppocr_classifier_outputs_are_unchanged(tmp_path):
    _compare("ppocr_cls", classifier_outputs(tmp_path / "cls"))


def _write_fixtures() -> None:
    import tempfile

    FIXTURES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in (("conv", conv_outputs), ("ppocr_cls", classifier_outputs)):
            produced = make(Path(tmp) / name)
            (FIXTURES / f"{name}.json").write_text(json.dumps(produced, indent=1, sort_keys=True) + "\n")
            print(f"wrote {FIXTURES / name}.json", file=sys.stderr)


if __name__ == "__main__":
    _write_fixtures()
