"""The one synchronisation primitive, against hand-worked event orders."""

from __future__ import annotations

import simpy

from simulator.engine.quorum import Quorum


def test_releases_at_the_quorum_and_refuses_later_arrivals():
    env = simpy.Environment()
    q = Quorum(env, 3)
    fired = []
    q.reached("k").callbacks.append(lambda _e: fired.append(env.now))

    def arrive(at: float):
        yield env.timeout(at)
        return q.arrive("k")

    procs = [env.process(arrive(t)) for t in (1.0, 2.0, 5.0, 7.0)]
    env.run()
    assert fired == [5.0] and q.reached_at["k"] == 5.0
    assert [p.value for p in procs] == [True, True, True, False]   # the 4th (a late backup) does not count
    assert q.reached("k").triggered                               # asking afterwards: already fired


def test_a_membership_change_releases_keys_that_now_meet_it():
    env = simpy.Environment()
    q = Quorum(env, 4)
    q.arrive("a"), q.arrive("a"), q.arrive("a"), q.arrive("b")
    assert not q.is_reached("a")
    q.set_need(3)                                                  # one member failed
    assert q.is_reached("a") and not q.is_reached("b")
    q.arrive("b"), q.arrive("b")
    assert q.is_reached("b")


def test_a_single_waiter_is_forgotten_once_served():
    env = simpy.Environment()
    q = Quorum(env, 2)
    ev = q.wait("k")
    q.arrive("k"), q.arrive("k")
    env.run()
    assert ev.triggered and "k" not in q.reached_at
    q.arrive("j"), q.arrive("j")                                   # reached before anyone waits
    late = q.wait("j")
    assert late.triggered and "j" not in q.reached_at
