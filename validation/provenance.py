"""Where a measurement came from: machine, library versions, git revision, command line.

Written as ``provenance.json`` beside ``measurements.csv`` and copied into every profile, so a
number in ``validation/profiles/`` can always be traced to the machine and code that made it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["collect", "cpu_model", "git_revision"]

_PACKAGES = ("trainsim", "numpy", "numba", "numba-cuda", "mpi4py")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    })
    if device == "cuda":
        info["gpu"] = gpu_model()
    return info
