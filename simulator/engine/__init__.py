"""SimPy only: one training engine — a job elaborated once, one process per rank, components it talks to.

``build_job`` (``job.py``) is the only dispatcher: it elaborates the parallel plan
(data parallelism is T = P = 1), and wires a :class:`~.rank.Rank` process per
(replica, stage) to its synchronisation component — ``allreduce.py`` (a gradient
stream per stage) or ``parameter_server.py`` (sharded servers, with the BSP / SSP /
ASP / backup-worker policies of ``protocols.py``) — all built on the one
:class:`~.quorum.Quorum` primitive; ``pipeline.py`` carries activations between
stages, ``stragglers.py`` slows ranks down, ``learning.py`` trains the convergence
problem. Durations come from ``simulator.compute`` and ``simulator.network`` (through
the plan), never from literals here: the engine decides *when*, not *how long*.
"""

from .job import Job, build_job

__all__ = ["Job", "build_job"]
