"""Real English text as token ids for the language-model tests.

The text is what every Python install ships: the Zen of Python (`this.s`, ROT13) and the
docstrings of stdlib modules and their public functions and classes. Words are lower-cased
and hashed (CRC-32, stable across runs and machines, unlike `hash`) into the encoder's
vocabulary; ids 0/1/2 are reserved for padding, [CLS] and [SEP] as in BERT.
"""

from __future__ import annotations

import codecs
import importlib
import importlib.util
import inspect
import re
import zlib
from pathlib import Path

import numpy as np

from tests.lm_models import VOCAB

PAD, CLS, SEP = 0, 1, 2
_RESERVED = 3
MODULES = ("json", "argparse", "collections", "csv", "difflib", "heapq", "itertools", "logging", "pathlib",
           "random", "re", "shutil", "string", "textwrap", "threading", "zipfile", "bisect", "functools",
           "statistics", "fractions", "decimal", "pickle", "subprocess", "tarfile", "doctest", "unittest")
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+|\n\s*\n")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]")


def _zen() -> str:
    # `import this` prints the Zen on first import; reading its source avoids the side effect.
    spec = importlib.util.find_spec("this")
    source = Path(spec.origin).read_text(encoding="utf-8")
    encoded = re.search(r's = """(.*?)"""', source, re.S).group(1)
    return codecs.decode(encoded, "rot13")


def _docstrings(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    docs = [inspect.getdoc(module) or ""]
    for name in sorted(getattr(module, "__all__", None) or dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == module_name:
            docs.append(inspect.getdoc(obj) or "")
    return docs


def sentences(min_words: int = 4) -> list[str]:
    """Sentences of the Zen of Python and of stdlib docstrings, in a fixed order, duplicates dropped."""
    texts = [_zen()] + [doc for name in MODULES for doc in _docstrings(name)]
    seen: dict[str, None] = {}
    for text in texts:
        for sentence in _SENTENCE_END.split(text):
            sentence = " ".join(sentence.split())
            if len(words(sentence)) >= min_words:
                seen.setdefault(sentence, None)
    return list(seen)


def words(sentence: str) -> list[str]:
    """Lower-cased words, numbers and punctuation marks of `sentence`."""
    return _WORD.findall(sentence.lower())


def token_id(word: str) -> int:
    """The vocabulary id of `word`: CRC-32 hashed above the reserved ids."""
    return _RESERVED + zlib.crc32(word.encode("utf-8")) % (VOCAB - _RESERVED)


def encode(texts: list[str], seq: int) -> tuple[np.ndarray, np.ndarray]:
    """[CLS] words [SEP], truncated and padded to `seq`: int64 input_ids and attention_mask [len(texts), seq]."""
    ids = np.full((len(texts), seq), PAD, np.int64)
    mask = np.zeros((len(texts), seq), np.int64)
    for row, text in enumerate(texts):
        tokens = [*[CLS, *(token_id(w) for w in words(text))][:seq - 1], SEP]
        ids[row, :len(tokens)] = tokens
        mask[row, :len(tokens)] = 1
    return ids, mask


def write_tokens(path: Path, texts: list[str], seq: int, token_types: bool = False) -> Path:
    """An .npz named after the model inputs: samples along axis 0, padded to `seq`; with `token_types`
    also `token_type_ids` (all 0: one segment per sample, as tokenizers give single sentences)."""
    ids, mask = encode(texts, seq)
    extra = {"token_type_ids": np.zeros_like(ids)} if token_types else {}
    np.savez(path, input_ids=ids, attention_mask=mask, **extra)
    return path
