"""Small helpers shared by the algorithm builders (not public).

Builders make steps from numpy arrays, never from :class:`Transfer` objects, so
that a 8,192-rank ring costs milliseconds; these helpers keep that idiom short.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from .schedule import ScheduleError, Step

__all__ = [
    "concat_steps",
    "counts",
    "flags",
    "frozen",
    "int_option",
    "is_power_of_two",
    "require_power_of_two",
    "root_option",
    "spans",
]


def frozen(arr: np.ndarray) -> np.ndarray:
    """Mark ``arr`` read-only in place and return it (so steps can share it)."""
    arr.flags.writeable = False
    return arr


@lru_cache(maxsize=256)
def flags(n: int, reduce: bool) -> np.ndarray:
    """A shared read-only bool array of length ``n`` filled with ``reduce``."""
    return frozen(np.full(n, reduce, dtype=np.bool_))


@lru_cache(maxsize=256)
def counts(n: int, length: int) -> np.ndarray:
    """A shared read-only int32 array of length ``n`` filled with ``length`` (chunks per message)."""
    return frozen(np.full(n, length, dtype=np.int32))


def spans(starts: np.ndarray, length: int) -> np.ndarray:
    """Chunk ids ``starts[i], ..., starts[i] + length - 1`` for every i, flattened (int32)."""
    starts = np.asarray(starts, dtype=np.int32)
    return (starts[:, None] + np.arange(length, dtype=np.int32)).ravel()


def concat_steps(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]) -> Step:
    """One step from several ``(src, dst, chunk, reduce)`` groups of transfers."""
    if not parts:
        empty = np.zeros(0, dtype=np.int32)
        return Step(empty, empty, empty, np.zeros(0, dtype=np.bool_))
    src = np.concatenate([np.asarray(p[0], dtype=np.int32) for p in parts])
    dst = np.concatenate([np.asarray(p[1], dtype=np.int32) for p in parts])
    chunk = np.concatenate([np.asarray(p[2], dtype=np.int32) for p in parts])
    reduce = np.concatenate([np.full(len(p[0]), p[3], dtype=np.bool_) for p in parts])
    return Step(src, dst, chunk, reduce)


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return n >= 1 and n & (n - 1) == 0


def require_power_of_two(ranks: int, algorithm: str, collective: str, instead: str) -> None:
    """Raise :class:`ScheduleError` unless ``ranks`` is a power of two."""
    if not is_power_of_two(ranks):
        raise ScheduleError(
            f"{algorithm} {collective} needs a power-of-two number of ranks, got p={ranks}; "
            f"use {instead} for any p"
        )


def int_option(
    options: Mapping[str, object], key: str, default: int | None, where: str, minimum: int = 1
) -> int:
    """An integer option from ``topology_info``, checked, or a ScheduleError naming it."""
    value = options.get(key, default)
    if value is None:
        raise ScheduleError(f"{where} needs {key}=... (topology_info); none was given")
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ScheduleError(f"{where}: {key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def root_option(options: Mapping[str, object], ranks: int, where: str) -> int:
    """The ``root`` option (default 0), checked against the rank count."""
    root = int_option(options, "root", 0, where, minimum=0)
    if root >= ranks:
        raise ScheduleError(f"{where}: root {root} out of range 0..{ranks - 1}")
    return root
