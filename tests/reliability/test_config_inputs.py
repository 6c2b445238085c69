"""Issue 13.9 and 13.13 (duplicate keys): configs and flags are bounded, strict and one line on error."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from trtq.cli import main
from trtq.config import load_config
from trtq.errors import EXIT_USAGE, ConfigError

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))


@pytest.mark.parametrize(("content", "message"), [
    (BOMB.encode(), "alias"),
    (("calibration:\n" + "  " * 1 + "x: " + "[" * 5000 + "]" * 5000 + "\n").encode(), "nests"),
    ("".join("  " * i + f"k{i}:\n" for i in range(200)).encode(), "nests deeper"),
    (b"calibration:\n  method: entrop\xff\n", "not UTF-8"),
    (b"calibration:\n  method: entropy\n  method: minmax\n", "gives key 'method' twice at line 3"),
    (b"calibration:\n  num_bins: " + b"9" * 5000 + b"\n", "cannot read"),
    (b"calibration:\n  percentile: .nan\n", "finite number"),
    (b"check:\n  min_sqnr: .inf\n", "finite number"),
    (b"calibration:\n  method: " + b"x" * 100000 + b"\n", "invalid value"),
    (b"x" * (2 << 20), "more than a config can be"),
])
def test_hostile_or_broken_yaml_is_one_config_error_fast(tmp_path, content, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as info:
        load_config([str(path)])
    assert time.perf_counter() - start < 2.0
    assert len(info.value.one_line()) < 400 and "\n" not in info.value.one_line()


def _print_config(*flags):
    return CliRunner().invoke(main, ["build", "model.onnx", "--print-config", *flags])


@pytest.mark.parametrize("names", ["@Conv", "123,yes,null", "[1", "a: b"])
def test_list_flags_are_strings(names):
    result = _print_config("--exclude-nodes", names)
    assert result.exit_code == 0, result.output
    config = load_config(overrides={"exclude_nodes": names})
    assert config.quantize.exclude_nodes == [n.strip() for n in names.split(",")]
    assert all(isinstance(n, str) for n in config.quantize.exclude_nodes)


@pytest.mark.parametrize(("flag", "value"), [("--mean", "[1"), ("--mean", "0.5,x"), ("--std", "1,2,null"),
                                             ("--min-sqnr", "nan"), ("--min-sqnr", "inf"), ("--min-cosine", "-inf")])
def test_bad_numbers_in_flags_are_usage_errors(flag, value):
    result = _print_config(flag, value)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
