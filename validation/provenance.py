"""Where a measurement came from: machine, library versions, git revision, command line.

Written as ``provenance.json`` beside ``measurements.csv`` and copied into every profile, so a
number in ``validation/profiles/`` can always be traced to the machine and code that made it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import secrets
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["caches", "collect", "cpu_model", "git_revision", "transparent_huge_pages"]

_PACKAGES = ("trainsim", "numpy", "numba", "numba-cuda", "mpi4py")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpu_count(cpu_list: str) -> int:
    """CPUs in a Linux CPU list such as ``0-3,8``."""
    n = 0
    for part in cpu_list.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def caches(cpu: int = 0) -> dict[str, dict[str, int]]:
    """Data and unified caches of ``cpu`` from sysfs: ``{"L1d": {"bytes": 49152, "shared_by_cpus": 1}, "L2": ...}``.

    ``shared_by_cpus`` is how many CPUs share one instance (1: private to a core). Empty where sysfs does not say
    (not Linux, a container hiding it): the calibration then has no cache boundaries to put in the model.
    """
    out: dict[str, dict[str, int]] = {}
    for index in sorted(Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*")):
        level, kind, size = (_read(index / n) for n in ("level", "type", "size"))
        shared = _read(index / "shared_cpu_list")
        if not (level and kind and size and shared) or kind == "Instruction" or not size[:-1].isdigit():
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1].upper(), 0)
        if scale:
            out[f"L{level}" + ("d" if kind == "Data" else "")] = {"bytes": int(size[:-1]) * scale,
                                                                  "shared_by_cpus": _cpu_count(shared)}
    return out


def transparent_huge_pages() -> dict[str, str]:
    """The kernel's transparent-huge-page modes (``enabled`` for private memory, ``shmem_enabled`` for the shared
    segments the CPU ranks use): the selected value of each, where sysfs has it."""
    out = {}
    for name in ("enabled", "shmem_enabled"):
        text = _read(Path("/sys/kernel/mm/transparent_hugepage") / name)
        if text and "[" in text:
            out[name] = text.split("[", 1)[1].split("]", 1)[0]
    return out


def gpu_model() -> str | None:
    try:
        from numba import cuda

        if not cuda.is_available():
            return None
        name = cuda.get_current_device().name
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # noqa: BLE001 — provenance must never fail a measurement
        return None


def git_revision() -> str | None:
    """``HEAD`` of the checkout this code runs from, with ``+dirty`` when files are modified."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def collect(command: Sequence[str] | None = None, *, device: str = "cpu", light: bool = False) -> dict[str, Any]:
    """Facts about this run. ``light`` skips the machine description (for a calibration step)."""
    info: dict[str, Any] = {
        "command": " ".join(command if command is not None else ["trainsim", *sys.argv[1:]]),
        "git_revision": git_revision(),
        "versions": versions(),
    }
    if light:
        return info
    info.update({
        "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "device": device,
        "run_id": f"{_dt.datetime.now(_dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}",
        "caches": caches(),
        "transparent_huge_pages": transparent_huge_pages(),
    })
    if device == "cuda":
        info["gpu"] = gpu_model()
    return info
