"""TensorRT's calibration cache text format (TENSORRT.md section 2).

    TRT-8601-EntropyCalibration2
    input: 3c010204
    (Unnamed Layer* 3) [Activation]_output: 3d0b7086

Line 1 is `TRT-<version>-<calibrator>`; each further line is `<tensor name>:
<hex>` where hex is the IEEE-754 float32 bit pattern of the scale (amax / 127),
big-endian, 8 lowercase hex digits (`struct.pack('>f', s).hex()`; 1/127 ->
3c010204). Tensor names may contain ': ' and spaces, so a line is split on its
LAST ': '.

TensorRT uses a cache only if its header matches the TensorRT version and the
class of the calibrator reading it; otherwise it silently recalibrates. The
header is therefore written for an exact target version. Methods TensorRT has
no calibrator for (percentile, mse, ema, auto) get the header of the calibrator trtq
hands the cache to -- EntropyCalibration2 unless told otherwise: TensorRT only
checks that the header matches that calibrator, the scales are used as they are.
"""

from __future__ import annotations

import importlib
import logging
import re
import struct

from trtq.cache.table import INT8_MAX, CalibrationTable, check_finite
from trtq.calibrators.registry import header_calibrators
from trtq.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

# Header version when none is requested and no usable TensorRT is installed: the last
# TensorRT 10.x release (TensorRT 11 removed implicit INT8 and reads no caches).
DEFAULT_TRT_VERSION = "10.16.1"
# First TensorRT major version that reads no calibration caches.
_NO_CACHE_MAJOR = 11

# Header calibrator name -> trtq algorithm name. Entropy (v1) and Legacy spellings follow
# TensorRT's CalibrationAlgoType names; no cache written with them has been seen (TENSORRT.md).
HEADER_ALGORITHMS = {
    "EntropyCalibration2": "entropy",
    "EntropyCalibration": "entropy",
    "MinMaxCalibration": "minmax",
    "LegacyCalibration": "unknown",
}
# trtq algorithm -> calibrator header: the registry's `header` metadata (entropy, minmax); other
# algorithms get DEFAULT_CALIBRATOR.
DEFAULT_CALIBRATOR = "EntropyCalibration2"

_HEADER = re.compile(r"^TRT-(\d{1,12})-(\w+)$")  # bounded: int() of 4300+ digits raises
_HEX = re.compile(r"^[0-9a-fA-F]{1,8}$")
_VERSION = re.compile(r"^\s*v?(\d{1,6})(?:\.(\d{1,6}))?(?:\.(\d{1,6}))?(?:\.\d{1,6})*\s*$")
_HEADER_HINT = ("a valid header looks like TRT-<version>-<calibrator>, e.g. TRT-8601-EntropyCalibration2 "
                f"(calibrators: {', '.join(HEADER_ALGORITHMS)})")


def _version_parts(version: str) -> tuple[int, int, int]:
    match = _VERSION.match(str(version))
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"TensorRT version {version!r} is not a version number", hint="write it like 10.16.1")
    major, minor, patch = (int(g) if g else 0 for g in match.groups())
    return major, minor, patch


def encode_trt_version(version: str) -> int:
    """The number TensorRT puts in a cache header (its NV_TENSORRT_VERSION).

    Before 10: major*1000 + minor*100 + patch ("8.6.1" -> 8601, "7.0.0" -> 7000).
    From 10: major*10000 + minor*100 + patch ("10.3.0" -> 100300). A fourth part (build) is ignored.

    Raises:
        ConfigError: not a version, or a part too large for the encoding.
    """
    major, minor, patch = _version_parts(version)
    minor_limit = 9 if major < 10 else 99
    if minor > minor_limit or patch > 99:
        raise ConfigError(f"TensorRT version {version!r} cannot be encoded in a cache header",
                          hint=f"TensorRT {major}.x headers hold minor <= {minor_limit} and patch <= 99")
    return major * (1000 if major < 10 else 10000) + minor * 100 + patch


def decode_trt_version(number: int) -> str:
    """Inverse of encode_trt_version: 8601 -> "8.6.1", 101601 -> "10.16.1".

    Numbers >= 100000 use the 10.x encoding; 10000..99999 is not a valid header number.

    Raises:
        CacheError: the number is not a TensorRT header version.
    """
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    if 1000 <= number < 10000:
        return f"{number // 1000}.{number // 100 % 10}.{number % 100}"
    raise CacheError(f"{number} is not a TensorRT version number as cache headers write them",
                     hint="8.6.1 is written 8601, 10.16.1 is written 101601")


def normalize_trt_version(version: str) -> str:
    """"10.16.1.11" -> "10.16.1", "8.6" -> "8.6.0" (what a header can say)."""
    return decode_trt_version(encode_trt_version(version))


def installed_trt_version() -> str | None:
    """Version of the installed tensorrt package, or None (imported lazily, only when called)."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception:  # a broken install (missing libraries) raises more than ImportError
        return None
    return str(getattr(trt, "__version__", "")) or None


def default_trt_version() -> str:
    """The installed TensorRT's version if it reads caches (< 11), else DEFAULT_TRT_VERSION."""
    installed = installed_trt_version()
    if installed:
        try:
            if _version_parts(installed)[0] < _NO_CACHE_MAJOR:
                return normalize_trt_version(installed)
        except ConfigError:
            pass
        log.info("installed TensorRT %s reads no calibration caches; headers target %s",
                 installed, DEFAULT_TRT_VERSION)
    return DEFAULT_TRT_VERSION


def header_calibrator(algorithm: str, calibrator: str | None = None) -> str:
    """The calibrator name for a header.

    Args:
        algorithm: trtq algorithm name of the table.
        calibrator: the TensorRT calibrator that will read the cache, as a header name
            (EntropyCalibration2, MinMaxCalibration, ...) or "entropy"/"minmax"; None: from `algorithm`.

    Raises:
        ConfigError: `calibrator` is not a known calibrator.
    """
    if calibrator is None:
        return header_calibrators().get(algorithm, DEFAULT_CALIBRATOR)
    if calibrator in HEADER_ALGORITHMS:
        return calibrator
    if calibrator in (own := header_calibrators()):
        return own[calibrator]
    raise ConfigError(f"calibrator {calibrator!r} is not a TensorRT calibrator",
                      hint=f"use entropy, minmax or one of {', '.join(HEADER_ALGORITHMS)}")


def trt_version_header(version: str, calibrator: str = "entropy") -> str:
    """The header line for a TensorRT version: "8.6.1" -> "TRT-8601-EntropyCalibration2".

    Args:
        version: target TensorRT version, e.g. "10.16.1".
        calibrator: as in header_calibrator (default: EntropyCalibration2).
    """
    number = encode_trt_version(version)
    if _version_parts(version)[0] >= _NO_CACHE_MAJOR:
        log.warning("TensorRT %s reads no calibration caches (implicit INT8 was removed in 11); "
                    "writing the header anyway", version)
    return f"TRT-{number}-{header_calibrator('unknown', calibrator)}"


def _table_calibrator(table: CalibrationTable) -> str:
    """Keep the header calibrator a table was read with (re-heading keeps it) unless it contradicts
    the table's algorithm (an entropy table under a MinMaxCalibration header, say)."""
    read = table.trt_algorithm
    if read in HEADER_ALGORITHMS and (table.algorithm not in header_calibrators()
                                      or HEADER_ALGORITHMS[read] == table.algorithm):
        return read
    return header_calibrator(table.algorithm)


def format_trt_cache(table: CalibrationTable, trt_version: str | None = None,
                     calibrator: str | None = None) -> str:
    """The TensorRT cache text of `table`, tensors in table order (callers give graph order).

    Args:
        table: the ranges; amax must be finite.
        trt_version: target TensorRT version; default table.trt_version, else the installed
            TensorRT (if < 11), else DEFAULT_TRT_VERSION.
        calibrator: calibrator that will read the cache (see header_calibrator); default: the
            header the table was read with, else from the table's algorithm.

    Raises:
        CacheError: a non-finite amax, or a tensor name that cannot be written on one line.
        ConfigError: a bad version or calibrator.
    """
    check_finite(table, "a TensorRT cache")
    version = trt_version or table.trt_version or default_trt_version()
    algo = header_calibrator(table.algorithm, calibrator) if calibrator else _table_calibrator(table)
    lines = [trt_version_header(version, algo)]
    for name, amax in table.amax.items():
        if "\n" in name or "\r" in name:
            raise CacheError(f"tensor name {name!r} holds a line break; TensorRT's cache format cannot store it")
        lines.append(f"{name}: {struct.pack('>f', amax / INT8_MAX).hex()}")
    return "\n".join(lines) + "\n"


def _parse_header(line: str, source: str) -> tuple[str, str]:
    match = _HEADER.match(line)
    if not match:
        raise CacheError(f"{source} line 1 is not a TensorRT cache header: {line[:80]!r}", hint=_HEADER_HINT)
    number, calibrator = match.groups()
    if calibrator not in HEADER_ALGORITHMS:
        raise CacheError(f"{source} line 1: unknown calibrator {calibrator!r} in header {line!r}", hint=_HEADER_HINT)
    try:
        version = decode_trt_version(int(number))
    except CacheError as exc:
        raise CacheError(f"{source} line 1: {exc.message}", hint=_HEADER_HINT) from None
    return version, calibrator


def _parse_line(line: str, lineno: int, source: str) -> tuple[str, float]:
    name, sep, digits = line.rpartition(": ")
    if not sep or not name or not _HEX.match(digits):
        raise CacheError(f"{source} line {lineno} is not '<tensor name>: <hex scale>': {line[:120]!r}",
                         hint="each line after the header is a tensor name, ': ' and up to 8 hex digits")
    (scale,) = struct.unpack(">f", bytes.fromhex(digits.rjust(8, "0")))
    return name, scale * INT8_MAX


def parse_trt_cache(data: bytes | str, source: str = "cache") -> CalibrationTable:
    """Read TensorRT cache text (CRLF, trailing spaces, unpadded hex and a missing final newline are fine).

    Args:
        data: the file content.
        source: what to call the file in errors (its path).

    Returns:
        The table: amax = scale * 127 per tensor in file order, the header's TensorRT version
        and calibrator, algorithm mapped from the calibrator.

    Raises:
        CacheError: no or an unknown header, a malformed or duplicate line (with its number).
    """
    text = _decode(data, source)
    lines = text.split("\n")
    header = lines[0].lstrip("\ufeff").rstrip()
    if not header and len(lines) == 1:
        raise CacheError(f"{source} is empty", hint=_HEADER_HINT)
    version, calibrator = _parse_header(header, source)
    amax: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines[1:], start=2):
        line = raw.rstrip()
        if not line:
            continue
        name, value = _parse_line(line, lineno, source)
        if name in amax:
            raise CacheError(f"{source} line {lineno}: tensor {name!r} appears twice (also on line {first_seen[name]})")
        amax[name], first_seen[name] = value, lineno
    return CalibrationTable(amax=amax, algorithm=HEADER_ALGORITHMS[calibrator], trt_version=version,
                            trt_algorithm=calibrator)


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CacheError(f"{source} is not UTF-8 text (byte {exc.start})", hint=_HEADER_HINT) from None
