"""Torus: cycle isomorphism in 1-D, degree 2d, periodic grids, row-major ranks, sides of 2."""

import math

import networkx as nx
import numpy as np
import pytest

from topologies import TopologyError, check, devices
from topologies.torus import torus


@pytest.mark.parametrize("n", [3, 4, 5, 9])
def test_one_dimensional_torus_is_a_cycle(n):
    assert nx.is_isomorphic(torus((n,), bandwidth=1.0), nx.cycle_graph(n))


def test_int_dims_means_one_dimension():
    assert nx.utils.graphs_equal(torus(5, bandwidth=1.0), torus((5,), bandwidth=1.0))


@pytest.mark.parametrize("dims", [(3, 3), (3, 4), (5, 3), (3, 3, 3), (4, 3, 5)])
def test_sides_above_two_give_degree_2d(dims):
    G = torus(dims, bandwidth=1.0)
    n, d = math.prod(dims), len(dims)
    assert G.number_of_nodes() == n
    assert G.number_of_edges() == d * n
    assert set(dict(G.degree).values()) == {2 * d}
    check(G)


@pytest.mark.parametrize("dims", [(3, 4), (2, 3), (2, 2), (3, 2, 4)])
def test_torus_is_the_periodic_grid(dims):
    G = torus(dims, bandwidth=1.0)
    assert nx.is_isomorphic(G, nx.grid_graph(dim=list(dims), periodic=True))


@pytest.mark.parametrize(
    ("dims", "edges", "degree"),
    [((2,), 1, 1), ((2, 2), 4, 2), ((2, 3), 9, 3), ((2, 2, 2), 12, 3)],
)
def test_a_side_of_two_is_one_link(dims, edges, degree):
    G = torus(dims, bandwidth=1.0)
    assert G.number_of_edges() == edges
    assert set(dict(G.degree).values()) == {degree}


@pytest.mark.parametrize("dims", [(3, 4), (4, 2, 3)])
def test_ranks_are_row_major(dims):
    G = torus(dims, bandwidth=1.0)
    assert devices(G) == [f"d{r}" for r in range(math.prod(dims))]
    assert G.graph["dims"] == list(dims)
    for u, v in G.edges:
        a = np.array(np.unravel_index(G.nodes[u]["rank"], dims))
        b = np.array(np.unravel_index(G.nodes[v]["rank"], dims))
        moved = np.flatnonzero(a != b)
        assert len(moved) == 1
        axis = moved[0]
        assert (a[axis] - b[axis]) % dims[axis] in (1, dims[axis] - 1)


@pytest.mark.parametrize(
    ("dims", "named"),
    [
        ((), "dims"),
        ((3, 3, 3, 3), "dims"),
        ("44", "dims"),
        (None, "dims"),
        ((1,), r"dims\[0\]"),
        ((3, 2.5), r"dims\[1\]"),
        ((3, True), r"dims\[1\]"),
    ],
)
def test_torus_rejects_bad_dims(dims, named):
    with pytest.raises(TopologyError, match=rf"^torus: {named}: expected"):
        torus(dims, bandwidth=1.0)
