"""The public surface of topologies, and its docstring examples run as tests."""

import doctest
import importlib
import pkgutil

import pytest

import topologies

MODULES = ["topologies"] + [
    f"topologies.{m.name}" for m in pkgutil.iter_modules(topologies.__path__)
]


def test_public_names():
    assert sorted(topologies.__all__) == [
        "KINDS",
        "TopologyError",
        "build",
        "check",
        "devices",
        "load",
        "save",
    ]
    for name in topologies.__all__:
        assert getattr(topologies, name) is not None


def test_every_family_module_is_registered():
    families = {"ring", "switch", "torus", "fat_tree", "leaf_spine", "hierarchical"}
    assert families <= {m.rpartition(".")[2] for m in MODULES}
    assert set(topologies.KINDS) == families


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_doctests_ran():
    attempted = sum(
        doctest.testmod(importlib.import_module(m), optionflags=doctest.ELLIPSIS).attempted
        for m in MODULES
    )
    assert attempted >= 30


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_docstring_and_all(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.strip()) > 40
    assert isinstance(module.__all__, list)
