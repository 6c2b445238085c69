"""Which TensorRT is installed, and what its version allows.

TensorRT 11 removed implicit quantization (the IInt8*Calibrator classes,
`config.int8_calibrator`, the INT8/FP16 builder flags): there, every network is
strongly typed and INT8 comes only from Q/DQ nodes.
"""

from __future__ import annotations

import re

from trtq._lazy import require
from trtq.errors import ConfigError

# First TensorRT major version without implicit (calibrator-based) INT8.
NO_IMPLICIT_MAJOR = 11

_VERSION = re.compile(r"^\s*v?(\d+(?:\.\d+)*)")


def trt_version() -> str | None:
    """The installed TensorRT version (e.g. "10.16.1.11"), or None if it cannot be imported."""
    try:
        trt = require("tensorrt")
    except Exception:  # a broken install (missing libraries) raises more than ImportError
        return None
    return str(getattr(trt, "__version__", "")) or None


def parse_version(version: str) -> tuple[int, ...]:
    """Numeric parts of a version string: "10.16.1" -> (10, 16, 1), "11.4.0.106" -> (11, 4, 0, 106).

    Suffixes such as "b6" or ".post1" are ignored.

    Raises:
        ConfigError: the string does not start with a number.
    """
    match = _VERSION.match(str(version))
    if not match:
        raise ConfigError(f"TensorRT version {version!r} is not a version number",
                          hint="write it like 10.16.1")
    return tuple(int(part) for part in match.group(1).split("."))


def has_implicit_quantization(version: str | tuple[int, ...]) -> bool:
    """True if this TensorRT version still has calibrators and INT8 builder flags (major < 11)."""
    parts = parse_version(version) if isinstance(version, str) else tuple(version)
    return parts[0] < NO_IMPLICIT_MAJOR
