"""Flows that start and end at arbitrary simulated times, sharing links max-min fairly.

Collective steps start all their flows together and are timed by ``Network`` in
one call. Asynchronous traffic (parameter-server pushes and pulls under ASP/SSP)
has no such structure: a flow arrives whenever a worker finishes computing. Here
the same fluid model runs *inside* the SimPy clock: every arrival and every
completion re-shares the links (progressive filling, as in ``fluid.py``), the
remaining bytes of every live flow advance at their rates in between, and the
next completion is timed with one alarm (see below).

A *group* of flows (one push or pull: a stage's flows to its k servers) is one event:
it completes when its last flow does; each flow also pays its path latency once,
after its last byte (the same convention as ``Fluid``), so a batch of flows started
together finishes at exactly the times ``Network.finish_times`` gives. A caller that
sends the same group again and again prepares it once (:meth:`FlowSimulator.prepare`:
routes resolved into arrays) and starts it with :meth:`FlowSimulator.start`.

Bookkeeping is arrays only, no Python object per flow: a flow is a slot (a column of
``_fs`` = remaining bytes, own rate, latency, finish threshold, of ``_is`` = its advance code,
and a row of ``_s`` = hops, group, class, links), a group is an index into ``_pending`` /
``_done_at`` and a list of SimPy events. Live
flows per link and the set of links carrying any (``_active``) are kept up to date as
flows arrive and leave, so nothing re-indexes the live flows. Two Numba kernels do
the work: ``_add`` puts a group's flows into slots; ``_step`` advances every live flow
to now, retires the finished ones (returning the groups that completed, in slot order)
and re-runs progressive filling over the live flows. Arrivals at the same simulated
instant are re-shared once (a zero-delay event).

Why not re-fill only the changed component of the flow–link graph: under max-min
fairness a component's allocation depends only on that component, but with k servers
every push shares a server's inbound link and every pull its outbound one, and a stage's
k flows share its own link, so in parameter-server traffic the live flows form one
component (measured: benchmarks/README.md, issue 19). What that traffic does have is few
distinct rates: the flows frozen at one link (a server's) share a rate. So rates are kept
per *bottleneck class* (``_class_fill``): the filling runs over the classes' bottleneck
links, then the max-min characterisation is checked (each class's bottleneck saturates and
no open class of another bottleneck crosses it; no link over capacity), and when it fails
(or a new flow crosses no class's bottleneck) the flow-by-flow filling runs and its
freezing links are the next classes. That filling's arithmetic is the kernel it replaced
(same levels, saturation test and subtractions); the class filling sums ``count × rate``
per link instead of subtracting flow by flow, so its rates agree with a from-scratch
``max_min_rates`` to 1e-12 relative (tested after every event), not bit for bit.

While every live flow has a class, the bytes left of a class's flows live in its contiguous *class
row* (``_cr``, slots in ``_cm``; ``_advance_rows``): one vectorised loop subtracts the class's
rate × dt (the product the flow loop subtracted, so the same floats), and a class is searched for
finished flows only when its fewest bytes left, tracked exactly (rounding is monotonic: the least of
``r - p`` is the least ``r`` minus ``p``), reaches its highest finish threshold or its slack. Flows
started since the last re-allocation join their rows after it (rate 0 in their first advance); a
flow-by-flow filling first puts the rows' bytes back into ``_fs`` (``_unpack_rows``) and rebuilds
the rows after classifying (``_fill_rows``). The next completion is timed with the engine
environment's movable alarm (``set_alarm``; ``_WakeAlarm`` gives a plain SimPy environment the same
two calls with timer events).

Numba is imported with this module; :func:`load_kernels` loads the cached kernels
ahead of a timed region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from numba import njit

from . import Network

__all__ = ["FlowGroup", "FlowSimulator", "load_kernels"]

_DONE = 1e-9  # a flow with less than this fraction of its bytes left has finished
_TIE = 1e-12  # links whose fair share is within this of the lowest saturate in the same round

# rows of the per-slot arrays (one contiguous row per field: the retire pass streams them)
_REM, _RATE, _LAT, _THR = 0, 1, 2, 3           # _fs: float64[4, slots]; _THR: _DONE x the flow's bytes
_FREE, _DONE_ROW, _ACT, _WORK, _ADV, _FRESH = 0, 1, 2, 3, 4, 5   # _is: int64[6, slots]; free list, scratch,
# advance code, flows added since the last re-allocation
# columns of the per-slot route array
_HOPS, _GROUP, _CLS, _LINK0 = 0, 1, 2, 3        # _s: int64[slots, 3 + max hops]; hops 0 = a free slot
# _CLS: the flow's class (-1: none; then its rate is its own _RATE)
# columns of the per-link arrays
_CAP, _LEFT, _SHARE = 0, 1, 2                  # _lf: float64[links, 3]
_LIVE, _COUNT, _POS, _SAT, _CLASS, _CPOS = 0, 1, 2, 3, 4, 5   # _li: int64[links, 6]
# _CLASS: the class the link is the bottleneck of (-1: none); _CPOS: its place in ``crowd`` (links with more
# than _CROWD live flows: the only ones a feasibility check must look at while the top rate is low enough)
_CROWD = 8
# bottleneck classes (see ``_class_fill``): _ci int64[classes, 3], _cf float64[5, classes + 2] (a row per field),
# _lc int64[links, classes]; the last row of _cf holds the lowest link capacity (_CRATE column)
_CL, _CN, _CSTATE, _CD = 0, 1, 2, 3              # its bottleneck link, its live flows, 0 open / 1 frozen / 2 now,
# its flows in the class rows (_cr, _cm; the others are fresh)
_CRATE, _CSHARE, _CMIN = 0, 1, 2                 # its rate, its fair share now, its live flows' fewest bytes left
_CTHR = 5                                        # the highest _THR of its flows in the class rows
_MAX_CLASSES = 32                                # more distinct bottlenecks than this: the flow-by-flow filling
_CSTEP, _CSLACK = 3, 4                           # _cf: its rate x dt and x slack in this advance
# _ADV (how the retire pass advances a slot): a class (its _CSTEP), _NEW (started since the last re-allocation:
# rate 0, the zero row _MAX_CLASSES of _cf), _OWN (no class: its own _RATE), -1 (a free slot)
_NEW, _OWN = _MAX_CLASSES, _MAX_CLASSES + 1
# entries of the int64 meta array
_HW, _NFREE, _NACTIVE, _NDONE, _STAMP, _NCLS, _VALID, _NFAST, _NFULL, _NCROWD = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
_ROWS, _NFRESH = 10, 11   # _ROWS: the class rows hold the classed flows' bytes (not _fs[_REM]); fresh flows
_FEASIBLE = 1e-12  # a link loaded above capacity by more than this fraction: the classes' rates are not max-min


@njit(cache=True, nogil=True)
def _add(links, hops, nbytes, latency, group, fs, s, li, active, is_, lc, ci, cf, crowd,
         meta):  # pragma: no cover - compiled
    """Put a group's flows into slots (a freed slot first, last freed first) and count them on their links;
    each joins the class of the slowest bottleneck its route crosses (none: the next filling is flow by flow).
    Returns ``False``, having done nothing, when the slots are too few or too narrow for the group."""
    hw, nfree, nactive = meta[_HW], meta[_NFREE], meta[_NACTIVE]
    if nfree + fs.shape[1] - hw < len(hops) or links.shape[1] > s.shape[1] - _LINK0:
        return False
    free, adv = is_[_FREE], is_[_ADV]
    for k in range(len(hops)):
        if nfree > 0:
            nfree -= 1
            i = free[nfree]
        else:
            i = hw
            hw += 1
        h = hops[k]
        s[i, _HOPS] = h
        s[i, _GROUP] = group
        for q in range(h):
            link = links[k, q]
            s[i, _LINK0 + q] = link
            if li[link, _LIVE] == 0:
                li[link, _POS] = nactive
                active[nactive] = link
                nactive += 1
            li[link, _LIVE] += 1
            if li[link, _LIVE] == _CROWD + 1:
                li[link, _CPOS] = meta[_NCROWD]
                crowd[meta[_NCROWD]] = link
                meta[_NCROWD] += 1
        fs[_REM, i] = nbytes[k]
        fs[_RATE, i] = 0.0
        fs[_LAT, i] = latency[k]
        fs[_THR, i] = _DONE * nbytes[k]
        s[i, _CLS] = -1
        adv[i] = _NEW
        is_[_FRESH, meta[_NFRESH]] = i
        meta[_NFRESH] += 1
        if meta[_VALID]:
            _join(i, h, s, li, lc, ci, cf, meta)
    meta[_HW], meta[_NFREE], meta[_NACTIVE] = hw, nfree, nactive
    return True


@njit(cache=True, nogil=True)
def _join(i, h, s, li, lc, ci, cf, meta):  # pragma: no cover - compiled
    """Slot ``i``'s new flow joins the class, among those bottlenecked on its route, with the lowest rate (a
    guess that ``_class_fill`` checks); with none on its route the classes are dropped until the next filling."""
    best, low = -1, np.inf
    for q in range(h):
        c = li[s[i, _LINK0 + q], _CLASS]
        if c >= 0 and cf[_CRATE, c] < low:
            best, low = c, cf[_CRATE, c]
    if best < 0:
        meta[_VALID] = 0
        return
    s[i, _CLS] = best
    ci[best, _CN] += 1
    for q in range(h):
        lc[s[i, _LINK0 + q], best] += 1


@njit(cache=True, nogil=True)
def _unlink(i, h, s, li, active, nactive, crowd, meta):  # pragma: no cover - compiled
    """Slot ``i``'s flow leaves its links; a link left with no flow leaves ``active`` (the last takes its place),
    one left with ``_CROWD`` leaves ``crowd`` (the same way)."""
    for q in range(h):
        link = s[i, _LINK0 + q]
        li[link, _LIVE] -= 1
        if li[link, _LIVE] == _CROWD:
            n = meta[_NCROWD] - 1
            p = li[link, _CPOS]
            last = crowd[n]
            crowd[p] = last
            li[last, _CPOS] = p
            meta[_NCROWD] = n
        if li[link, _LIVE] == 0:
            p = li[link, _POS]
            last = active[nactive - 1]
            active[p] = last
            li[last, _POS] = p
            li[link, _POS] = -1
            nactive -= 1
    return nactive


@njit(cache=True, nogil=True)
def _retire(now, dt, slack, fs, s, li, active, pending, done_at, is_, lc, ci, cf, crowd,
            meta):  # pragma: no cover - compiled
    """Advance the live flows by ``dt`` at their rates (their class's, or their own without one; none for
    a flow started since) and retire the finished ones; returns how many stay live, their classes' fewest
    bytes left in ``cf[_CMIN]``, the groups that completed in ``done`` (how many: ``meta[_NDONE]``), in
    slot order, as the flow loop this replaced finished them."""
    remaining, own, thr = fs[_REM], fs[_RATE], fs[_THR]
    adv, finished = is_[_ADV], is_[_WORK]
    step, limits, fewest = cf[_CSTEP], cf[_CSLACK], cf[_CMIN]
    for c in range(meta[_NCLS]):
        rate = cf[_CRATE, c]
        step[c] = rate * dt                     # the same products the flows' own multiplications gave
        limits[c] = rate * slack
    fewest[:] = np.inf
    na, nf = 0, 0
    for i in range(meta[_HW]):
        a = adv[i]
        if a < 0:
            continue
        if a == _OWN:
            rate = own[i]
            rem = remaining[i] - rate * dt
            limit = rate * slack
        else:                                   # a class, or _NEW (rate 0: the zero column)
            rem = remaining[i] - step[a]
            limit = limits[a]
        remaining[i] = rem
        if rem <= thr[i] or rem <= limit:
            finished[nf] = i
            nf += 1
        else:
            na += 1
            if a == _NEW:
                c = s[i, _CLS]
                a = adv[i] = c if c >= 0 else _OWN
            if rem < fewest[a]:                 # (the _OWN column is not read)
                fewest[a] = rem
    _leave(now, nf, fs, s, li, active, pending, done_at, is_, lc, ci, crowd, meta)
    if na == 0:                                       # nothing live: the slots start again from 0
        meta[_HW], meta[_NFREE] = 0, 0
    return na


@njit(cache=True, nogil=True)
def _leave(now, nf, fs, s, li, active, pending, done_at, is_, lc, ci, crowd, meta):  # pragma: no cover - compiled
    """The ``nf`` finished flows of ``is_[_WORK]`` (in slot order) free their slots and leave their links and
    classes; the groups they complete go to ``done`` (how many: ``meta[_NDONE]``)."""
    lat, free, done, adv, finished = fs[_LAT], is_[_FREE], is_[_DONE_ROW], is_[_ADV], is_[_WORK]
    nfree, nactive, ndone = meta[_NFREE], meta[_NACTIVE], 0
    for t in range(nf):
        i = finished[t]
        h = s[i, _HOPS]
        c = s[i, _CLS]
        s[i, _HOPS] = 0
        adv[i] = -1
        free[nfree] = i
        nfree += 1
        if c >= 0:
            ci[c, _CN] -= 1
            for q in range(h):
                lc[s[i, _LINK0 + q], c] -= 1
        nactive = _unlink(i, h, s, li, active, nactive, crowd, meta)
        g = s[i, _GROUP]
        done_at[g] = max(done_at[g], now + lat[i])
        pending[g] -= 1
        if pending[g] == 0:
            done[ndone] = g
            ndone += 1
    meta[_NDONE], meta[_NFREE], meta[_NACTIVE] = ndone, nfree, nactive


@njit(cache=True, nogil=True)
def _advance_rows(now, dt, slack, fs, s, li, active, pending, done_at, is_, lc, ci, cf, crowd, cr, cm,
                  meta):  # pragma: no cover - compiled
    """``_retire`` when every live flow has a class and the class rows hold their bytes left: each class's row
    advances by its rate x dt (the product the flow loop subtracted), and only a class whose fewest bytes
    left (tracked exactly: rounding is monotonic, so the least of ``r - p`` is the least ``r`` minus ``p``)
    reach its highest threshold or its slack is searched for finished flows; the fresh flows then join their
    class rows (rate 0 in their first advance, as in ``_retire``). Returns how many flows stay live."""
    thr, adv, finished, fresh = fs[_THR], is_[_ADV], is_[_WORK], is_[_FRESH]
    na, nf = 0, 0
    for c in range(meta[_NCLS]):
        rate = cf[_CRATE, c]
        p = rate * dt
        limit = rate * slack
        n = ci[c, _CD]
        row = cr[c]
        for j in range(n):
            row[j] = row[j] - p
        low = cf[_CMIN, c] - p
        if low <= cf[_CTHR, c] or low <= limit:      # some flow of the class may have finished: look
            members = cm[c]
            low, top, j = np.inf, 0.0, 0
            while j < n:
                rem, i = row[j], members[j]
                if rem <= thr[i] or rem <= limit:
                    finished[nf] = i
                    nf += 1
                    n -= 1
                    row[j], members[j] = row[n], members[n]
                else:
                    low, top = min(low, rem), max(top, thr[i])
                    j += 1
            ci[c, _CD], cf[_CTHR, c] = n, top
        cf[_CMIN, c] = low
        na += n
    for t in range(meta[_NFRESH]):
        i = fresh[t]
        c = s[i, _CLS]
        n = ci[c, _CD]
        cr[c, n], cm[c, n] = fs[_REM, i], i
        ci[c, _CD] = n + 1
        adv[i] = c
        cf[_CMIN, c] = min(cf[_CMIN, c], fs[_REM, i])
        cf[_CTHR, c] = max(cf[_CTHR, c], thr[i])
        na += 1
    meta[_NFRESH] = 0
    for t in range(1, nf):                            # slot order, as the flow loop finished them
        i = finished[t]
        u = t
        while u > 0 and finished[u - 1] > i:
            finished[u] = finished[u - 1]
            u -= 1
        finished[u] = i
    _leave(now, nf, fs, s, li, active, pending, done_at, is_, lc, ci, crowd, meta)
    if na == 0:
        meta[_HW], meta[_NFREE] = 0, 0
    return na


@njit(cache=True, nogil=True)
def _unpack_rows(fs, ci, cr, cm, meta):  # pragma: no cover - compiled
    """The class rows' bytes back to ``_fs[_REM]`` (the flow loop's form); the rows are dropped."""
    remaining = fs[_REM]
    for c in range(meta[_NCLS]):
        for j in range(ci[c, _CD]):
            remaining[cm[c, j]] = cr[c, j]
        ci[c, _CD] = 0
    meta[_ROWS], meta[_NFRESH] = 0, 0


@njit(cache=True, nogil=True)
def _fill_rows(na, fs, s, is_, ci, cf, cr, cm, meta):  # pragma: no cover - compiled
    """After a classification: the live flows' bytes left into their class rows, with each class's fewest
    bytes left and highest threshold."""
    act, thr = is_[_ACT], fs[_THR]
    for c in range(meta[_NCLS]):
        ci[c, _CD] = 0
        cf[_CMIN, c] = np.inf
        cf[_CTHR, c] = 0.0
    for t in range(na):
        i = act[t]
        c = s[i, _CLS]
        n = ci[c, _CD]
        cr[c, n], cm[c, n] = fs[_REM, i], i
        ci[c, _CD] = n + 1
        cf[_CMIN, c] = min(cf[_CMIN, c], fs[_REM, i])
        cf[_CTHR, c] = max(cf[_CTHR, c], thr[i])
    meta[_ROWS], meta[_NFRESH] = 1, 0


@njit(cache=True, nogil=True)
def _lowest_share(links, n, lf, li):  # pragma: no cover - compiled
    """Fair share of each of ``links[:n]`` into ``lf[:, _SHARE]`` and the lowest; links left with no unfrozen
    flow drop out of ``links`` (returns the lowest share and how many links stay)."""
    level = np.inf
    kept = 0
    for t in range(n):
        link = links[t]
        c = li[link, _COUNT]
        if c > 0:
            links[kept] = link
            kept += 1
            share = lf[link, _LEFT] / c
            lf[link, _SHARE] = share
            if share < level:
                level = share
    return level, kept


@njit(cache=True, nogil=True)
def _freeze(level, work, m, fs, s, lf, li, stamp, soonest):  # pragma: no cover - compiled
    """Flows of ``work[:m]`` crossing a link marked ``stamp`` get rate ``level``; the others stay in
    ``work``. Returns how many stay, and the soonest completion so far."""
    kept = 0
    for k in range(m):
        i = work[k]
        h = s[i, _HOPS]
        hit = False
        for q in range(h):
            if li[s[i, _LINK0 + q], _SAT] == stamp:
                hit = True
                s[i, _CLS] = s[i, _LINK0 + q]     # its bottleneck (a link id until ``_classify``)
                break
        if hit:
            fs[_RATE, i] = level
            soonest = min(soonest, fs[_REM, i] / level)
            for q in range(h):
                link = s[i, _LINK0 + q]
                lf[link, _LEFT] = max(lf[link, _LEFT] - level, 0.0)
                li[link, _COUNT] -= 1
        else:
            work[kept] = i
            kept += 1
    return kept, soonest


@njit(cache=True, nogil=True)
def _class_shares(k, lf, lc, ci, cf):  # pragma: no cover - compiled
    """Fair share at each open class's bottleneck into ``cf[_CSHARE, :]``; returns the lowest."""
    level = np.inf
    for c in range(k):
        if ci[c, _CSTATE] != 0:
            continue
        b = ci[c, _CL]
        load, count = 0.0, 0
        for d in range(k):
            n = lc[b, d]
            if n > 0:
                if ci[d, _CSTATE] == 0:
                    count += n
                else:
                    load += n * cf[_CRATE, d]
        share = (lf[b, _CAP] - load) / count
        cf[_CSHARE, c] = share
        level = min(level, share)
    return level


@njit(cache=True, nogil=True)
def _class_freeze(k, level, lc, ci, cf):  # pragma: no cover - compiled
    """Freeze the open classes whose bottleneck is at ``level`` (within ``_TIE``); returns their flows, or -1
    when a saturated bottleneck is crossed by an open class of another bottleneck (the classes are stale)."""
    threshold = level * (1.0 + _TIE)
    frozen = 0
    for c in range(k):
        if ci[c, _CSTATE] == 0 and cf[_CSHARE, c] <= threshold:
            ci[c, _CSTATE] = 2
            cf[_CRATE, c] = level
            frozen += ci[c, _CN]
    for c in range(k):
        if ci[c, _CSTATE] == 2:
            b = ci[c, _CL]
            for d in range(k):
                if lc[b, d] > 0 and ci[d, _CSTATE] == 0:
                    return -1
    for c in range(k):
        if ci[c, _CSTATE] == 2:
            ci[c, _CSTATE] = 1
    return frozen


@njit(cache=True, nogil=True)
def _feasible(k, top, lf, li, active, lc, cf, crowd, meta):  # pragma: no cover - compiled
    """No live link carries more than its capacity at the classes' rates (``top``: the highest of them); while
    ``_CROWD`` flows at ``top`` fit on the narrowest link, only the links in ``crowd`` can be over."""
    links, n = (crowd, meta[_NCROWD]) if _CROWD * top <= cf[_CRATE, _MAX_CLASSES] else (active, meta[_NACTIVE])
    for t in range(n):
        link = links[t]
        cap = lf[link, _CAP]
        if li[link, _LIVE] * top <= cap:
            continue
        load = 0.0
        for d in range(k):
            n = lc[link, d]
            if n > 0:
                load += n * cf[_CRATE, d]
        if load > cap * (1.0 + _FEASIBLE):
            return False
    return True


@njit(cache=True, nogil=True)
def _class_fill(lf, li, active, lc, ci, cf, crowd, meta):  # pragma: no cover - compiled
    """Max-min rates per bottleneck class, if the classes still describe the allocation; returns the soonest
    completion, or -1.0 when they do not (the caller then fills flow by flow).

    A class is the live flows that the last filling froze at one link (its bottleneck); flows with the same
    bottleneck get the same rate, so progressive filling can run over the classes' bottleneck links with
    the flows on them counted per class (``lc``), not flow by flow. The result is the max-min allocation
    exactly when it passes two checks (Bertsekas & Gallager §6.5.2: feasible, and every flow crosses a
    saturated link on which its rate is the highest): a class freezes only when its own bottleneck
    saturates (not some other class's), and no live link carries more than its capacity. Every live flow
    has a class here (``meta[_VALID]``); the rates stay per class (``cf``), and the soonest completion is each
    class's fewest bytes left over its rate (the same float as the lowest bytes / rate over its flows).
    """
    k = meta[_NCLS]
    left = 0
    for c in range(k):
        ci[c, _CSTATE] = 0 if ci[c, _CN] > 0 else 1
        left += ci[c, _CN]
    top = 0.0
    while left > 0:
        top = _class_shares(k, lf, lc, ci, cf)
        if not top > 0.0:
            return -1.0
        frozen = _class_freeze(k, top, lc, ci, cf)
        if frozen < 0:
            return -1.0
        left -= frozen
    if not _feasible(k, top, lf, li, active, lc, cf, crowd, meta):
        return -1.0
    soonest = np.inf
    for c in range(k):
        if ci[c, _CN] > 0:
            soonest = min(soonest, cf[_CMIN, c] / cf[_CRATE, c])
    return soonest


@njit(cache=True, nogil=True)
def _classify(na, fs, s, li, active, is_, lc, ci, cf, cr, cm, meta):  # pragma: no cover - compiled
    """After a flow-by-flow filling: the live flows' classes from the links that froze them (``_CLS`` holds
    that link now); more than ``_MAX_CLASSES`` bottlenecks leave the flows without classes."""
    act, adv = is_[_ACT], is_[_ADV]
    for c in range(meta[_NCLS]):
        li[ci[c, _CL], _CLASS] = -1
    for t in range(meta[_NACTIVE]):
        lc[active[t], :] = 0
    k = 0
    for t in range(na):
        i = act[t]
        b = s[i, _CLS]
        c = li[b, _CLASS]
        if c < 0:
            if k == _MAX_CLASSES:
                for u in range(t, na):
                    s[act[u], _CLS] = -1
                    adv[act[u]] = _OWN
                meta[_NCLS], meta[_VALID] = k, 0
                return
            c = k
            k += 1
            li[b, _CLASS] = c
            ci[c, _CL], ci[c, _CN] = b, 0
            cf[_CRATE, c] = fs[_RATE, i]
        s[i, _CLS] = c
        adv[i] = c
        ci[c, _CN] += 1
        for q in range(s[i, _HOPS]):
            lc[s[i, _LINK0 + q], c] += 1
    meta[_NCLS], meta[_VALID] = k, 1
    _fill_rows(na, fs, s, is_, ci, cf, cr, cm, meta)


@njit(cache=True, nogil=True)
def _step(now, dt, slack, fs, s, lf, li, active, lwork, pending, done_at, is_, lc, ci, cf, crowd, cr, cm,
          meta):  # pragma: no cover - compiled
    """Advance, retire, re-share the links; returns the time to the next completion (``inf``: no flow left)
    and how many groups completed (their ids: ``done``).

    The rates come from the bottleneck classes when they still hold (``_class_fill``); otherwise from
    progressive filling flow by flow: each round finds the lowest fair share over the links that carry
    flows, marks every link at that share (within ``_TIE``) and freezes the unfrozen flows crossing a
    marked link at that rate; the links that froze them are the next classes.
    """
    if meta[_VALID] and meta[_ROWS]:
        na = _advance_rows(now, dt, slack, fs, s, li, active, pending, done_at, is_, lc, ci, cf, crowd, cr, cm, meta)
    else:
        if meta[_ROWS]:
            _unpack_rows(fs, ci, cr, cm, meta)
        meta[_NFRESH] = 0
        na = _retire(now, dt, slack, fs, s, li, active, pending, done_at, is_, lc, ci, cf, crowd, meta)
    if na == 0:
        return np.inf, meta[_NDONE]
    if meta[_VALID]:
        soonest = _class_fill(lf, li, active, lc, ci, cf, crowd, meta)
        if soonest >= 0.0:
            meta[_NFAST] += 1
            return soonest, meta[_NDONE]
    if meta[_ROWS]:
        _unpack_rows(fs, ci, cr, cm, meta)
    meta[_NFULL] += 1
    return _fill_flows(fs, s, lf, li, active, lwork, is_, lc, ci, cf, cr, cm, meta), meta[_NDONE]


@njit(cache=True, nogil=True)
def _fill_flows(fs, s, lf, li, active, lwork, is_, lc, ci, cf, cr, cm, meta):  # pragma: no cover - compiled
    """Progressive filling flow by flow over the live flows (their bytes left in ``_fs[_REM]``), then their
    classes; returns the soonest completion."""
    nl = meta[_NACTIVE]
    for t in range(nl):
        link = active[t]
        lwork[t] = link
        lf[link, _LEFT] = lf[link, _CAP]
        li[link, _COUNT] = li[link, _LIVE]
    act, work, adv = is_[_ACT], is_[_WORK], is_[_ADV]
    na = 0
    for i in range(meta[_HW]):                       # the live slots, in slot order
        if adv[i] >= 0:
            act[na] = i
            na += 1
    work[:na] = act[:na]
    m = na
    stamp = meta[_STAMP]
    soonest = np.inf
    while m > 0:
        level, nl = _lowest_share(lwork, nl, lf, li)
        threshold = level * (1.0 + _TIE)
        stamp += 1
        for t in range(nl):
            link = lwork[t]
            if lf[link, _SHARE] <= threshold:
                li[link, _SAT] = stamp
        kept, soonest = _freeze(level, work, m, fs, s, lf, li, stamp, soonest)
        if kept == m:          # a saturated link with no unfrozen flow: the link counts are wrong
            raise AssertionError("progressive filling froze no flow: the live-flow counts per link are stale")
        m = kept
    meta[_STAMP] = stamp
    _classify(na, fs, s, li, active, is_, lc, ci, cf, cr, cm, meta)
    return soonest


class _Wake:
    """A timer without a ``Timeout``: what ``Environment.step`` asks of an event (its callbacks, ``_ok``)."""

    __slots__ = ("callbacks",)
    _ok = True

    def __init__(self, callback):
        self.callbacks = [callback]


class _WakeAlarm:
    """The engine environment's movable alarm (``set_alarm`` / ``clear_alarm``) on a plain SimPy environment: a
    timer event per setting, an older one still in the queue ignored when it fires."""

    def __init__(self, env: simpy.Environment):
        self.env, self._timer = env, None

    def set_alarm(self, delay: float, callback) -> None:
        timer = self._timer = _Wake(lambda t: t is self._timer and callback())
        self.env.schedule(timer, delay=delay)

    def clear_alarm(self) -> None:
        self._timer = None


@dataclass(frozen=True)
class FlowGroup:
    """A push or pull prepared once: its flows' routes as arrays (flows with no bytes or no hops left out)."""

    links: np.ndarray      # int64[k, hops], padded
    hops: np.ndarray       # int64[k]
    nbytes: np.ndarray     # float64[k]
    latency: np.ndarray    # float64[k]
    sizes: tuple[float, ...]  # the bytes again, as Python floats (for the running total, in order)

    @property
    def n(self) -> int:
        return len(self.hops)


def load_kernels() -> None:
    """Load (or compile) the kernels now, on a two-flow example, so a timed region does not pay for it."""
    env = simpy.Environment()
    sim = FlowSimulator.__new__(FlowSimulator)
    sim._setup(env, np.array([1.0, 1.0]), slots=2)
    group = FlowGroup(np.array([[0, 1]], dtype=np.int64), np.array([2], dtype=np.int64), np.array([1.0]),
                      np.array([0.0]), (1.0,))
    sim.start(group)
    env.run()


class FlowSimulator:
    """Asynchronous flows on a ``Network``'s routes, advanced by the SimPy clock.

    ``transfer(src, dst, nbytes)`` starts one flow per (src, dst) device-rank pair now
    and returns an event that fires when the last of them has arrived; ``prepare`` +
    ``start`` do the same for a group sent many times.
    """

    def __init__(self, env: simpy.Environment, network: Network, slots: int = 256):
        self.net = network
        routing = network.routing
        self._routes: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        self._setup(env, routing.capacity, slots)

    def _setup(self, env: simpy.Environment, capacity: np.ndarray, slots: int) -> None:
        self.env = env
        self._pad = len(capacity)
        n_links = len(capacity) + 1                  # the last one: padding, infinite capacity
        self._lf = np.zeros((n_links, 3))
        self._lf[:, _CAP] = np.append(capacity, np.inf)
        self._li = np.zeros((n_links, 6), dtype=np.int64)
        self._li[:, _POS] = -1
        self._li[:, _CLASS] = -1
        self._lc = np.zeros((n_links, _MAX_CLASSES), dtype=np.int64)
        self._ci = np.zeros((_MAX_CLASSES, 4), dtype=np.int64)
        self._cf = np.zeros((6, _OWN + 1))
        self._cf[_CRATE, _MAX_CLASSES] = float(np.min(capacity)) if len(capacity) else np.inf
        self._crowd = np.zeros(n_links, dtype=np.int64)
        self._active = np.zeros(n_links, dtype=np.int64)
        self._lwork = np.zeros(n_links, dtype=np.int64)
        self._meta = np.zeros(12, dtype=np.int64)
        self._hops = 1
        self._fs = np.zeros((4, 0))
        self._is = np.zeros((6, 0), dtype=np.int64)
        self._cr = np.zeros((_MAX_CLASSES, 0))
        self._cm = np.zeros((_MAX_CLASSES, 0), dtype=np.int64)
        self._s = np.zeros((0, _LINK0 + 1), dtype=np.int64)
        self._grow(slots)
        self._events: list[simpy.Event | None] = []   # per group id
        self._pending = np.zeros(0, dtype=np.int64)
        self._done_at = np.zeros(0)
        self._pack()
        self._free_groups: list[int] = []
        self._last = 0.0                  # simulated time the remaining bytes refer to
        # the next completion: the engine environment's movable alarm, or timer events on a plain one
        self._alarm = env if hasattr(env, "set_alarm") else _WakeAlarm(env)
        self._pending_allocation = False
        self.bytes_carried = 0.0
        self.flows_started = 0

    # -- slots and groups ---------------------------------------------------------------
    def _grow(self, n: int) -> None:
        m = self._fs.shape[1]
        fs = np.zeros((4, n))
        s = np.zeros((n, _LINK0 + self._hops), dtype=np.int64)
        is_ = np.zeros((6, n), dtype=np.int64)
        is_[_ADV] = -1
        cr, cm = np.zeros((_MAX_CLASSES, n)), np.zeros((_MAX_CLASSES, n), dtype=np.int64)
        fs[:, :m] = self._fs
        s[:m, : self._s.shape[1]] = self._s
        is_[[_FREE, _ADV, _FRESH], :m] = self._is[[_FREE, _ADV, _FRESH]]
        cr[:, :m], cm[:, :m] = self._cr, self._cm
        self._fs, self._s, self._is, self._cr, self._cm = fs, s, is_, cr, cm
        self._pack()

    def _pack(self) -> None:
        """The kernel's arrays in one tuple (rebuilt whenever one of them is replaced)."""
        if hasattr(self, "_done_at"):
            self._arrays = (self._fs, self._s, self._lf, self._li, self._active, self._lwork, self._pending,
                            self._done_at, self._is, self._lc, self._ci, self._cf, self._crowd, self._cr, self._cm,
                            self._meta)

    def _widen(self, hops: int) -> None:
        s = np.zeros((len(self._s), _LINK0 + hops), dtype=np.int64)
        s[:, : self._s.shape[1]] = self._s
        self._s, self._hops = s, hops
        self._pack()

    def _group(self, event: simpy.Event, n: int) -> int:
        if self._free_groups:
            g = self._free_groups.pop()
            self._events[g] = event
        else:
            g = len(self._events)
            self._events.append(event)
            if g == len(self._pending):
                self._pending = np.concatenate([self._pending, np.zeros(max(64, g), dtype=np.int64)])
                self._done_at = np.concatenate([self._done_at, np.zeros(max(64, g))])
                self._pack()
        self._pending[g] = n
        self._done_at[g] = self.env.now
        return g

    def _route(self, src: int, dst: int) -> tuple[np.ndarray, float]:
        route = self._routes.get((src, dst))
        if route is None:
            r = self.net.routing
            links = r.path_links(r.device_node(src), r.device_node(dst))
            route = self._routes[(src, dst)] = (links, r.route_latency(links))
        return route

    # -- the public verbs -------------------------------------------------------------
    def prepare(self, src: Sequence[int], dst: Sequence[int], nbytes: Sequence[float]) -> FlowGroup:
        """Flows ``src[i] → dst[i]`` of ``nbytes[i]`` as a group to ``start`` (any number of times)."""
        kept = []
        for s, d, n in zip(src, dst, nbytes, strict=True):
            links, latency = self._route(int(s), int(d))
            if n <= 0 or len(links) == 0:  # nothing to send, or a server on the worker's own device
                continue
            kept.append((links, latency, float(n)))
        width = max((len(k[0]) for k in kept), default=1)
        links = np.full((len(kept), width), self._pad, dtype=np.int64)
        for row, (path, _, _) in enumerate(kept):
            links[row, : len(path)] = path
        return FlowGroup(links, np.array([len(k[0]) for k in kept], dtype=np.int64),
                         np.array([k[2] for k in kept]), np.array([k[1] for k in kept]),
                         tuple(k[2] for k in kept))

    def transfer(self, src: Sequence[int], dst: Sequence[int], nbytes: Sequence[float]) -> simpy.Event:
        """Start flows ``src[i] → dst[i]`` of ``nbytes[i]`` now; the event fires when all have arrived."""
        return self.start(self.prepare(src, dst, nbytes))

    def start(self, group: FlowGroup) -> simpy.Event:
        """Start a prepared group's flows now; the event fires when the last has arrived (plus its latency)."""
        event = self.env.event()
        k = len(group.sizes)
        if k == 0:
            event._ok, event._value = True, None
            self.env.schedule(event)
            return event
        # no catch-up here: new flows have rate 0 until the re-allocation at this same instant,
        # which advances everything from the last allocation first
        g = self._group(event, k)
        if not _add(group.links, group.hops, group.nbytes, group.latency, g, self._fs, self._s, self._li,
                    self._active, self._is, self._lc, self._ci, self._cf, self._crowd, self._meta):
            if group.links.shape[1] > self._hops:         # too narrow or too few slots: make room, then add
                self._widen(group.links.shape[1])
            self._grow(2 * self._fs.shape[1] + k)
            _add(group.links, group.hops, group.nbytes, group.latency, g, self._fs, self._s, self._li,
                 self._active, self._is, self._lc, self._ci, self._cf, self._crowd, self._meta)
        carried = self.bytes_carried
        for n in group.sizes:                         # one by one, in order: the same running sum
            carried += n
        self.bytes_carried = carried
        self.flows_started += k
        if not self._pending_allocation:
            self._pending_allocation = True
            self.env.schedule(_Wake(self._reallocate))
        return event

    # -- the clock ----------------------------------------------------------------------
    def _reallocate(self, _event: simpy.Event | None = None) -> None:
        """Advance every live flow to now, retire the finished ones, re-share, and time the next completion."""
        self._pending_allocation = False
        env = self.env
        now = env.now
        dt = now - self._last
        self._last = now
        slack = 1e-13 * max(1.0, now)  # float round-off of the clock, in seconds
        soonest, n = _step(now, dt, slack, *self._arrays)
        if n:
            done, done_at, events, free = self._is[_DONE_ROW], self._done_at, self._events, self._free_groups
            for j in range(n):
                # succeed the group's event after its last flow's path latency: what Event.succeed does,
                # with a delay (one event instead of a timeout plus a callback)
                g = int(done[j])
                event = events[g]
                events[g] = None
                free.append(g)
                event._ok, event._value = True, None
                env.schedule(event, delay=max(0.0, float(done_at[g]) - now))
        if soonest == np.inf:
            self._alarm.clear_alarm()
        else:
            self._alarm.set_alarm(soonest, self._reallocate)

    # -- for tests ------------------------------------------------------------------------
    def live(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """The live flows now (as of the last re-allocation): their links, rates and remaining bytes."""
        hw = int(self._meta[_HW])
        slots = np.flatnonzero(self._s[:hw, _HOPS] > 0)
        links = [self._s[i, _LINK0:_LINK0 + self._s[i, _HOPS]].copy() for i in slots]
        cls = self._s[slots, _CLS]
        rate = np.where(cls >= 0, self._cf[_CRATE, np.maximum(cls, 0)], self._fs[_RATE, slots])
        remaining = self._fs[_REM].copy()
        if self._meta[_ROWS]:                         # the classed flows' bytes are in the class rows
            for c in range(int(self._meta[_NCLS])):
                n = int(self._ci[c, _CD])
                remaining[self._cm[c, :n]] = self._cr[c, :n]
        return links, rate, remaining[slots]

    def fills(self) -> tuple[int, int]:
        """Re-allocations solved per bottleneck class and flow by flow, so far."""
        return int(self._meta[_NFAST]), int(self._meta[_NFULL])

    def crowded(self) -> set[int]:
        """Links with more than ``_CROWD`` live flows, as kept up to date (a test recounts them)."""
        return set(self._crowd[: int(self._meta[_NCROWD])].tolist())

    def links_in_use(self) -> dict[int, int]:
        """Live flows per link, as kept up to date (a test recounts them from ``live``)."""
        active = self._active[: int(self._meta[_NACTIVE])]
        return {int(link): int(self._li[link, _LIVE]) for link in active}
