"""Shared fixtures: tiny clusters whose answers can be computed by hand."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")  # before numba is first imported
os.environ.setdefault("MPLBACKEND", "Agg")

SMALL = {
    "name": "small",
    "seed": 7,
    "cluster": {
        "topology": {"kind": "switch", "devices": 4, "link": {"bandwidth": "10GB/s", "latency": "1us"}},
        "device": "a100",
    },
    "workload": {"model": "resnet50", "batch_per_device": 32},
    "communication": {"algorithm": "ring", "bucket_size": "25MiB", "overlap": True},
    "training": {"iterations": 6, "warmup": 1},
}


@pytest.fixture
def small_config() -> dict:
    """A 4-GPU switch cluster training ResNet-50 (a fresh dict each time)."""
    return copy.deepcopy(SMALL)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/*/expected_summary.json from the current code")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden")


def _semaphores_of_group(pgid: int) -> set[Path]:
    """The named POSIX semaphores (multiprocessing's /dev/shm/sem.mp-*) mapped by a process group's processes."""
    found: set[Path] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            found |= {Path(line.split()[-1]) for line in (proc / "maps").read_text().splitlines()
                      if "/dev/shm/sem." in line}
        except OSError:  # the process ended while we looked
            continue
    return found


@pytest.fixture
def kill_group():
    """``kill(pgid)``: SIGKILL a whole process group, as a user's ``kill -9 -PGID`` does.

    multiprocessing's resource tracker, which would unlink the semaphores the group's processes
    created, dies with the group; so after the test the fixture unlinks the ones they had mapped
    (without it each such test left six ``sem.mp-*`` files in /dev/shm).
    """
    leaked: set[Path] = set()

    def kill(pgid: int) -> None:
        leaked.update(_semaphores_of_group(pgid))
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    yield kill
    for path in leaked:
        path.unlink(missing_ok=True)
