"""A rank that dies or hangs mid-collective: a clear KernelError, no hang, no shared memory left behind."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels.lowering import element_schedule

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm to list shared-memory segments")


def segments(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(prefix + "*"))


def test_a_rank_that_exits_at_step_2_fails_the_call_quickly_and_cleans_up():
    ex = kernels.executor("cpu", 3, timeout_s=20)
    s = element_schedule("ring", 3, 3000, "float32")
    ex.time(s, repeats=1)
    prefix, procs = ex.shm_prefix, list(ex._res.procs)
    assert len(segments(prefix)) == 4  # control + one per rank
    ex._fault = (1, 2, "exit")  # test hook: rank 1 calls os._exit(17) before step 2
    start = time.monotonic()
    with pytest.raises(kernels.KernelError, match=r"rank 1 \(pid \d+\) died with exit code 17 while running ring "
                                                  r"allreduce, 3 ranks; the executor is closed"):
        ex.time(s, repeats=2)
    assert time.monotonic() - start < 5  # far below timeout_s: death is noticed, not waited out
    assert ex.closed and segments(prefix) == []
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(kernels.KernelError, match="closed"):
        ex.time(s)


def test_a_rank_that_hangs_times_out_the_barrier_and_is_killed():
    ex = kernels.executor("cpu", 2, timeout_s=1.0)
    prefix, procs = ex.shm_prefix, list(ex._res.procs)
    ex._fault = (0, 1, "hang")  # rank 0 sleeps for an hour before step 1
    start = time.monotonic()
    expected = r"rank 1 failed while running .*barrier \d+ waited 1 s for ranks \[0\]"
    with pytest.raises(kernels.KernelError, match=expected):
        ex.run(element_schedule("ring", 2, 100, "int32"), [np.zeros(100, np.int32)] * 2)
    assert time.monotonic() - start < 8
    assert segments(prefix) == [] and not any(p.is_alive() for p in procs)


def test_a_rank_killed_from_outside_mid_run_is_reported():
    ex = kernels.executor("cpu", 2, timeout_s=30)
    prefix = ex.shm_prefix
    s = element_schedule("ring", 2, 1 << 21, "float32")
    errors: list[BaseException] = []

    def long_run():
        try:
            ex.time(s, repeats=10_000, check=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    worker = threading.Thread(target=long_run)
    worker.start()
    time.sleep(0.5)
    os.kill(ex.pids[1], signal.SIGKILL)
    worker.join(10)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], kernels.KernelError)
    assert f"rank 1 (pid {ex.pids[1]}) died with exit code -9" in str(errors[0])
    assert segments(prefix) == []


def test_thread_mode_reports_a_failing_rank():
    with kernels.executor("cpu", 3, mode="thread", timeout_s=5) as ex:
        ex._fault = (2, 1, "exit")
        with pytest.raises(kernels.KernelError, match=r"rank 2: RuntimeError: injected failure"):
            ex.time(element_schedule("ring", 3, 30, "float32"), repeats=1)
        assert ex.closed


def test_close_and_garbage_collection_unlink_every_segment():
    with kernels.executor("cpu", 2) as ex:
        ex.time(element_schedule("ring", 2, 1 << 16, "float64"), "float64", repeats=1)
        ex.time(element_schedule("ring", 2, 1 << 20, "float64"), "float64", repeats=1)  # grows the segments
        prefix = ex.shm_prefix
        assert len(segments(prefix)) == 3
    assert segments(prefix) == []
    ex = kernels.executor("cpu", 2)
    prefix = ex.shm_prefix
    assert segments(prefix)
    del ex
    gc.collect()
    assert segments(prefix) == []
