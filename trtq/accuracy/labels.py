"""True class labels for the top-1 accuracy of classifier-like outputs: sample key -> class index.

A sample key is how a data reader names a sample (by convention its file path
relative to the data folder, with forward slashes); compare_models takes the
keys in data order next to the batches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from trtq.errors import ConfigError, DataError


def load_labels(path: str | Path) -> dict[str, int]:
    """Read a labels file: JSON `{"key": index, ...}`, or text lines `key index` (tab, comma or spaces).

    Blank lines and lines starting with '#' are ignored. Keys may contain spaces (the index is
    the last field).

    Raises:
        DataError: the file is missing, or an entry has no non-negative integer index.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist", hint="give a JSON or 'key index' text file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"labels file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise DataError(f"labels file {path} must hold a JSON object of key -> class index")
        return {str(k): _index(v, f"{path} key '{k}'") for k, v in data.items()}
    labels = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[\t,]|\s+(?=\S+$)", line)
        if len(parts) < 2:
            raise DataError(f"line {number} of {path} has no class index: {line!r}", hint="write 'key index'")
        labels[parts[0].strip()] = _index(parts[-1].strip(), f"line {number} of {path}")
    return labels


def _index(value: object, where: str) -> int:
    try:
        index = int(str(value))
    except ValueError:
        index = -1
    if index < 0 or isinstance(value, bool):
        raise DataError(f"{where}: class index {value!r} is not a non-negative integer")
    return index


def labels_from_class_folders(root: str | Path) -> dict[str, int]:
    """Labels from a folder-per-class layout (root/<class>/<file>): class index = position of the
    folder name in sorted order (as torchvision's ImageFolder); keys = file paths relative to root.

    Raises:
        DataError: root is not a folder or has no class subfolders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder of class subfolders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class subfolders", hint="put each class's samples in root/<class name>/")
    labels = {}
    for index, name in enumerate(classes):
        for file in sorted((root / name).rglob("*")):
            if file.is_file() and not file.name.startswith("."):
                labels[file.relative_to(root).as_posix()] = index
    return labels


def resolve_labels(given: str | None, data_root: str | None) -> dict[str, int] | None:
    """Labels as --labels says: None, a labels file, or 'folders' (class subfolders of `data_root`).

    Raises:
        ConfigError: 'folders' but the data is not a folder.
        DataError: as load_labels / labels_from_class_folders.
    """
    if not given:
        return None
    if given != "folders":
        return load_labels(given)
    if data_root is None or not Path(data_root).is_dir():
        raise ConfigError("--labels folders needs the evaluation data to be a folder with one subfolder per class",
                          hint="give a labels file instead, or point the data at the class folders")
    return labels_from_class_folders(data_root)
