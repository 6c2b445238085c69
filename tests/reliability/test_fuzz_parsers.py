"""Property-based fuzzing of every parser a user's file or flag reaches (issue 13, "done when").

Any input gives a valid result or trtq's own error, within bounded time and memory:
TensorRT text cache, ONNX Runtime text and flatbuffer tables, JSON table, JSON sidecar,
YAML config, and the comma-separated list and number flags.

Profiles (tests/conftest.py): `trtq-fast` runs by default (derandomized, a few seconds in all);
the long run is `python -m pytest tests/reliability/test_fuzz_parsers.py --hypothesis-profile trtq-long`.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from trtq.cache.files import parse_table
from trtq.cache.ort_format import format_ort_table
from trtq.cache.sidecar import read_cache, sidecar_path, write_cache
from trtq.cache.table import CalibrationTable, Provenance
from trtq.config import Config, apply_mapping, apply_overrides, to_dict
from trtq.config_yaml import load_yaml
from trtq.errors import TrtqError

SECONDS = 2.0  # per input, on a loaded 2-core machine
PEAK_BYTES = 64 << 20


def _bounded(fn: Callable[[], object]) -> object:
    """fn() or the TrtqError it raised, checked against the time and memory bounds."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        return fn()
    except TrtqError as exc:
        assert "\n" not in exc.one_line() and len(exc.one_line()) < 2000
        return exc
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < SECONDS and peak < PEAK_BYTES, (elapsed, peak)


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=20)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner,
                                                                                                  max_size=4),
                           max_leaves=20)


def _hex_scale(value: float) -> str:
    return struct.pack(">f", value).hex()


trt_lines = st.one_of(
    st.tuples(names, st.floats(width=32)).map(lambda t: f"{t[0]}: {_hex_scale(t[1])}"),
    st.tuples(names, st.text("0123456789abcdefABCDEFxg", max_size=10)).map(lambda t: f"{t[0]}: {t[1]}"),
    st.text(max_size=30))
trt_headers = st.one_of(st.just("TRT-8601-EntropyCalibration2"), st.just("TRT-101601-MinMaxCalibration"),
                        st.from_regex(r"TRT-[0-9]{0,20}-[A-Za-z0-9]{0,20}", fullmatch=True), st.text(max_size=30))
trt_texts = st.tuples(trt_headers, st.lists(trt_lines, max_size=8), st.sampled_from(["\n", "\r\n"])).map(
    lambda t: (t[0] + t[2] + t[2].join(t[1])).encode("utf-8", "surrogatepass"))


def _check_table(result: object) -> None:
    if isinstance(result, tuple):
        table, fmt = result
        assert isinstance(table, CalibrationTable) and fmt in ("trt", "json", "ort", "ort-text")
        assert all(isinstance(n, str) and isinstance(a, float) for n, a in table.amax.items())


@given(st.one_of(trt_texts, st.binary(max_size=200)))
def test_trt_cache_text(data):
    _check_table(_bounded(lambda: parse_table(data, "trt", "fuzz")))
    _check_table(_bounded(lambda: parse_table(data, "auto", "fuzz")))
    _check_table(_bounded(lambda: parse_table(data, "ort-text", "fuzz")))


json_tables = st.fixed_dictionaries(
    {"schema": st.one_of(st.just(1), scalars), "algorithm": st.one_of(st.just("entropy"), scalars),
     "tensors": st.one_of(st.dictionaries(names, st.one_of(
         st.fixed_dictionaries({"amax": st.one_of(st.floats(), scalars)}), json_values), max_size=5), json_values)},
    optional={"provenance": st.one_of(st.none(), json_values), "trt_version": scalars, "extra": scalars})


def _json_bytes(doc: object) -> bytes:
    return json.dumps(doc, allow_nan=True).encode()


@given(st.one_of(json_tables.map(_json_bytes), json_values.map(_json_bytes), st.binary(max_size=200)))
def test_json_table(data):
    _check_table(_bounded(lambda: parse_table(data, "json", "fuzz")))


def _valid_ort() -> bytes:
    return format_ort_table(CalibrationTable({"x": 1.5, "conv/out:0": 0.25, "y": 3.0}))


@given(st.one_of(st.binary(max_size=300),
                 st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6).map(
                     lambda flips: bytes(_flip(_valid_ort(), flips)))))
def test_ort_flatbuffer_table(data):
    _check_table(_bounded(lambda: parse_table(data, "ort", "fuzz")))


def _flip(data: bytes, flips: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for pos, value in flips:
        out[pos % len(out)] = value
    return out


_SIDE = Path(tempfile.mkdtemp(prefix="trtq-fuzz-"))
_CACHE = _SIDE / "m.cache"
_PROVENANCE = Provenance(model_graph_sha256="g" * 64, model_weights_sha256="w" * 64, tensor_names_sha256="t" * 64,
                         algorithm="entropy", num_samples=8).to_dict()


def _sidecar_doc(provenance: object, algorithm: object) -> dict:
    write_cache(CalibrationTable({"x": 1.0}), _CACHE, "10.16.1")
    doc = json.loads(sidecar_path(_CACHE).read_text())
    return dict(doc, provenance=provenance, algorithm=algorithm)


provenances = st.one_of(json_values, st.dictionaries(st.sampled_from(sorted(_PROVENANCE)), scalars).map(
    lambda changes: {**_PROVENANCE, **changes}))


@given(st.one_of(st.tuples(provenances, st.one_of(st.just("entropy"), scalars)).map(
    lambda t: _json_bytes(_sidecar_doc(*t))), st.binary(max_size=200)))
def test_json_sidecar(data):
    if not _CACHE.exists():
        write_cache(CalibrationTable({"x": 1.0}), _CACHE, "10.16.1")
    sidecar_path(_CACHE).write_bytes(data)
    result = _bounded(lambda: read_cache(_CACHE))
    if isinstance(result, CalibrationTable) and result.provenance is not None:
        assert isinstance(result.provenance.num_samples, int)


config_keys = st.sampled_from(sorted(f"{s}.{k}" for s, fields in to_dict(Config()).items()
                                     if isinstance(fields, dict) for k in fields))


def _nest(items: list[tuple[str, object]]) -> dict:
    doc: dict = {}
    for key, value in items:
        section, name = key.split(".", 1)
        doc.setdefault(section, {})[name] = value
    return doc


yaml_configs = st.lists(st.tuples(config_keys, json_values), max_size=6).map(
    lambda items: yaml.safe_dump(_nest(items)).encode())


@given(st.one_of(yaml_configs, st.text(max_size=200).map(str.encode), st.binary(max_size=200)))
def test_yaml_config(data):
    def load() -> Config:
        return apply_mapping(Config(), load_yaml(data, "fuzz.yaml") or {}, "fuzz.yaml")

    result = _bounded(load)
    if isinstance(result, Config):
        for section in to_dict(result).values():
            for value in (section.values() if isinstance(section, dict) else []):
                assert not (isinstance(value, float) and not math.isfinite(value))


@given(st.sampled_from(["mean", "std", "exclude_nodes", "exclude_op_types", "load_stats", "min_sqnr", "num_bins",
                        "percentile", "method"]), st.text(max_size=60))
def test_flags(name, text):
    result = _bounded(lambda: apply_overrides(Config(), {name: text}))
    if isinstance(result, Config) and name == "exclude_nodes":
        assert result.quantize.exclude_nodes == [t.strip() for t in text.split(",") if t.strip()]
