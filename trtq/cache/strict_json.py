"""JSON as trtq reads a user's table or sidecar: standard JSON only, each key once, bounded.

Python's json accepts NaN/Infinity (not JSON, and a NaN amax or sample count breaks every
later step), raises ValueError for integers over 4300 digits and RecursionError for deep
nesting; here each of those is a CacheError naming the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

from trtq.errors import CacheError, short_repr


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a repeated key (e.g. a tensor listed twice) is an error, not "last one wins"."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


def _no_constant(name: str) -> Any:
    raise CacheError(f"holds {name}, which is not JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: valid JSON, but no float holds it
        raise CacheError(f"holds the number {text[:40]}, which is too large for a float")
    return value


def load_json(data: bytes | str, source: str) -> Any:
    """Parse `data` as strict JSON.

    Raises:
        CacheError: not UTF-8 JSON, NaN/Infinity, a duplicate key, a huge integer or deep nesting.
    """
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                          parse_float=_finite_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheError(f"{source} is not valid JSON ({short_repr(str(exc))[1:-1]})") from None
    except _DuplicateKey as exc:
        raise CacheError(f"{source} has the key {short_repr(exc.args[0])} twice in one object") from None
    except CacheError as exc:
        raise CacheError(f"{source} {exc.message}") from None
    except RecursionError:
        raise CacheError(f"{source} nests too deeply to be a trtq table or sidecar") from None
    except ValueError as exc:  # an integer over Python's 4300-digit limit
        raise CacheError(f"{source} holds a number trtq cannot read ({short_repr(str(exc))[1:-1]})") from None
