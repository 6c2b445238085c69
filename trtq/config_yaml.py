"""Reading a user's YAML config safely: bounded size, depth and output, one value per key.

yaml.safe_load refuses Python tags but not everything a hostile or broken file can do: a few
hundred bytes of nested aliases ("billion laughs") expand to gigabytes, deep nesting ends in
RecursionError, and a duplicate key silently keeps its last value. trtq configs are small
mappings of scalars and short lists, so this loader refuses aliases, duplicate keys, nesting
deeper than MAX_DEPTH and files over MAX_BYTES, each as a ConfigError naming the line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from trtq.errors import ConfigError, short_repr

MAX_BYTES = 1 << 20  # a config is a few hundred bytes; a megabyte is not a config
MAX_DEPTH = 32


def _where(node: yaml.Node | yaml.Event) -> str:
    mark = getattr(node, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, duplicate keys or deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"{self.name} uses a YAML alias{_where(event)} (*{event.anchor})",
                              hint="write the value out; trtq configs do not expand anchors and aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"{self.name} nests deeper than {MAX_DEPTH} levels{_where(self.peek_event())}",
                                  hint="a trtq config is sections of keys: see 'trtq build --print-config'")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key (a list): the base class refuses it
                continue
            if duplicate:
                raise ConfigError(f"{self.name} gives key {short_repr(key)} twice{_where(key_node)}",
                                  hint="keep one: YAML would silently use the last")
        return super().construct_mapping(node, deep=deep)


def _check_flow_depth(text: str, source: str) -> None:
    """Refuse deeply nested [ ] / { } before PyYAML's scanner, which is quadratic in that depth."""
    depth = 0
    for bracket in re.findall(r"[\[\]{}]", text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source} nests deeper than {MAX_DEPTH} levels",
                              hint="a trtq config is sections of keys: see 'trtq build --print-config'")


def load_yaml(data: bytes | str, source: str) -> Any:
    """Parse a config document.

    Raises:
        ConfigError: too large, not UTF-8, not valid YAML, or an alias, duplicate key or deep nesting.
    """
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{source} is {len(data)} bytes, more than a config can be ({MAX_BYTES})",
                          hint="give the YAML config file, not a data file")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source} is not UTF-8 text (byte {exc.start})",
                              hint="save the config as UTF-8") from None
    _check_flow_depth(data, source)
    loader = None
    try:
        loader = _StrictLoader(data)  # the reader refuses control characters here already
        loader.name = source
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever PyYAML says
        raise ConfigError(f"{source} is not valid YAML{where}: {problem[:200]}") from None
    except RecursionError:  # flow collections nest inside the scanner, before compose_node counts them
        raise ConfigError(f"{source} nests too deeply", hint="a trtq config is sections of keys") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{source} holds a value trtq cannot read ({short_repr(str(exc))})") from None
    finally:
        if loader is not None:
            loader.dispose()
