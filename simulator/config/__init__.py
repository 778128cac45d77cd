"""Configs: YAML (or a dict) plus ``--set`` overrides → a validated, frozen ``Config``.

``load_config`` is the only entry point. It loads YAML safely, applies dotted
overrides to the raw dict *before* validation (so an override gets the same
located error as the file would), resolves relative paths against the file's
folder, and raises ``ConfigError`` with one line naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from topologies import safe_yaml

from .errors import ConfigError, TrainsimInputError, describe
from .models import Config

__all__ = ["Config", "ConfigError", "TrainsimInputError", "apply_override", "load_config", "locate", "parse_yaml",
           "read_yaml"]


def parse_yaml(text: str, source: str) -> Any:
    """YAML text → plain data (``topologies.safe_yaml``); any problem → one ``ConfigError`` line."""
    try:
        return safe_yaml.loads(text, source)
    except safe_yaml.YAMLInputError as e:
        raise ConfigError(str(e)) from None


def read_yaml(path: Path) -> Any:
    """Load a YAML file safely; missing, unreadable, not UTF-8 or bad YAML → ``ConfigError`` naming it."""
    try:
        return safe_yaml.read(path)
    except safe_yaml.YAMLInputError as e:
        raise ConfigError(str(e)) from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``dotted.key=value`` to a raw config dict in place (value parsed as YAML)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment}: expected dotted.key=value")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {assignment}: {where} is {child!r}, not a mapping")
        node = child
    try:
        node[parts[-1]] = parse_yaml(text, f"--set {key.strip()}")
    except ConfigError:
        node[parts[-1]] = text


def _resolve_paths(raw: dict, base: Path) -> None:
    """Make ``cluster.topology.path`` and ``cluster.profile`` relative to the config file."""
    cluster = raw.get("cluster")
    if not isinstance(cluster, dict):
        return
    topo = cluster.get("topology")
    if isinstance(topo, dict) and isinstance(topo.get("path"), str):
        topo["path"] = str(base / topo["path"])
    if isinstance(cluster.get("profile"), str):
        cluster["profile"] = str(base / cluster["profile"])


def load_config(source: str | Path | Mapping, overrides: Iterable[str] = ()) -> Config:
    """Validate a config from a YAML path or a dict, with optional ``--set`` overrides.

    Raises
    ------
    ConfigError
        One line: ``source: dotted.key: what was expected (got value)``.
    """
    if isinstance(source, Mapping):
        raw, name, base = _deepcopy(source), "config", Path.cwd()
    else:
        path = Path(source)
        raw, name, base = read_yaml(path), str(path), path.parent
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping of config keys at the top level, got {type(raw).__name__}")
    overrides = list(overrides)
    for assignment in overrides:
        apply_override(raw, assignment)
    _resolve_paths(raw, base)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe(e, name, blame=_overridden(overrides))) from None


def locate(err: ConfigError, source: str | Path, overrides: Iterable[str] = ()) -> ConfigError:
    """A check that ran after loading (it needed the built job) named where its key came from: the
    ``--set`` that set it, else the config file."""
    text = str(err)
    if text.startswith((str(source), "--set ")):
        return err
    key = re.match(r"([\w.]+): ", text)
    named = _overridden(list(overrides))(key.group(1)) if key else None
    if key and named == f"--set {key.group(1)}":
        text = text[key.end():]
    return ConfigError(f"{named or source}: {text}")


def _overridden(overrides: list[str]):
    """The ``--set`` that set a dotted key (or a section around it), so its error names the ``--set``."""
    keys = [a.partition("=")[0].strip() for a in overrides]

    def blame(where: str) -> str | None:
        for key in reversed(keys):
            if where == key or where.startswith(key + ".") or key.startswith(where + "."):
                return f"--set {key}"
        return None

    return blame


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_deepcopy(v) for v in value]
    return value
