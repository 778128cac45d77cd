"""SimPy processes: workers, the gradient communicator, and the training protocol.

Components own their state and expose short generator methods named for what
they model (``Worker.train``, ``Communicator.serve``); ``build_cluster`` creates
and wires everything before time zero, then ``run`` starts the processes.
Durations come from ``simulator.compute`` (compute) and ``simulator.network``
(communication), never from literals here.
"""

from .cluster import Cluster, build_cluster

__all__ = ["Cluster", "build_cluster"]
