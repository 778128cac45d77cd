"""Fixtures for the topology tests."""

import pytest


@pytest.fixture
def write(tmp_path):
    """Write text to a file in a temporary folder and return its path."""

    def _write(text, name="topology.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
