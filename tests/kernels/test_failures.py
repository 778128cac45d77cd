"""A rank that dies or hangs mid-collective: a clear KernelError, no hang, no shared memory left behind."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels.lowering import element_schedule

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm to list shared-memory segments")


def segments(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(prefix + "*"))


def test_a_rank_that_exits_at_step_2_fails_the_call_quickly_and_cleans_up():
    ex = kernels.executor("cpu", 3, timeout_s=20)
    s = element_schedule("ring", 3, 3000, "float32")
    ex.time(s, repeats=1)
    prefix, procs = ex.shm_prefix, list(ex._res.procs)
    assert segments(prefix) == []  # control + one per rank exist, mapped, but their names are already gone
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


def mapped_segments(pid: int, prefix: str) -> list[str]:
    """Segments with ``prefix`` that process ``pid`` maps (named or unlinked: "(deleted)")."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split("/dev/shm/")[1].split()[0] for line in maps.splitlines() if "/dev/shm/" + prefix in line})


def test_segments_are_unlinked_once_mapped_and_grown_segments_are_remapped():
    with kernels.executor("cpu", 2) as ex:
        prefix = ex.shm_prefix
        small = element_schedule("ring", 2, 1 << 10, "float64")
        ex.time(small, "float64", repeats=1)
        assert segments(prefix) == []  # nothing named while running: a kill cannot leak
        rank_maps = mapped_segments(ex.pids[0], prefix)
        assert len(rank_maps) == 3  # control + both ranks' segments, mapped though unlinked
        ex.time(element_schedule("ring", 2, 1 << 20, "float64"), "float64", repeats=1)  # grows the segments
        grown = mapped_segments(ex.pids[1], prefix)
        assert len(grown) == 3 and set(grown) != set(rank_maps) and segments(prefix) == []
        ex.run(small, [np.arange(1 << 10, dtype=np.float64)] * 2)  # still correct on the grown segments
    ex = kernels.executor("cpu", 2)
    prefix = ex.shm_prefix
    assert segments(prefix) == []
    del ex
    gc.collect()
    assert segments(prefix) == []


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_killing_the_whole_process_group_mid_run_leaves_no_segment(kill_group):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "simulator", "kernels", "bench", "--ranks", "2", "--sizes", "4MiB",
           "--repeats", "100000", "--warmup", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        ranks: list[int] = []
        while time.monotonic() < deadline:  # wait until both ranks map the 4 MiB segments (mid-run)
            ranks = [p for p in _descendants(proc.pid) if _maps_rank_segment(p, proc.pid)]
            if len(ranks) >= 2:
                break
            time.sleep(0.2)
        assert len(ranks) >= 2, "the ranks never started"
    finally:
        kill_group(proc.pid)
        proc.wait(10)
    time.sleep(0.5)
    assert segments(f"trainsim-{proc.pid}-") == []


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _maps_rank_segment(pid: int, parent: int) -> bool:
    try:
        return any("-r" in name for name in mapped_segments(pid, f"trainsim-{parent}-"))
    except OSError:
        return False


def test_a_killed_rank_under_the_cli_is_one_line_and_exit_2(kill_group):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "simulator", "kernels", "bench", "--ranks", "2", "--sizes", "4MiB",
           "--repeats", "100000", "--warmup", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        ranks: list[int] = []
        while time.monotonic() < deadline and len(ranks) < 2:
            ranks = [p for p in _descendants(proc.pid) if _maps_rank_segment(p, proc.pid)]
            time.sleep(0.2)
        assert len(ranks) >= 2, "the ranks never started"
        os.kill(ranks[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
    assert proc.returncode == 2, err
    assert err.startswith("trainsim kernels: error: ") and err.count("\n") == 1, err
    assert "died with exit code -9" in err and "Traceback" not in err
    assert segments(f"trainsim-{proc.pid}-") == []


def test_a_call_that_cannot_fit_in_memory_is_one_line_before_any_rank_starts(monkeypatch, capsys):
    from kernels import _base
    from simulator.cli import main

    monkeypatch.setattr(_base, "available_bytes", lambda: 100 * 2**20)
    assert main(["kernels", "bench", "--ranks", "4", "--sizes", "8MiB", "--mode", "thread", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 ranks × 8,388,608 bytes need about 0.2 GB of memory; 0.1 GB are available" in err
    with pytest.raises(kernels.KernelError, match="need about"):
        with kernels.executor("cpu", 2, mode="thread") as ex:
            ex.time(element_schedule("ring", 2, 1 << 24, "float32"), repeats=1)


def test_more_rank_processes_than_the_cpus_can_time_is_refused(capsys):
    from kernels import _base
    from simulator.cli import main

    too_many = _base.PROCESSES_PER_CPU * len(os.sched_getaffinity(0)) + 1
    assert main(["kernels", "bench", "--ranks", str(too_many), "--sizes", "4KiB"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{too_many} ranks: at most {too_many - 1} rank processes" in err
