"""Peak memory of DataReader over a growing number of real-looking JPEGs: it must stay flat.

    python benchmarks/bench_reader_memory.py [--n 1000] [--workers 4] [--batch-size 8]

Writes N JPEGs of about 640x480 (random crops and resizes of the real photos from
tests/assets.py) into a temp folder -- in a child process, so that generating them does
not count towards this process's peak -- then reads them all through trtq's DataReader
with ImageNet preprocessing (shorter side 256, centre crop 224, NCHW float32) and prints
the peak RSS (VmHWM from /proc/self/status) after 100, 250, 500 and 1000 images, and the
ratio of the last to the first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = (100, 250, 500, 1000)


def generate(folder: Path, n: int, seed: int = 0) -> None:
    """n JPEGs of about 640x480 cut from the real colour photos (one image in memory at a time)."""
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from tests import assets

    photos = assets.color_photos()
    rng = np.random.default_rng(seed)
    for i in range(n):
        with Image.open(photos[i % len(photos)]) as source:
            image = source.convert("RGB")
        w, h = image.size
        crop_w = int(rng.integers(w // 2, w + 1))
        crop_h = int(rng.integers(h // 2, h + 1))
        left, top = int(rng.integers(0, w - crop_w + 1)), int(rng.integers(0, h - crop_h + 1))
        size = (int(rng.integers(560, 721)), int(rng.integers(420, 541)))
        image = image.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.BILINEAR)
        image.save(folder / f"img_{i:05d}.jpg", quality=90)


def memory_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmHWM = peak RSS, VmRSS = current), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def read_all(folder: Path, n: int, batch_size: int, workers: int) -> None:
    from trtq.config import load_config
    from trtq.data import DataReader, open_source
    from trtq.onnx_model.model import TensorSpec

    config = load_config(["imagenet"])
    inputs = [TensorSpec("x", ("N", 3, 224, 224), np.dtype("float32"))]
    source = open_source(str(folder), inputs, config.data, config.preprocess)
    marks = [c for c in CHECKPOINTS if c <= n]
    while marks and marks[-1] * 2 <= n:  # beyond 1000: 2000, 4000, ...
        marks.append(marks[-1] * 2)
    if not marks or marks[-1] != n:
        marks.append(n)
    print(f"reading {len(source)} images, batch size {batch_size}, {workers} workers")
    print(f"before reading: peak RSS {memory_kib('VmHWM') / 1024:.1f} MiB")
    peaks: dict[int, float] = {}
    seen, checksum, start = 0, 0.0, time.perf_counter()
    for batch in DataReader(source, None, batch_size=batch_size, workers=workers):
        checksum += float(batch.feeds["x"][:, :, ::16, ::16].sum())  # touch the data
        seen += len(batch.keys)
        while marks and seen >= marks[0]:
            peaks[marks[0]] = memory_kib("VmHWM") / 1024
            print(f"after {marks[0]:5d} images: peak RSS {peaks[marks[0]]:.1f} MiB "
                  f"(current {memory_kib('VmRSS') / 1024:.1f} MiB, {seen / (time.perf_counter() - start):.0f} img/s)")
            marks.pop(0)
    first = min(peaks)
    for last in sorted(peaks)[1:]:
        if last in (1000, max(peaks)):
            print(f"peak RSS ratio {last}/{first} images: {peaks[last] / peaks[first]:.3f}")
    print(f"(checksum {checksum:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)  # used by the child process
    args = parser.parse_args()
    if args.generate_into is not None:
        generate(args.generate_into, args.n)
        return
    with tempfile.TemporaryDirectory(prefix="trtq-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--n", str(args.n), "--generate-into", str(folder)], check=True)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
        print(f"generated {args.n} JPEGs ({size:.0f} MiB) in {time.perf_counter() - start:.1f} s")
        read_all(folder, args.n, args.batch_size, args.workers)


if __name__ == "__main__":
    main()
