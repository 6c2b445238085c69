"""Calibration cost on a real model and real photos: trtq vs plain inference vs ONNX Runtime's quantize_static.

    python benchmarks/bench_calibration.py --runs plain,trtq-all,ort-percentile   # smoke run (N = 8, 16), 10 s
    python benchmarks/bench_calibration.py                          # all five runs at N = 8, 16: ~10 min
    python benchmarks/bench_calibration.py --sizes 64,256,512       # the README table, ~15 min on 2 cores
    python benchmarks/bench_calibration.py --sizes 64,256,512 --height 320 --width 320 --runs plain,trtq-all

The default input is 64x64 because ONNX Runtime's calibrators keep every
activation of every sample: about 7 MB per sample at 64x64, 175 MB at 320x320,
so N = 512 needs ~4 GB at 64x64 and ~90 GB at 320x320. ORT's entropy search
with 2048 bins takes about 4 minutes whatever N (a Python loop per tensor).

Model: PP-OCRv4 detector (tests/assets.py, dynamic H x W input 'x') at a fixed
--height x --width with the `ppocr` preset's preprocessing. Data: N JPEGs cut
deterministically (crop, flip, scale) from the real colour photos of
tests/assets.py, written once into --cache-dir. Every measurement runs in its
own child process; its peak RSS is that child's ru_maxrss (os.wait4), its time
the wall clock inside the child from loading the model to the last output, and
its CPU time the child's user + system time. All three read and preprocess the
images the same way: trtq's DataReader (4 decoding threads, batches of
--batch-size).

  plain          ONNX Runtime FP32 inference of the N samples (default session options, the
                 providers trtq calibrates with, the same batches).
  trtq <scope>   trtq.pipeline.calibrate.calibrate() with the ppocr preset and --method (entropy unless told):
                 tensor selection, inference with the calibrated tensors exposed, histogram
                 observers, the method's ranges, cache + sidecar written. Scope 'all' (the default)
                 and 'quantizable' (inputs of quantizable ops only).
  ORT <method>   onnxruntime.quantization.quantize_static(QDQ, QInt8) over the same batches:
                 augmenting the model, calibration inference (ORT keeps every batch's
                 activations), histograms, range search, quantizing and writing the QDQ model.
                 Entropy with 2048 histogram bins (quantize_static has no option for the
                 calibrator's bin count, so create_calibrator is wrapped to pass num_bins=2048;
                 ORT's own default is 128) and Percentile (2048 bins, 99.99 %). Without
                 quant_pre_process. "calib s" is the time up to the end of the range search.

Prints a Markdown table of wall time, CPU time and peak RSS per run, and the
ratios the issue asks about (trtq/plain, trtq/ORT, trtq RSS at the largest N over
the smallest, trtq RSS/ORT RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GENERATOR_VERSION = 1
RUNS = ("plain", "trtq-all", "trtq-quantizable", "ort-entropy", "ort-percentile")
LABELS = {"plain": "plain", "trtq-all": "trtq all", "trtq-quantizable": "trtq quantizable",
          "ort-entropy": "ORT entropy", "ort-percentile": "ORT percentile"}


# ---------------------------------------------------------------- data


def generate(folder: Path, n: int) -> None:
    """n JPEGs cut from the real photos: sample i is a seeded crop (50-100 % of each side) of photo
    i mod 14, flipped with probability 1/2, scaled to a longer side of 320-640 pixels."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from tests import assets

    marker = folder / f".done-v{GENERATOR_VERSION}-{n}"
    done = sorted(folder.glob(f".done-v{GENERATOR_VERSION}-*"))
    if any(int(p.name.rsplit("-", 1)[1]) >= n for p in done):
        return
    folder.mkdir(parents=True, exist_ok=True)
    photos = assets.color_photos()
    for i in range(n):
        rng = np.random.default_rng([GENERATOR_VERSION, i])
        with Image.open(photos[i % len(photos)]) as source:
            image = source.convert("RGB")
        w, h = image.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = image.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        longer = int(rng.integers(320, 641))
        scale = longer / max(cw, ch)
        image = image.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.Resampling.BILINEAR)
        image.save(folder / f"img_{i:05d}.jpg", quality=92)
    for p in done:
        p.unlink()
    marker.touch()


# ---------------------------------------------------------------- children (one measurement each)


def _config(args: argparse.Namespace, **extra):
    from trtq.config import load_config

    return load_config(["ppocr"], {"calib": str(args.data), "max_samples": args.n, "height": args.height,
                                   "width": args.width, "batch_size": args.batch_size, **extra})


def run_plain(args: argparse.Namespace, model_path: Path, tmp: Path) -> dict:
    import onnxruntime as ort

    from trtq.data import make_readers
    from trtq.onnx_model import model as model_io
    from trtq.runtime.session import providers_for

    model = model_io.load_model(model_path)
    config = _config(args)
    plan = make_readers(config, model_io.graph_inputs(model))
    model.ir_version = min(model.ir_version, model_io.MAX_IR_VERSION)
    # Default session options, as a user would run the model; the providers trtq's calibration uses.
    session = ort.InferenceSession(model.SerializeToString(), providers=providers_for(config.calibration.provider))
    samples = 0
    for batch in plan.calib:
        session.run(None, batch.feeds)
        samples += len(batch.keys)
    return {"samples": samples}


def run_trtq(args: argparse.Namespace, model_path: Path, tmp: Path, scope: str) -> dict:
    from trtq.pipeline.calibrate import calibrate

    config = _config(args, tensors=scope, method=args.method, cache=str(tmp / "model.cache"))
    outcome = calibrate(model_path, config, show_progress=False)
    return {"samples": outcome.table.provenance.num_samples, "tensors": len(outcome.table.amax),
            "collect_s": round(outcome.seconds, 2)}


def run_ort(args: argparse.Namespace, model_path: Path, tmp: Path, method: str) -> dict:
    import importlib

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static

    from trtq.data import make_readers
    from trtq.onnx_model import model as model_io

    model = model_io.load_model(model_path)
    plan = make_readers(_config(args), model_io.graph_inputs(model))
    marks: dict[str, float] = {}
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")  # the package hides it
    original = ort_quantize.create_calibrator

    def create_calibrator(*a, **kw):  # quantize_static cannot set the calibrator's bin count
        kw["extra_options"] = {**(kw.get("extra_options") or {}), "num_bins": 2048}
        calibrator = original(*a, **kw)
        compute = calibrator.compute_data

        def compute_data():
            result = compute()
            marks["calibrated"] = time.perf_counter()
            return result

        calibrator.compute_data = compute_data
        marks["tensors"] = len(calibrator.tensors_to_calibrate or ())
        return calibrator

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(plan.calib)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else batch.feeds

    ort_quantize.create_calibrator = create_calibrator
    calibrate_method = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}[method]
    options = {"CalibPercentile": 99.99} if method == "percentile" else {}
    quantize_static(str(model_path), str(tmp / "model.qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    calibrate_method=calibrate_method, extra_options=options)
    return {"samples": args.n, "tensors": marks.get("tensors"), "calibrated_at": marks.get("calibrated")}


def child(args: argparse.Namespace) -> None:
    """One measurement; prints a JSON line with the wall time from loading the model to the end."""
    sys.path.insert(0, str(ROOT))
    import logging

    from tests import assets

    logging.disable(logging.WARNING)
    model_path = Path(assets.ocr_model(assets.OCR_DETECTOR))
    with tempfile.TemporaryDirectory(prefix="trtq-bench-") as tmp:
        start = time.perf_counter()
        if args.child == "plain":
            info = run_plain(args, model_path, Path(tmp))
        elif args.child.startswith("trtq-"):
            info = run_trtq(args, model_path, Path(tmp), args.child.split("-", 1)[1])
        else:
            with open(os.devnull, "w") as quiet:  # ORT's calibrators print progress to stdout
                saved, sys.stdout = sys.stdout, quiet
                try:
                    info = run_ort(args, model_path, Path(tmp), args.child.split("-", 1)[1])
                finally:
                    sys.stdout = saved
        seconds = time.perf_counter() - start
    calibrated = info.pop("calibrated_at", None)
    if calibrated is not None:
        info["calib_s"] = round(calibrated - start, 2)
    print(json.dumps({"seconds": round(seconds, 3), **info}))


# ---------------------------------------------------------------- parent


def measure(run: str, n: int, args: argparse.Namespace) -> dict:
    """Run one child; its result plus peak RSS (MiB) and CPU seconds from its own rusage."""
    cmd = [sys.executable, __file__, "--child", run, "--n", str(n), "--data", str(args.data),
           "--height", str(args.height), "--width", str(args.width), "--batch-size", str(args.batch_size),
           "--method", args.method]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}"}
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    if not a or not b or key not in a or key not in b or not b[key]:
        return None
    return a[key] / b[key]


def report(results: dict[tuple[str, int], dict], sizes: list[int], runs: list[str]) -> None:
    print("\n| N | " + " | ".join(f"{LABELS[r]} wall s / CPU s / peak MiB" for r in runs) + " |")
    print("|---:|" + "---:|" * len(runs))
    for n in sizes:
        cells = []
        for r in runs:
            res = results.get((r, n), {})
            if "error" in res:
                cells.append(res["error"])
            else:
                extra = f" (calib {res['calib_s']:.1f})" if "calib_s" in res else ""
                cells.append(f"{fmt(res.get('seconds'))}{extra} / {fmt(res.get('cpu_s'))} / "
                             f"{fmt(res.get('rss_mib'), 0)}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    tensors = {r: results[(r, sizes[0])].get("tensors") for r in runs if results.get((r, sizes[0]))}
    print("\ntensors calibrated: " + ", ".join(f"{LABELS[r]} {t}" for r, t in tensors.items() if t))
    trtq_runs = [r for r in runs if r.startswith("trtq")]
    ort_runs = [r for r in runs if r.startswith("ort")]
    heads = ["trtq/plain wall"] + [f"trtq/{LABELS[o]} wall" for o in ort_runs]
    heads += [f"trtq/{LABELS[o]} RSS" for o in ort_runs]
    print("\n| N | run | " + " | ".join(heads) + " |")
    print("|---:|---|" + "---:|" * len(heads))
    for n in sizes:
        for t in trtq_runs:
            mine = results.get((t, n))
            cells = [fmt(ratio(mine, results.get(("plain", n)), "seconds"), 2)]
            cells += [fmt(ratio(mine, results.get((o, n)), "seconds"), 3) for o in ort_runs]
            cells += [fmt(ratio(mine, results.get((o, n)), "rss_mib"), 3) for o in ort_runs]
            print(f"| {n} | {LABELS[t]} | " + " | ".join(cells) + " |")
    if len(sizes) > 1:
        lo, hi = sizes[0], sizes[-1]
        growth = [f"{LABELS[r]} {fmt(ratio(results.get((r, hi)), results.get((r, lo)), 'rss_mib'), 2)}"
                  for r in runs]
        print(f"\npeak RSS N={hi} / N={lo}: " + ", ".join(growth))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,16", help="comma-separated numbers of samples (default: quick 8,16)")
    parser.add_argument("--height", type=int, default=64, help="model input height (multiple of 32)")
    parser.add_argument("--width", type=int, default=64, help="model input width (multiple of 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--method", default="entropy",
                        help="trtq's range method (entropy, as ORT's entropy run; auto is trtq's default)")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"which of {','.join(RUNS)}")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "trtq-bench" / "photos",
                        help="where the generated JPEGs are kept between runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    runs = [r for r in args.runs.split(",") if r]
    unknown = set(runs) - set(RUNS)
    if unknown:
        parser.error(f"unknown runs {sorted(unknown)}; choose from {','.join(RUNS)}")
    start = time.perf_counter()
    generate(args.cache_dir, sizes[-1])
    args.data = args.cache_dir
    print(f"{sizes[-1]} JPEGs in {args.cache_dir} ({time.perf_counter() - start:.1f} s); "
          f"PP-OCRv4 detector at {args.height}x{args.width}, batch {args.batch_size}, trtq --method {args.method}, "
          f"{os.cpu_count()} CPUs")
    results: dict[tuple[str, int], dict] = {}
    for n in sizes:
        for run in runs:
            results[(run, n)] = measure(run, n, args)
            print(f"N={n:4d} {LABELS[run]:<17} {json.dumps(results[(run, n)])}", flush=True)
    report(results, sizes, runs)


if __name__ == "__main__":
    main()
