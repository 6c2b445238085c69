"""The CLI group: one-line errors, exit codes, --debug, doctor."""

from __future__ import annotations

import click
from click.testing import CliRunner

from trtq.cli import main
from trtq.errors import EXIT_INTERRUPTED, EXIT_MISSING_DEPENDENCY, MissingDependencyError


def test_help_lists_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "2 usage or config error" in result.output


def test_doctor_reports_missing_tensorrt_with_fix():
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ort_line = next(line for line in lines if " onnxruntime " in line)
    assert ort_line.startswith("ok") and "CPUExecutionProvider" in ort_line
    trt_line = next(line for line in lines if " tensorrt " in line)
    try:
        import tensorrt  # noqa: F401

        assert trt_line.startswith("ok")
    except ImportError:
        assert trt_line.startswith("missing") and "trtq[tensorrt]" in trt_line


@main.command("_raise_for_test", hidden=True)
@click.argument("kind")
def _raise_for_test(kind: str) -> None:
    if kind == "missing":
        raise MissingDependencyError("tensorrt is needed", hint="pip install 'trtq[tensorrt]'")
    raise KeyboardInterrupt


def test_trtq_error_is_one_line_with_exit_code():
    result = CliRunner().invoke(main, ["_raise_for_test", "missing"])
    assert result.exit_code == EXIT_MISSING_DEPENDENCY
    assert result.output == "error: tensorrt is needed; pip install 'trtq[tensorrt]'\n"


def test_debug_shows_the_exception():
    result = CliRunner().invoke(main, ["--debug", "_raise_for_test", "missing"])
    assert isinstance(result.exception, MissingDependencyError)


def test_ctrl_c_exits_130_without_traceback():
    result = CliRunner().invoke(main, ["_raise_for_test", "interrupt"])
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in result.output and "Traceback" not in result.output


def test_log_lines_carry_the_prefix_on_every_line_and_repeats_are_dropped():
    import io
    import logging

    from trtq.cli import _LogFormatter, _OnceFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_LogFormatter("%(message)s"))
    handler.addFilter(_OnceFilter())
    log = logging.getLogger("trtq.test_once")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.setLevel(logging.INFO)
        log.info("calibration: 22 images\nevaluation: 6 held out")
        for _ in range(3):  # e.g. once per fallback trial
            log.info("raising the model's opset from %d to %d for Q/DQ", 12, 13)
        log.warning("a warning")
        log.warning("a warning")  # warnings are never dropped
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "INFO: calibration: 22 images", "INFO: evaluation: 6 held out",
        "INFO: raising the model's opset from 12 to 13 for Q/DQ", "WARNING: a warning", "WARNING: a warning"]
