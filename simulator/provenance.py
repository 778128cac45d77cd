"""Where a result came from: the trainsim version, the git revision when there is one, when, and how.

Recorded in ``run_info.json`` (never in the summary, which stays byte-identical for one seed).
"""

from __future__ import annotations

import datetime
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

__all__ = ["provenance", "version"]


@cache
def version() -> str:
    try:
        return metadata.version("trainsim")
    except metadata.PackageNotFoundError:       # a source tree that was never installed
        return "unknown"


@cache
def revision() -> str | None:
    """The git commit of the source tree trainsim runs from, if it is a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(command: list[str]) -> dict[str, object]:
    return {"trainsim_version": version(), "git_revision": revision(),
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": command}
