"""Check a `trtq build` output folder the way the GPU workflow needs: engine built, compared, verdict given.

    python -m tests.check_report example/ch_PP-OCRv4_det_infer_trtq --engine

Exit 0 and one summary line if the report holds an engine artifact (file and sidecar present), the
comparison ran on that engine, and the accuracy gates gave a verdict ("passed"); else exit 1 and the
reasons. Without --engine it checks the CPU outcome instead (engine skipped with a reason, Q/DQ compared).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def problems(out_dir: Path, engine: bool) -> list[str]:
    """What is wrong with the report in `out_dir` (empty: all good)."""
    path = out_dir / "report.json"
    if not path.is_file():
        return [f"{path} does not exist"]
    data = json.loads(path.read_text())
    found = []
    comparison = data.get("comparison") or {}
    if engine:
        artifact = data.get("artifacts", {}).get("engine")
        if not artifact or not Path(artifact).is_file():
            found.append(f"no engine artifact in the report (artifacts: {sorted(data.get('artifacts', {}))})")
        elif not Path(artifact + ".json").is_file():
            found.append(f"the engine {artifact} has no sidecar {artifact}.json")
        if comparison.get("candidate_kind") != "engine":
            found.append(f"the comparison ran on {comparison.get('candidate_kind')!r}, not the engine")
        if any(s.get("step") == "engine" for s in data.get("skipped", [])):
            found.append("the report says the engine step was skipped")
    else:
        if not any(s.get("step") == "engine" and s.get("reason") for s in data.get("skipped", [])):
            found.append("the engine step was neither built nor skipped with a reason")
        if comparison.get("candidate_kind") != "onnx":
            found.append("the comparison did not run on the Q/DQ model")
    if data.get("status") != "passed":
        found.append(f"accuracy verdict is {data.get('status')!r}, not 'passed' (give --min-sqnr)")
    sqnr = [o.get("sqnr_db") for o in comparison.get("outputs", {}).values()]
    if not sqnr or not all(isinstance(s, float) and math.isfinite(s) for s in sqnr):
        found.append(f"output SQNR missing or not finite: {sqnr}")
    return found


def main(argv: list[str]) -> int:
    out_dir, engine = Path(argv[0]), "--engine" in argv[1:]
    found = problems(out_dir, engine)
    for line in found:
        print(f"report check failed: {line}", file=sys.stderr)
    if not found:
        data = json.loads((out_dir / "report.json").read_text())
        sqnr = {k: round(v["sqnr_db"], 1) for k, v in data["comparison"]["outputs"].items()}
        print(f"report ok: {data['comparison']['candidate']} ({data['comparison']['candidate_kind']}), "
              f"status {data['status']}, SQNR dB {sqnr}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
