"""Ray scale-out on this machine: serial vs `--ray` for calibration and for the sensitivity ranking.

    python benchmarks/bench_ray.py                                   # the README numbers (~8 min on idle 2 cores)
    python benchmarks/bench_ray.py --calib-samples 16 --repeats 1    # smoke run

Model: the PP-OCRv4 detector at 320x320 (tests/assets.py, `ppocr-det` preset). Data: JPEGs cut from
the real photos by benchmarks/bench_calibration.py's generator (calibration: the first
--calib-samples, held-out evaluation: the next --eval-samples).

One local Ray instance is started once, as `--ray` starts it (trtq.cluster.ray_runtime); its start
time is reported on its own. Then, --repeats times, in alternating order:

  calibration   trtq.pipeline.calibrate.calibrate() of every activation (what `trtq calibrate`
                observes), `--method entropy`: one process (ONNX Runtime on all cores) vs `--ray` with
                one worker per CPU (each its own session, one thread). The Ray time includes starting
                the workers (actors) and loading the model in each. Both caches must be byte-identical.
  sensitivity   trtq.accuracy.sensitivity.layer_sensitivity() with every quantized layer measured alone
                on the held-out samples: serial (each session on all cores) vs trtq.cluster.tasks.RayMap
                (one task per layer, one thread each, the FP32 reference shared through the object store).
                The rankings are compared: layer order, and the largest difference of a metric.

Every time is wall-clock seconds; the load average is printed before and after, since the machine is
shared. Prints one JSON line per measurement and a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def _config(data: Path, samples: int, ray: str | None, cache: Path):
    from trtq.config import load_config

    return load_config(["ppocr-det"], {"calib": str(data), "max_samples": samples, "height": 320, "width": 320,
                                       "method": "entropy", "tensors": "all", "cache": str(cache), "ray": ray})


def time_calibration(model: Path, data: Path, samples: int, ray: str | None, cache: Path) -> float:
    from trtq.pipeline.calibrate import calibrate

    if cache.exists():
        cache.unlink()
    start = time.perf_counter()
    calibrate(model, _config(data, samples, ray, cache), show_progress=False)
    return time.perf_counter() - start


def sensitivity_inputs(model: Path, data: Path, calib: int, held_out: int, cache: Path):
    """(FP32 model, amax, the held-out feed dicts) for layer_sensitivity."""
    from trtq.cache import read_cache
    from trtq.config import load_config
    from trtq.data import make_readers
    from trtq.onnx_model import model as model_io

    fp32 = model_io.load_model(model)
    amax = read_cache(cache).amax
    folder = data.parent / f"{data.name}-eval-{calib}-{held_out}"
    if not folder.is_dir():
        folder.mkdir()
        for path in sorted(data.glob("*.jpg"))[calib:calib + held_out]:
            os.symlink(path, folder / path.name)
    config = load_config(["ppocr-det"], {"calib": str(folder), "height": 320, "width": 320})
    plan = make_readers(config, model_io.graph_inputs(fp32))
    return fp32, amax, [dict(f) for f in plan.calib.feed_dicts()]


def time_sensitivity(fp32, amax, feeds, tasks) -> tuple[float, list]:
    from trtq.accuracy.sensitivity import layer_sensitivity

    start = time.perf_counter()
    ranking = layer_sensitivity(fp32, amax, feeds, measure_top=None, tasks=tasks)
    return time.perf_counter() - start, ranking


def compare_rankings(serial: list, on_ray: list) -> dict:
    """Whether the two rankings are the same: layer order, and the largest difference of a metric."""
    same_order = [s.node for s in serial] == [s.node for s in on_ray]
    by_node = {s.node: s for s in on_ray}
    diffs = [abs(a - b) for s in serial for a, b in ((s.alone_sqnr_db, by_node[s.node].alone_sqnr_db),
                                                      (s.local_sqnr_db, by_node[s.node].local_sqnr_db))
             if a is not None and b is not None and a != b]
    return {"what": "rankings", "same_order": same_order, "identical": serial == on_ray,
            "max_metric_difference_db": max(diffs, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-samples", type=int, default=64)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "trtq-bench-ray")
    args = parser.parse_args()

    from bench_calibration import generate

    from tests import assets
    from trtq.cluster.ray_runtime import ray_instance
    from trtq.cluster.tasks import RayMap
    from trtq.config import ClusterConfig

    photos = args.data_dir / "photos"
    generate(photos, args.calib_samples + args.eval_samples)
    model = assets.ocr_model(assets.OCR_DETECTOR)
    print(f"# before: {_load()}", flush=True)
    start = time.perf_counter()
    instance = ray_instance(ClusterConfig(ray="local"))  # started as `--ray` starts it
    workers = instance.__enter__()
    print(json.dumps({"what": "ray start", "seconds": round(time.perf_counter() - start, 2)}), flush=True)
    times: dict[str, list[float]] = {"calibration serial": [], "calibration ray": [],
                                     "sensitivity serial": [], "sensitivity ray": []}
    serial_cache, ray_cache = args.data_dir / "serial.cache", args.data_dir / "ray.cache"
    try:
        tasks = RayMap(workers)
        feeds = None
        for repeat in range(args.repeats):
            order = ("serial", "ray") if repeat % 2 == 0 else ("ray", "serial")
            for kind in order:
                cache = serial_cache if kind == "serial" else ray_cache
                seconds = time_calibration(model, photos, args.calib_samples, "local" if kind == "ray" else None,
                                           cache)
                times[f"calibration {kind}"].append(seconds)
                print(json.dumps({"what": f"calibration {kind}", "samples": args.calib_samples,
                                  "seconds": round(seconds, 2)}), flush=True)
            if not filecmp.cmp(serial_cache, ray_cache, shallow=False):
                raise SystemExit("the Ray cache differs from the serial one")
            if feeds is None:
                fp32, amax, feeds = sensitivity_inputs(model, photos, args.calib_samples, args.eval_samples,
                                                       serial_cache)
            rankings = {}
            for kind in order:
                seconds, rankings[kind] = time_sensitivity(fp32, amax, feeds, tasks if kind == "ray" else None)
                times[f"sensitivity {kind}"].append(seconds)
                print(json.dumps({"what": f"sensitivity {kind}", "layers": len(rankings[kind]),
                                  "eval_samples": len(feeds) and args.eval_samples, "seconds": round(seconds, 2)}),
                      flush=True)
            print(json.dumps(compare_rankings(rankings["serial"], rankings["ray"])), flush=True)
    finally:
        instance.__exit__(None, None, None)
    print(f"# after: {_load()}")
    print(f"\n| measurement | serial s | Ray ({workers.count} workers) s | speed-up |\n|---|---:|---:|---:|")
    for what in ("calibration", "sensitivity"):
        serial, on_ray = statistics.median(times[f"{what} serial"]), statistics.median(times[f"{what} ray"])
        print(f"| {what} | {serial:.1f} | {on_ray:.1f} | {serial / on_ray:.2f}x |")
    print("(medians of", args.repeats, "repeats; caches byte-identical in every repeat; rankings: see the JSON lines)")


if __name__ == "__main__":
    main()
