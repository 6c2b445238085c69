"""Contenders of benchmarks/bench_accuracy.py that run each in a process of its own, so that every one
gets a wall time and a peak RSS (`/usr/bin/time -v`, maximum resident set size of the process tree's
largest process) measured the same way, side by side in one run.

- trtq: the `trtq build` command a user types, on the calibration samples as an .npy file; its
  --eval (what the fallback and bias correction judge on) is every 4th calibration sample, so trtq
  sees no sample the peers do not. The Q/DQ model is read back from its output folder.
- peers: the scripts in benchmarks/peers/, each in its own virtual environment (they need torch):
  AMD Quark (CLE + AdaRound, CLE + bias correction), AIMET-ONNX (CLE + AdaRound, CLE alone) and ONNX Runtime
  quantize_static. A peer that cannot install or run gives a row with its error instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from accuracy_contenders import Contender

PEERS = Path(__file__).resolve().parent / "peers"
VENVS = Path(os.environ.get("TRTQ_BENCH_VENVS", "/work/venvs"))
# --reuse-only: score the runs recorded in the --keep folder, start none
REUSE_ONLY = False


@dataclass
class Peer:
    """One peer configuration: its row name, virtual environment, script and extra arguments."""

    tool: str
    method: str
    venv: str
    script: str
    args: tuple[str, ...] = ()


PEER_RUNS = (
    Peer("quark", "CLE+AdaRound", "cnn-bench-quark", "quark_int8.py", ("adaround",)),
    Peer("quark", "CLE+biascorr", "cnn-bench-quark", "quark_int8.py", ("biascorr",)),
    Peer("aimet", "CLE+AdaRound", "cnn-bench-aimet", "aimet_int8.py"),
    Peer("aimet", "CLE", "cnn-bench-aimet", "aimet_int8.py", ("--iterations", "0")),
    Peer("ort", "MinMax", "", "ort_int8.py", ("MinMax", "--strided", "2")),
    Peer("ort", "Percentile", "", "ort_int8.py", ("Percentile", "--strided", "2")),
)


def peer_name(peer: Peer) -> str:
    """The peer's name in --peers and in the --keep folder's file names, e.g. quark-CLE_AdaRound."""
    return f"{peer.tool}-{re.sub(r'[^A-Za-z0-9]+', '_', peer.method)}"


@dataclass
class Measured:
    returncode: int
    seconds: float
    cpu_seconds: float | None
    rss_mib: float | None
    error: str


def measured(cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Measured:
    """Run `cmd` under /usr/bin/time -v (niced: the machine is shared); its output goes to `log`.

    Wall time, CPU time (user + system of the process tree: less disturbed than the wall time by the
    other jobs on a shared machine) and peak RSS. A finished run with its record next to `log`
    (`--keep` folder) is reused, not run again.
    """
    record = log.with_suffix(".measured.json")
    if record.exists():
        return Measured(**json.loads(record.read_text()))
    if REUSE_ONLY:
        return Measured(-1, 0.0, None, None, "not run (--reuse-only and no finished run recorded)")
    start = time.perf_counter()
    with log.open("w") as out:
        nice = ["nice", "-n", str(max(0, 10 - os.nice(0)))]  # niceness 10 in all, not 10 on top of the caller's
        proc = subprocess.run([*nice, "/usr/bin/time", "-v", *cmd], stdout=out, stderr=subprocess.STDOUT, env=env,
                              cwd=cwd)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = [float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)]
    error = ""
    if proc.returncode:
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith("\t")]
        error = next((x for x in reversed(lines) if "Error" in x or "error" in x), lines[-1] if lines else "")
    run = Measured(proc.returncode, seconds, sum(cpu) if cpu else None, int(rss.group(1)) / 1024 if rss else None,
                   error.strip())
    record.write_text(json.dumps(run.__dict__))
    return run


def save_samples(folder: Path, calib: np.ndarray) -> tuple[Path, Path]:
    """The calibration samples and trtq's judging subset (every 4th) as .npy files."""
    folder.mkdir(parents=True, exist_ok=True)
    calib_path, tune_path = folder / "calib.npy", folder / "tune.npy"
    np.save(calib_path, calib)
    np.save(tune_path, calib[3::4])
    return calib_path, tune_path


def trtq_build(model_path: Path, calib: Path, tune: Path, folder: Path, method: str, flags: list[str],
               code: Path | None = None) -> Contender:
    """`trtq build` with `flags` in a measured process; the row carries its Q/DQ model and the layers
    its fallback left in float (from report.json). `code`: a source tree of another trtq revision
    (e.g. `git archive` of a branch, with trtq/calibrators and trtq/configs linked to the mapped
    folders) run instead of the installed one, with this environment's dependencies."""
    out = folder / f"trtq-{re.sub(r'[^A-Za-z0-9]+', '_', method)}"
    args = ["-q", "build", str(model_path), "--calib", str(calib), "--eval", str(tune), "-o", str(out), *flags]
    env = None
    if code is None:
        cmd = [str(Path(sys.executable).parent / "trtq"), *args]
    else:
        cmd = [sys.executable, "-c", "import sys; from trtq.cli import main; sys.exit(main())", *args]
        env = {**os.environ, "PYTHONPATH": str(code)}
    # cwd: python -c puts the working directory first on sys.path, before PYTHONPATH
    run = measured(cmd, folder / f"{out.name}.log", env, cwd=folder)
    extra: dict[str, object] = {"rss_mib": run.rss_mib, "cpu_s": run.cpu_seconds, "flags": " ".join(flags)}
    if run.returncode not in (0, 1):  # 1: a gate failed, the model is still written
        return Contender("trtq", method, None, run.seconds, note=f"failed: {run.error}"[:160], extra=extra)
    qdq = next(iter(sorted(out.glob("*.qdq.onnx"))), None) or next(iter(sorted(out.glob("*qdq*.onnx"))), None)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    fallback = (report.get("accuracy") or {}).get("fallback") or {}
    extra["excluded"] = list(fallback.get("excluded") or [])
    note = "gate missed" if run.returncode == 1 else ""
    return Contender("trtq", method, onnx.load(qdq) if qdq else None, run.seconds, note=note, extra=extra)


def peer_run(peer: Peer, model_path: Path, calib: Path, folder: Path, input_name: str) -> Contender:
    """One peer script in its own venv (ORT in this one), measured; the row says why when it fails."""
    python = VENVS / peer.venv / "bin" / "python" if peer.venv else Path(sys.executable)
    name = peer_name(peer)
    if not python.exists():
        return Contender(peer.tool, peer.method, note=f"not installed: no {python}")
    target = folder / f"{name}.onnx"
    cmd = [str(python), str(PEERS / peer.script), str(model_path), str(calib), str(target), *peer.args,
           "--input", input_name]
    run = measured(cmd, folder / f"{name}.log", cwd=folder)  # cwd: Quark writes quantized_info.csv there
    extra: dict[str, object] = {"rss_mib": run.rss_mib, "cpu_s": run.cpu_seconds, "excluded": []}
    if run.returncode or not target.exists():
        return Contender(peer.tool, peer.method, None, run.seconds, note=f"failed: {run.error}"[:200], extra=extra)
    return Contender(peer.tool, peer.method, onnx.load(target), run.seconds, extra=extra)
