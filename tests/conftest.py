"""Shared fixtures: tiny clusters whose answers can be computed by hand."""

from __future__ import annotations

import copy
import os

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
