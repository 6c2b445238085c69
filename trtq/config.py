"""The one config model of the whole pipeline.

Every setting is one dataclass field. In YAML it is `section: {field: value}`;
on the command line it is `--field-with-dashes`. Field names are unique across
sections so that a flag needs no section prefix. Precedence, lowest first:
defaults < bundled presets / YAML files given with --config (in order) < flags.

Unknown keys and wrong types are ConfigErrors that name the key and suggest
the nearest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import logging
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trtq.config_yaml import load_yaml
from trtq.errors import ConfigError, short_repr

log = logging.getLogger(__name__)


def _opt(default: Any, help: str, choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None,
         flag_value: str | None = None, path: str | None = None) -> Any:
    """A dataclass field carrying its help text (and allowed values, or a function giving them) for CLI and docs.

    `flag_value`: the value the flag takes when given without one (`--ray` alone means `--ray local`).
    `path`: what kind of path the field holds, for the CLI's checks (trtq.cli.options.PATH_TYPES): "data"
    (input file or folder), "stats" (input files), "labels" (input file or the word 'folders'),
    "output-file" (a file written, perhaps read first).
    """
    meta = {"help": help, "choices": choices, "flag_value": flag_value, "path": path}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def field_choices(f: dataclasses.Field[Any]) -> tuple[str, ...] | None:
    """The allowed values of a config field, or None; computed now for registry-backed fields (the method)."""
    choices = f.metadata.get("choices")
    return tuple(choices()) if callable(choices) else choices


def _methods() -> list[str]:
    """The registered range algorithms (user methods included); imported on first use, since the registry
    imports numpy and every algorithm, which `trtq --help` does not need."""
    from trtq.calibrators.registry import available_methods

    return available_methods()


@dataclass(frozen=True)
class DataConfig:
    """Where calibration and evaluation samples come from and how they are batched."""

    calib: str | None = _opt(None, "Calibration data: image folder/file, .npy/.npz file or folder, video, or a "
                                   "data-loader script (.py with a load_data() generator of feed dicts).",
                             path="data")
    eval: str | None = _opt(None, "Separate held-out evaluation data (same kinds as --calib).", path="data")
    eval_fraction: float | None = _opt(
        None, "Fraction of --calib held out for evaluation (default: 0.2 for build, 0 for calibrate)."
    )
    max_samples: int | None = _opt(None, "Use at most this many calibration samples.")
    batch_size: int = _opt(8, "Samples per batch fed to the model.")
    input_name: str | None = _opt(None, "Model input the images feed (default: the only image-like input).")
    allow_random_data: bool = _opt(False, "Calibrate on random inputs when no data is given (not recommended).")
    random_samples: int = _opt(32, "Number of random samples with --allow-random-data.")
    skip_bad_files: bool = _opt(False, "Skip corrupt or unreadable files with a warning instead of failing.")
    video_stride: int = _opt(10, "Use every k-th frame of video files.")
    workers: int = _opt(4, "Threads decoding images.")
    seed: int = _opt(0, "Seed for the train/eval split and random data.")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a model input: pixel p in 0..255 -> (p * scale - mean) / std."""

    resize: str = _opt(
        "shorter",
        "Resize mode: shorter side then crop, exact size, letterbox, pad-right (PaddleOCR text lines: "
        "target height, width from the aspect ratio up to the target width, padded on the right), or none.",
        ("shorter", "exact", "letterbox", "pad-right", "none"),
    )
    resize_size: int | None = _opt(None, "Shorter-side size before the centre crop (default: crop size / 0.875).")
    height: int | None = _opt(None, "Input height (default: from the model's input shape).")
    width: int | None = _opt(None, "Input width (default: from the model's input shape).")
    center_crop: bool = _opt(True, "Centre-crop to height x width after a shorter-side resize.")
    pad_value: float = _opt(114.0, "Letterbox / pad-right padding value, in 0..255 pixel units.")
    scale: float = _opt(1.0 / 255.0, "Multiplier applied to 0..255 pixels before mean/std.")
    mean: list[float] = _opt([0.0, 0.0, 0.0], "Per-channel mean subtracted after scaling.")
    std: list[float] = _opt([1.0, 1.0, 1.0], "Per-channel std dividing after the mean.")
    channel_order: str = _opt("RGB", "Channel order of the model input.", ("RGB", "BGR"))
    layout: str = _opt("NCHW", "Tensor layout of the model input.", ("NCHW", "NHWC"))
    dtype: str = _opt("float32", "Input dtype.", ("float32", "float16"))
    interpolation: str = _opt("bilinear", "Resampling filter.", ("nearest", "bilinear", "bicubic"))


@dataclass(frozen=True)
class CalibrationConfig:
    """How activation statistics become ranges, and where the cache goes."""

    method: str = _opt(
        "auto", "Range algorithm: auto picks per tensor the method with the least expected INT8 error; "
                "entropy is TensorRT's EntropyCalibration2.",
        _methods,  # the algorithm registry (trtq.calibrators.registry), user methods included
    )
    num_bins: int = _opt(2048, "Histogram bins per tensor.")
    percentile: float = _opt(99.99, "Percentile of |x| kept by the percentile method (and by auto's candidate).")
    ema_constant: float = _opt(0.01, "Averaging constant of the moving-average minmax (ema) method.")
    tensors: str = _opt(
        "auto", "Which tensors to calibrate: all float activations, inputs of quantizable ops, or those the "
                "Q/DQ model quantizes; auto: qdq for `trtq build` (all with --implicit), else all.",
        ("auto", "all", "quantizable", "qdq"),
    )
    nan_policy: str = _opt(
        "error", "NaN/Inf in an activation: fail, or ignore those values and count them.", ("error", "ignore")
    )
    power_of_two: bool = _opt(False, "Round amax itself up to a power of two (its scale 2^k / 127 is not one; "
                                     "--pow2 makes the scales powers of two).")
    cache: str | None = _opt(None, "Calibration cache path (read if valid for the model, else written).",
                             path="output-file")
    trt_version: str | None = _opt(None, "TensorRT version the cache header targets, e.g. 10.16.1.")
    force: bool = _opt(False, "Use a cache even if it does not match the model.")
    save_stats: str | None = _opt(None, "Save the raw observer statistics to this file (.npz).", path="output-file")
    load_stats: list[str] = _opt([], "Load and merge observer statistics instead of running the model.", path="stats")
    compare_methods: bool = _opt(
        False, "Also compare minmax, entropy, percentile and mse on held-out data (one calibration pass)."
    )
    provider: str = _opt("auto", "ONNX Runtime provider for calibration.", ("auto", "cpu", "cuda"))
    memory_budget: int = _opt(
        512, "MiB of exposed activations alive at once while calibrating; larger batches run in "
             "micro-batches (same results, told in the log)."
    )


@dataclass(frozen=True)
class QuantizeConfig:
    """How the Q/DQ model is made from the calibration table."""

    precision: str = _opt(
        "int8", "Quantized type; int4-weights: weight-only block-wise INT4 MatMul/Gemm weights, activations float "
                "(no activation ranges needed; trtq build can also round them with GPTQ from calibration data).",
        ("int8", "fp8", "int4-weights"),
    )
    block_size: int = _opt(
        128, "int4-weights: input channels (K) per INT4 weight scale (ModelOpt's default 128; 64 or 32: a larger "
             "model, more accurate)."
    )
    exclude_op_types: list[str] = _opt([], "Op types left in higher precision, e.g. Softmax,Resize.")
    exclude_nodes: list[str] = _opt([], "Node names left in higher precision.")
    exclude_regex: str | None = _opt(None, "Regex on node names left in higher precision.")
    attention: str = _opt(
        "float", "Transformer attention MatMuls (Q@K^T, softmax@V): left float (FP16 with --fp16), or int8 "
                 "(TensorRT's INT8 fused attention, sequences <= 512). Projections and FFN are INT8 either way.",
        ("float", "int8"),
    )
    weights: str = _opt("qdq", "Weights as float + Q/DQ or pre-quantized int8 + DQ.", ("qdq", "int8"))
    fp16: bool = _opt(False, "Emit non-quantized parts in FP16 (TensorRT 11 strongly typed).")
    weight_clipping: str = _opt(
        "none", "Per-channel weight range: max |w|, or the range minimizing the weights' squared error.",
        ("none", "mse"),
    )
    bias_correction: str = _opt(
        "none", "Shift Conv/Gemm biases so Q/DQ mean outputs match FP32 on calibration data: never, always, "
                "or auto (keep it only if it raises the held-out output SQNR).",
        ("none", "always", "auto"),
    )
    smoothquant: str = _opt(
        "auto", "SmoothQuant (Xiao et al. 2023): per input channel of MatMul/Gemm, move activation outliers "
                "into the weights. auto: on for models with outlier channels, alpha searched per layer; "
                "ALPHA in [0, 1]: that alpha everywhere; off.",
    )
    weight_rounding: str = _opt(
        "nearest", "INT8 weight integers: nearest rounding, or chosen from calibration data to minimise each "
                   "layer's output error on its quantized inputs, layer by layer (trtq.accuracy.weight_rounding): "
                   "adaround (each weight rounded up or down, learned; minutes) or learned (GPTQ, closed form).",
        ("nearest", "learned", "adaround"),
    )
    equalization: str = _opt(
        "none", "Rescale Conv -> Relu/ReLU6/identity -> Conv chains before calibration, exactly in FP32 (the "
                "equalized model is written to the output folder): cle equalizes the weight ranges (Nagel et al. "
                "2019); activations equalizes, from calibration data, the channel ranges of the activations that "
                "depthwise convs read (trtq.accuracy.activation_equalization).",
        ("none", "cle", "activations"),
    )
    activation_ranges: str = _opt(
        "histogram", "Per-tensor activation ranges of the Q/DQ model: from the histograms (--method), or re-chosen "
                     "level by level to minimise the output error of the layers reading them, with the earlier "
                     "layers quantized (trtq.accuracy.input_ranges; the cache keeps the histogram ranges).",
        ("histogram", "layer-output"),
    )
    activation_shift: str = _opt(
        "off", "Centre each channel of an activation on TensorRT's symmetric INT8 grid (Outlier Suppression+ "
               "shifting, trtq.qdq.activation_shift): a per-channel shift before the Q, taken back exactly in the "
               "reading layer's bias; linear: MatMul/Gemm and unpadded Conv inputs; all: padded Convs too (a "
               "constant border map after them, for the calibrated spatial size only); auto: all, kept only if "
               "the held-out output SQNR rises; off.",
        ("off", "linear", "all", "auto"),
    )
    fast: bool = _opt(False, "Quick path: nearest weight rounding, histogram ranges, no equalization and no activation "
                             "shift, whatever else is set.")
    pow2: bool = _opt(
        False, "Power-of-two INT8 scales (fixed-point accelerators, PACT2-style): every activation amax is rounded up "
               "to 127 * 2^k so its scale is exactly 2^k (cache and Q/DQ model), and every weight scale up to 2^k.",
    )


@dataclass(frozen=True)
class BuildConfig:
    """TensorRT engine build."""

    implicit: bool = _opt(False, "TensorRT 10.x: implicit INT8 with a calibrator/cache instead of Q/DQ.")
    require_engine: bool = _opt(False, "Fail (exit 3) when no engine can be built here.")
    workspace_mb: int | None = _opt(None, "Builder workspace limit in MiB.")
    timing_cache: str | None = _opt(None, "TensorRT timing cache file to reuse and update.", path="output-file")
    min_shapes: str | None = _opt(None, "Profile minimum shapes, e.g. x:1x3x224x224.")
    opt_shapes: str | None = _opt(None, "Profile optimum shapes.")
    max_shapes: str | None = _opt(None, "Profile maximum shapes.")
    bench: bool = _opt(False, "Also time the FP32 model, the Q/DQ model and the engine (as `trtq bench` does) and put "
                              "the latencies in the report.")
    bench_batches: list[int] = _opt([1], "Batch sizes --bench times, e.g. 1,8.")
    target_latency: float | None = _opt(
        None, "Latency budget in ms: choose among FP32, FP16, INT8 and INT8 with layers in float the configuration "
              "that meets it (measured on an engine where one can be built, else the --latency-device cost model).")
    latency_device: str = _opt("t4", "GPU whose published peaks the latency cost model uses when no engine can be "
                                     "built here.", ("t4", "a100"))


@dataclass(frozen=True)
class CheckConfig:
    """Accuracy check against ONNX Runtime FP32 and its gates."""

    min_top1_agreement: float | None = _opt(None, "Gate: minimum top-1 agreement with FP32 (0..1).")
    min_sqnr: float | None = _opt(None, "Gate: minimum output SQNR in dB.")
    min_cosine: float | None = _opt(None, "Gate: minimum cosine similarity of outputs.")
    atol: float | None = _opt(None, "Gate: absolute tolerance.")
    rtol: float | None = _opt(None, "Gate: relative tolerance.")
    per_layer: bool = _opt(
        False, "Report SQNR per quantized layer, worst first; trtq build also ranks layers by their effect alone."
    )
    fallback: bool = _opt(
        False, "When a gate fails, leave the most sensitive layers in float one at a time until it passes."
    )
    max_excluded: int = _opt(10, "Most layers the fallback may leave in float.")
    max_accuracy_loss: str | None = _opt(
        None, "Accuracy the precision choice may lose against FP32, e.g. top1:0.01 (top-1 agreement >= 0.99), "
              "sqnr:25 (output SQNR >= 25 dB), cosine:0.001; comma-separated to combine. With it, trtq build chooses "
              "the fastest of FP32, FP16, INT8 and INT8 with layers in float that keeps it.")
    labels: str | None = _opt(
        None, "True labels for top-1 accuracy: a labels file (JSON or 'key index' lines), or 'folders' "
              "when the evaluation data is one subfolder per class.", path="labels",
    )


@dataclass(frozen=True)
class PrepareConfig:
    """Changes to the FP32 model before calibration (`trtq build`): graph optimization, then pruning."""

    optimize: bool = _opt(
        False, "Optimize the graph first (onnxslim: shape inference, constant folding, BatchNorm folding, "
               "Identity/Dropout removal); refused unless its outputs equal the original's (1e-5 relative)."
    )
    prune: str | None = _opt(
        None, "Prune Conv/Gemm/MatMul weights before calibration: 2:4 (structured, TensorRT's sparse kernels), "
              "sparsity=S (zero the fraction S of smallest |w|) or magnitude=T (zero |w| < T), as `trtq prune`."
    )
    prune_scope: str = _opt("layer", "--prune sparsity=S per layer or with one global threshold.", ("layer", "global"))
    prune_exclude: list[str] = _opt([], "Node names whose weights --prune leaves dense.")


@dataclass(frozen=True)
class ClusterConfig:
    """Scale-out on Ray (trtq[ray]): calibration shards and the accuracy search as parallel tasks."""

    ray: str | None = _opt(
        None, "Run on Ray: alone or 'local' starts a local instance on this machine's cores; 'auto' or "
              "ray://HOST:PORT connects to a running cluster. The data paths must be readable on every node.",
        flag_value="local",
    )
    ray_workers: int | None = _opt(None, "Ray workers (default: one per CPU of the instance).")
    ray_gpus_per_worker: float = _opt(
        0.0, "GPUs each Ray worker reserves; above 0 calibration runs on ONNX Runtime's CUDA provider."
    )


@dataclass(frozen=True)
class Config:
    """The whole pipeline's settings."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    check: CheckConfig = field(default_factory=CheckConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    out_dir: str | None = None


SECTIONS: dict[str, type] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Config)
    if f.default_factory is not dataclasses.MISSING
}


def section_of(field_name: str) -> str:
    """The section holding `field_name` (field names are unique across sections)."""
    for section, cls in SECTIONS.items():
        if field_name in {f.name for f in dataclasses.fields(cls)}:
            return section
    raise KeyError(field_name)


def _all_keys() -> list[str]:
    keys = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
    return [*keys, "out_dir"]


def _suggest(key: str, candidates: list[str]) -> str:
    """A 'did you mean' hint for an unknown key, searching leaf names too."""
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = {c.rsplit(".", 1)[-1]: c for c in candidates}
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:
        leaf_match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
        close = [by_leaf[leaf_match[0]]] if leaf_match else []
    if close:
        return f"did you mean '{close[0]}'?"
    return "valid keys are listed by 'trtq build --print-config'"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


# Characters of an unknown key quoted in a message (and matched for a suggestion).
_SHOWN_KEY = 60
# Integers a setting can take are far smaller; this keeps int(str) and messages bounded.
_MAX_INT = 10**18


def _flag_item(key: str, text: str, item_tp: Any) -> Any:
    """One item of a comma-separated flag: the string itself, or the number it spells."""
    if item_tp is str:
        return text
    try:
        return int(text) if item_tp is int else float(text)
    except ValueError:
        raise ConfigError(f"config key '{key}' needs numbers, got {short_repr(text)}",
                          hint="give comma-separated numbers, e.g. 0.5,0.5,0.5") from None


def _coerce(key: str, value: Any, tp: Any, choices: tuple[str, ...] | None) -> Any:
    """Check `value` against the field type `tp`, converting the few safe cases."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0], choices)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # comma-separated, from a flag: each item is a string (node names
            value = [_flag_item(key, v.strip(), item_tp) for v in value.split(",") if v.strip()]  # '123', 'null')
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {short_repr(value)}",
                              hint="write a YAML list or comma-separated values")
        return [_coerce(key, v, item_tp, None) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {short_repr(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_INT:
            return value
        raise ConfigError(f"config key '{key}' must be an integer, got {short_repr(value)}")
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a number, got {short_repr(value)}")
        if abs(value) > _MAX_INT or not math.isfinite(value):  # a NaN gate passes nothing, breaks report.json
            raise ConfigError(f"config key '{key}' must be a finite number, got {short_repr(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {short_repr(value)}")
        if choices and value not in choices:
            close = difflib.get_close_matches(value[:_SHOWN_KEY], choices, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(choices)}"
            raise ConfigError(f"config key '{key}' has invalid value {short_repr(value)}", hint=hint)
        return value
    raise ConfigError(f"config key '{key}' has unsupported type {_type_name(tp)}")


def _update_section(obj: Any, section: str, values: Mapping[str, Any], source: str) -> Any:
    """Return a copy of the section dataclass `obj` with `values` checked and applied."""
    hints = typing.get_type_hints(type(obj))
    fields = {f.name: f for f in dataclasses.fields(obj)}
    changes = {}
    for name, value in values.items():
        key = f"{section}.{str(name)[:_SHOWN_KEY]}"
        if name not in fields:
            raise ConfigError(f"unknown config key '{key}' in {source}", hint=_suggest(key, _all_keys()))
        changes[name] = _coerce(key, value, hints[name], field_choices(fields[name]))
    return dataclasses.replace(obj, **changes)


def apply_mapping(config: Config, mapping: Mapping[str, Any], source: str = "config") -> Config:
    """Apply a nested `{section: {field: value}}` mapping (as read from YAML)."""
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{source} must be a mapping of sections, got {type(mapping).__name__}")
    changes: dict[str, Any] = {}
    for section, values in mapping.items():
        if section == "out_dir":
            changes["out_dir"] = _coerce("out_dir", values, str | None, None)
            continue
        if section not in SECTIONS:
            shown = str(section)[:_SHOWN_KEY]
            raise ConfigError(f"unknown config section '{shown}' in {source}",
                              hint=_suggest(shown, [*SECTIONS, *_all_keys()]))
        if not isinstance(values, Mapping):
            raise ConfigError(f"config section '{section}' in {source} must be a mapping, got {short_repr(values)}")
        changes[section] = _update_section(getattr(config, section), section, values, source)
    return dataclasses.replace(config, **changes)


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """Apply flat `{field: value}` overrides (from CLI flags); None means 'not given'."""
    nested: dict[str, dict[str, Any]] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if name == "out_dir":
            nested["out_dir"] = value  # type: ignore[assignment]
            continue
        try:
            section = section_of(name)
        except KeyError:
            raise ConfigError(f"unknown option '{name}'", hint=_suggest(name, _all_keys())) from None
        nested.setdefault(section, {})[name] = value
    return apply_mapping(config, nested, source="command-line options")


def preset_names() -> list[str]:
    """Names of the bundled presets in configs/."""
    root = importlib.resources.files("trtq.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


# Presets kept so that existing command lines and caches still work, with why they are not the right choice.
_DEPRECATED_PRESETS = {
    "ppocr": "preset 'ppocr' normalizes with ImageNet mean/std, which the PP-OCR models were not trained with; "
             "use 'ppocr-det', 'ppocr-rec' or 'ppocr-cls' (mean/std 0.5, as rapidocr and PaddleOCR feed them)",
}


def read_yaml(name_or_path: str) -> tuple[dict[str, Any], str]:
    """Read a YAML config given as a file path or a bundled preset name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} does not exist",
                              hint=f"give a YAML file or a preset: {', '.join(preset_names())}")
        try:
            text, source = path.read_bytes(), str(path)
        except OSError as exc:
            raise ConfigError(f"config file {name_or_path} cannot be read ({exc.strerror})") from None
    else:
        if name_or_path not in preset_names():
            close = difflib.get_close_matches(name_or_path, preset_names(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"presets: {', '.join(preset_names())}"
            raise ConfigError(f"no config file or preset named '{name_or_path}'", hint=hint)
        text = (importlib.resources.files("trtq.configs") / f"{name_or_path}.yaml").read_text("utf-8")
        source = f"preset {name_or_path}"
        if name_or_path in _DEPRECATED_PRESETS:
            log.warning(_DEPRECATED_PRESETS[name_or_path])
    return (load_yaml(text, source) or {}), source


def load_config(files: list[str] | tuple[str, ...] = (), overrides: Mapping[str, Any] | None = None) -> Config:
    """Resolve the config: defaults, then each YAML file or preset in order, then flag overrides."""
    config = Config()
    for name in files:
        data, source = read_yaml(name)
        config = apply_mapping(config, data, source)
    if overrides:
        config = apply_overrides(config, overrides)
    return config


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain data (for --print-config and the report)."""
    return dataclasses.asdict(config)


def to_yaml(config: Config) -> str:
    """The resolved config as YAML that load_config reads back."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
