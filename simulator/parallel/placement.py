"""Where each parallel rank runs: (replica, stage, tensor index) → device rank on the topology.

The device-count rule
---------------------
A job uses ``D·T·P`` devices (``parallelism.data``, ``.tensor``, ``.pipeline``).
``data: null`` means ``D = devices / (T·P)``, and then ``T·P`` must divide the
topology's device count. Asking for more devices than the topology has is an
error naming the product; asking for fewer uses a subset (a single device, a
sweep over ``data`` on a fixed cluster).

The mapping
-----------
Logical ranks are numbered in mixed radix over ``parallelism.order``, fastest-varying
first; the default ``(tensor, pipeline, data)`` makes the ``T`` ranks of a tensor
group consecutive, then the stages of one replica, then the replicas — the
Megatron-LM order, which keeps the chattiest group (tensor, two all-reduces per
layer per pass) on the fastest links. Logical rank ``r`` runs on the ``r``-th
*slot*: devices in rank order, except that when tensor comes first, ``T > 1``
and a node's device count is not a multiple of ``T``, each node offers only
``⌊n/T⌋·T`` slots, so that no tensor group straddles two nodes (the leftover
devices stay idle). If that would leave too few slots, plain rank order is used
and :attr:`Placement.tensor_groups_in_one_node` says so.

A "node" is the ``host`` attribute the topology builders put on devices (each
device is its own node when there is none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from simulator.config import ConfigError
from simulator.config.models import Parallelism

__all__ = ["AXES", "ParallelSizes", "Placement", "model_parallel", "parallel_sizes", "place"]

AXES = ("data", "pipeline", "tensor")  # the array axes of Placement.device


@dataclass(frozen=True)
class ParallelSizes:
    data: int
    tensor: int
    pipeline: int

    @property
    def devices(self) -> int:
        return self.data * self.tensor * self.pipeline

    @property
    def model_parallel(self) -> bool:
        return self.tensor > 1 or self.pipeline > 1


def model_parallel(par: Parallelism) -> bool:
    """Anything beyond bucketed data parallelism: tensor, pipeline, microbatches, ZeRO or recompute."""
    return par.tensor > 1 or par.pipeline > 1 or par.microbatches > 1 or par.zero > 0 or par.recompute != "none"


def parallel_sizes(par: Parallelism, n_devices: int) -> ParallelSizes:
    """Apply the device-count rule; ``ConfigError`` names the product and the device count."""
    t, p = par.tensor, par.pipeline
    if par.data is None:
        if n_devices % (t * p):
            raise ConfigError(f"parallelism: data is null, so tensor × pipeline = {t} × {p} = {t * p} "
                              f"must divide the topology's {n_devices} devices")
        d = n_devices // (t * p)
    else:
        d = par.data
    if d * t * p > n_devices:
        if t == p == 1:
            raise ConfigError(f"parallelism.data: {d} workers but the topology has {n_devices} devices")
        raise ConfigError(f"parallelism: data × tensor × pipeline = {d} × {t} × {p} = {d * t * p} devices "
                          f"but the topology has {n_devices} devices")
    return ParallelSizes(d, t, p)


@dataclass(frozen=True)
class Placement:
    """The mapping. ``device[d, s, t]`` is the device rank of replica d, stage s, tensor index t."""

    sizes: ParallelSizes
    order: tuple[str, ...]
    device: np.ndarray           # int64[D, P, T]
    host: np.ndarray             # int64[D, P, T], the node of that device
    packed: bool                 # leftover devices were skipped to keep tensor groups whole

    def tensor_group(self, d: int, s: int) -> np.ndarray:
        return self.device[d, s, :]

    def data_group(self, s: int, t: int) -> np.ndarray:
        return self.device[:, s, t]

    def pipeline_group(self, d: int, t: int) -> np.ndarray:
        return self.device[d, :, t]

    @property
    def tensor_groups_in_one_node(self) -> bool:
        return bool((self.host == self.host[:, :, :1]).all())

    def devices_per_node_in(self, group: np.ndarray) -> int:
        """Members of ``group`` per node if they sit in equal consecutive runs per node, else 1.

        This is what a topology-aware algorithm (``hierarchical``) needs to know about a group.
        """
        hosts = self._host_of[group]
        runs = np.flatnonzero(np.diff(hosts)) + 1
        bounds = np.concatenate([[0], runs, [len(hosts)]])
        lengths = np.diff(bounds)
        if len(set(lengths.tolist())) == 1 and len(set(hosts.tolist())) == len(lengths):
            return int(lengths[0])
        return 1

    @property
    def _host_of(self) -> np.ndarray:
        table = np.zeros(int(self.device.max()) + 1, dtype=np.int64)
        table[self.device.ravel()] = self.host.ravel()
        return table

    def rows(self) -> list[dict[str, Any]]:
        """One row per logical rank: where it runs and which groups it belongs to."""
        D, P, T = self.device.shape
        out = []
        for rank, (d, s, t) in enumerate(_coords(self.order, self.sizes)):
            out.append({"rank": rank, "device": int(self.device[d, s, t]), "node": int(self.host[d, s, t]),
                        "replica": d, "stage": s, "tensor": t,
                        "tensor_group": d * P + s, "data_group": s * T + t})
        return out

    def describe(self) -> dict[str, Any]:
        D, P, T = self.device.shape
        return {
            "data": D, "tensor": T, "pipeline": P, "devices": D * P * T, "order": list(self.order),
            "tensor_groups_in_one_node": self.tensor_groups_in_one_node, "skipped_leftover_devices": self.packed,
            "tensor_groups": [self.tensor_group(d, s).tolist() for d in range(D) for s in range(P)],
            "pipeline_groups": [self.pipeline_group(d, t).tolist() for d in range(D) for t in range(T)],
            "data_groups": [self.data_group(s, t).tolist() for s in range(P) for t in range(T)],
            "ranks": self.rows(),
        }


def _coords(order: tuple[str, ...], sizes: ParallelSizes) -> list[tuple[int, int, int]]:
    """(replica, stage, tensor) of each logical rank, mixed radix over ``order`` (fastest first)."""
    size = {"data": sizes.data, "pipeline": sizes.pipeline, "tensor": sizes.tensor}
    out = []
    for r in range(sizes.devices):
        coord = {}
        for axis in order:
            coord[axis] = r % size[axis]
            r //= size[axis]
        out.append((coord["data"], coord["pipeline"], coord["tensor"]))
    return out


def device_hosts(graph: nx.Graph) -> np.ndarray:
    """The node (``host``) of every device, indexed by device rank."""
    devs = sorted((d["rank"], d.get("host", d["rank"])) for _, d in graph.nodes(data=True)
                  if d.get("role") == "device")
    return np.array([h for _, h in devs], dtype=np.int64)


def _slots(hosts: np.ndarray, tensor: int, needed: int) -> tuple[np.ndarray, bool]:
    """Devices offered to logical ranks, in order; whether leftovers were skipped."""
    ranks = np.arange(len(hosts))
    if tensor == 1:
        return ranks, False
    packed = []
    for h in dict.fromkeys(hosts.tolist()):  # nodes in order of their first device
        members = ranks[hosts == h]
        packed.extend(members[: len(members) // tensor * tensor].tolist())
    if len(packed) < needed or len(packed) == len(ranks):
        return ranks, False
    return np.array(packed, dtype=np.int64), True


def place(sizes: ParallelSizes, order: tuple[str, ...], graph: nx.Graph) -> Placement:
    """Map every (replica, stage, tensor index) to a device of ``graph`` (see the module docstring)."""
    hosts = device_hosts(graph)
    slots, packed = _slots(hosts, sizes.tensor, sizes.devices) if order[0] == "tensor" else (
        np.arange(len(hosts)), False)
    device = np.zeros((sizes.data, sizes.pipeline, sizes.tensor), dtype=np.int64)
    for rank, (d, s, t) in enumerate(_coords(tuple(order), sizes)):
        device[d, s, t] = slots[rank]
    return Placement(sizes, tuple(order), device, hosts[device], packed)
