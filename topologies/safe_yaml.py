"""The one way trainsim reads YAML a user wrote: safe, strict, bounded, one line per problem.

Configs, sweep files, topology files and hardware profiles all come through :func:`read` (or
:func:`loads` for ``--set`` values). On top of ``yaml.SafeLoader`` (plain data only) it refuses
duplicate keys (YAML's last-wins would silently drop one), more than ``MAX_DEPTH`` levels of nesting,
more than ``MAX_ALIASES`` aliases (a billion-laughs bomb), files over ``MAX_FILE_BYTES``, text that is
not UTF-8, and tags PyYAML cannot build (``!!float "abc"``), each as a :class:`YAMLInputError` whose
message is one line naming the file and, where known, the line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_FILE_BYTES", "YAMLInputError", "loads", "read"]

MAX_FILE_BYTES = 4 * 2**20     # a config, sweep or topology file larger than this is not one
MAX_DEPTH = 64                 # nesting levels a config may have (ours have at most 6)
MAX_ALIASES = 64               # YAML aliases (*name) in one file: a few are a convenience, more a bomb


class YAMLInputError(ValueError):
    """A YAML file or text that cannot be read as plain data; ``str(err)`` is the one line to show."""


_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, deep nesting and alias bombs.

    It builds plain data only: numbers, text, booleans, null, lists and mappings. A date
    (``2026-01-01``) stays the text it is; ``!!binary``, ``!!set`` and ``!!timestamp``, which would
    make values no config key takes (and that JSON cannot hold), are refused.
    """

    yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(None, None, f"more than {MAX_ALIASES} aliases", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:              # an unhashable key: let PyYAML say so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _refuse(loader: _Loader, node: yaml.Node) -> None:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise yaml.constructor.ConstructorError(
        None, None, f"tag {tag} is not allowed (plain numbers, text, lists and mappings only)", node.start_mark)


for _tag in ("binary", "set", "timestamp", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)


def loads(text: str, source: str) -> Any:
    """YAML text → Python values (safe: plain data only); any problem → one :class:`YAMLInputError` line."""
    try:
        loader = _Loader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise YAMLInputError(f"{source}: {where}invalid YAML ({problem})") from None
    except (ValueError, TypeError, OverflowError) as e:   # a tag PyYAML cannot build: !!float "abc"
        raise YAMLInputError(f"{source}: invalid YAML value ({_first_line(e)})") from None
    except RecursionError:
        raise YAMLInputError(f"{source}: invalid YAML (nested too deeply)") from None


def _first_line(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def read(path: str | Path, source: str | None = None) -> Any:
    """Load a YAML file; missing, unreadable, too big, not UTF-8 or bad YAML → ``YAMLInputError`` naming it
    (as ``source``, default the path)."""
    path = Path(path)
    name = source or str(path)
    try:
        if path.is_dir():
            raise YAMLInputError(f"{name}: is a folder, not a YAML file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise YAMLInputError(f"{name}: {path.stat().st_size} bytes; a config is at most {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise YAMLInputError(f"{name}: no such file") from None
    except OSError as e:
        raise YAMLInputError(f"{name}: cannot read ({e.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise YAMLInputError(f"{name}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    return loads(text, name)
