"""Helpers shared by the topology tests: degree histograms and link classes.

(A plain module, not conftest.py: ``from conftest import`` is ambiguous when other
test folders have a conftest.py of their own.)
"""

from collections import Counter


def degrees_by_role(G):
    """Return {role: Counter(degree -> how many nodes of that role)}."""
    out = {}
    for n, role in G.nodes(data="role"):
        out.setdefault(role, Counter())[G.degree(n)] += 1
    return out


def links_between(G, level_a, level_b):
    """Return the edges whose ends have the levels (or role 'device') given, in either order."""

    def level(n):
        d = G.nodes[n]
        return d.get("level", d["role"])

    return [(u, v) for u, v in G.edges if {level(u), level(v)} == {level_a, level_b}]
