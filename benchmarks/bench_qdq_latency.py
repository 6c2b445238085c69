"""Q/DQ simulation latency against FP32 on ONNX Runtime CPU, at several batch sizes.

    python benchmarks/bench_qdq_latency.py FP32.onnx QDQ.onnx --size 224 --batches 1,32 --runs 7

The Q/DQ model runs as trtq's evaluations run it (session.disable_quant_qdq=1:
exact fake quantization, weights' DQ removed by constant folding); FP32 with
default session options. Runs are interleaved (FP32, Q/DQ, FP32, ...) so that
load from other processes hits both alike; prints the medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

from trtq.runtime.qdq_options import QDQ_SESSION_ENTRIES


def session(path: str, entries: dict[str, str]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32")
    parser.add_argument("qdq")
    parser.add_argument("--size", type=int, default=224, help="square input size (NCHW, 3 channels)")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    sessions = {"fp32": session(args.fp32, {}), "qdq": session(args.qdq, dict(QDQ_SESSION_ENTRIES))}
    name = sessions["fp32"].get_inputs()[0].name
    for batch in (int(b) for b in args.batches.split(",")):
        x = np.random.default_rng(0).standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for s in sessions.values():
            s.run(None, {name: x})  # warm-up
        for _ in range(args.runs):
            for key, s in sessions.items():
                start = time.perf_counter()
                s.run(None, {name: x})
                times[key].append(time.perf_counter() - start)
        fp32, qdq = (statistics.median(times[k]) for k in ("fp32", "qdq"))
        print(f"batch {batch}: FP32 {fp32 * 1e3:.1f} ms, Q/DQ {qdq * 1e3:.1f} ms, ratio {qdq / fp32:.2f} "
              f"(medians of {args.runs})")


if __name__ == "__main__":
    main()
