"""One annotator's pair counts over a whole threshold sweep, from one incremental min-cost matching.

The objective is boundary_match's (pairs within the radius at ``rint(100 d) + 1``, an unpaired
predicted pixel at ``ow``), written as a min-cost flow: every predicted pixel sends one unit to a
sink, through a GT pixel it may pair with (cost ``w``, each GT pixel passes one unit) or directly
(cost ``ow``). The sweep runs from the highest threshold down; between two thresholds the thinned
maps differ by a few pixels (pixels enter, and thinning removes a few), so instead of solving each
threshold from scratch (LAPJVsp per threshold: 85% of the evaluator's time), the optimum is kept
and repaired: node potentials keep every residual edge at a non-negative reduced cost, so

- a pixel that enters costs one Dijkstra search from it to the sink (it pairs, takes a GT pixel
  from a farther pixel along an alternating path, or stays unpaired), and
- a paired pixel that leaves frees its GT pixel, whose residual edge to the sink may now be
  negative: one backward search finds the most negative cycle through it (an unpaired pixel that
  can now pair, possibly by shifting others), or proves there is none.

Both searches stop at the first distance that cannot improve and update only the potentials they
reached, so each costs what its neighbourhood holds, not the image. The number of pairs is the
same for every optimal matching unless two matchings with different counts cost exactly the same:
they differ by alternating paths, and a path that adds a pair at no change of cost must add
exactly ``ow`` in pair lengths, i.e. run over at least ``ow`` / longest pair (about 100) pairs and
cancel to the unit. So the counts equal those of one LAPJVsp solve per threshold, although the
pixel sets may differ among equal-cost matchings (several annotators need LAPJVsp's own sets: a
predicted pixel counts when it matches any of them; those go through boundary_match.match_pairs).

The searches are scalar loops (about 3M edge relaxations per NYUD-size image), which numba
compiles; the same source runs as plain Python under ``NUMBA_DISABLE_JIT=1``.
"""
from __future__ import annotations

import heapq

import numpy as np
from numba import njit

_INF = np.int64(1) << 60


@njit(cache=True)
def _pair(q, g, mate, mate_w, pred_start, pred_gt, pred_w):
    """Pair predicted pixel q with GT pixel g (their previous partners are the caller's business)."""
    mate[q] = g
    mate[g] = q
    for k in range(pred_start[q], pred_start[q + 1]):
        if pred_gt[k] == g:
            mate_w[q] = pred_w[k]


@njit(cache=True)
def _relink(x, stop, prev, mate, mate_w, pred_start, pred_gt, pred_w):
    """Walk a shortest path along ``prev`` from x, pairing each node with the next one (whose old
    partner continues the walk) until ``stop`` is paired; False if the walk does not end."""
    for _ in range(mate.size):
        y = prev[x]
        old = mate[y]
        _pair(min(x, y), max(x, y), mate, mate_w, pred_start, pred_gt, pred_w)  # predicted pixels come first
        if y == stop:
            return True
        x = old
    return False


@njit(cache=True)
def _push(v, nd, via, dist, prev, touched, nt, heap):
    """Node v reached at distance nd from ``via``; returns the new count of touched nodes."""
    if dist[v] == _INF:
        touched[nt] = v
        nt += 1
    dist[v] = nd
    prev[v] = via
    heapq.heappush(heap, (nd, v))
    return nt


@njit(cache=True)
def _enter(p, n_pred, pred_start, pred_gt, pred_w, ow, mate, mate_w, pi, dist, prev, touched):
    """Predicted pixel ``p`` enters: shortest path from it to the sink (T = last node), then
    augment. Nodes: predicted pixels 0..n_pred-1, GT pixels after them. A GT pixel matched to q has
    one residual edge (to q), so it is relaxed through to q in the same step. Returns the change
    in the number of pairs (1 when the path ends at a free GT pixel) and in the matching's cost."""
    T = mate.size - 1
    piT = pi[T]
    best = piT - ow
    for k in range(pred_start[p], pred_start[p + 1]):
        v = pi[pred_gt[k]] - pred_w[k]
        if v > best:
            best = v
    pi[p] = best  # the least potential that keeps p's edges non-negative
    dist[p] = 0
    touched[0] = p
    touched[1] = T
    nt = 2
    d_t = ow + best - piT  # p straight to the sink (stays unpaired)
    dist[T] = d_t
    prev[T] = p
    heap = [(np.int64(0), p)]
    while len(heap) > 0:
        du, u = heapq.heappop(heap)
        if du >= d_t:
            break
        if du > dist[u]:
            continue
        if du < 0:
            raise RuntimeError("boundary_sweep: negative reduced cost (potentials broken)")
        mu = mate[u]
        if mu != -1:  # u gives up its GT pixel and goes to the sink
            nd = du + ow + pi[u] - piT
            if nd < d_t:
                d_t = nd
                dist[T] = nd
                prev[T] = u
        base = du + pi[u]
        for k in range(pred_start[u], pred_start[u + 1]):
            g = pred_gt[k]
            nd = base + pred_w[k] - pi[g]
            if nd < d_t and nd < dist[g] and g != mu:
                if dist[g] == _INF:
                    touched[nt] = g
                    nt += 1
                dist[g] = nd
                prev[g] = u
                q = mate[g]
                if q == -1:
                    nd += pi[g] - piT
                    if nd < d_t:
                        d_t = nd
                        dist[T] = nd
                        prev[T] = g
                else:
                    nd += pi[g] - pi[q] - mate_w[q]
                    if nd < d_t and nd < dist[q]:
                        nt = _push(q, nd, g, dist, prev, touched, nt, heap)
    cost = d_t - best + piT  # the path's reduced length back in real costs
    for t in range(nt):  # nodes closer than the sink move by (distance - d_t); the rest keep theirs
        u = touched[t]
        if dist[u] < d_t:
            pi[u] += dist[u] - d_t
        dist[u] = _INF
    v = prev[T]
    if v == p:
        return 0, cost
    gained = 0
    if v >= n_pred:  # ends at a free GT pixel
        gained = 1
        g = v
    else:  # ends at a paired pixel v that goes unpaired; its GT pixel is the path's last
        g = mate[v]
        mate[v] = -1
        mate[g] = -1
    if not _relink(g, p, prev, mate, mate_w, pred_start, pred_gt, pred_w):
        raise RuntimeError("boundary_sweep: augmenting path does not end (potentials broken)")
    return gained, cost


@njit(cache=True)
def _leave(p, n_pred, pred_start, pred_gt, pred_w, gt_start, gt_pred, gt_w, ow, mate, mate_w, pi, dist, prev,
           touched, present):
    """Predicted pixel ``p`` leaves. If it was paired, its GT pixel g0 is free and the edge g0 -> T
    may have a negative reduced cost -b: search backwards from g0 for the cheapest path T ~> g0
    (below b), i.e. the most negative cycle, and cancel it. Returns the change in pairs and in
    the matching's cost."""
    present[p] = False
    g0 = mate[p]
    if g0 == -1:
        return 0, -ow
    mate[p] = -1
    mate[g0] = -1
    T = mate.size - 1
    piT = pi[T]
    b = piT - pi[g0]
    if b <= 0:
        return -1, -mate_w[p]
    dist[g0] = 0
    touched[0] = g0
    nt = 1
    found = False
    heap = [(np.int64(0), g0)]
    while len(heap) > 0:
        du, u = heapq.heappop(heap)
        if du >= b:
            break
        if du > dist[u]:
            continue
        if u == T:
            found = True
            break
        if du < 0:
            raise RuntimeError("boundary_sweep: negative reduced cost (potentials broken)")
        if u >= n_pred:  # GT pixel: entered from a predicted pixel it is not paired with, or from T if paired
            q0 = mate[u]
            pu = pi[u]
            if q0 != -1:
                nd = du + piT - pu
                if nd < dist[T]:
                    nt = _push(T, nd, u, dist, prev, touched, nt, heap)
            for k in range(gt_start[u - n_pred], gt_start[u - n_pred + 1]):
                q = gt_pred[k]
                if q == q0 or not present[q]:
                    continue
                nd = du + gt_w[k] + pi[q] - pu
                if nd < dist[q] and nd < b:
                    nt = _push(q, nd, u, dist, prev, touched, nt, heap)
        else:  # predicted pixel: entered from its GT pixel if paired, from T if not
            g = mate[u]
            if g == -1:
                nd = du - ow + piT - pi[u]
                if nd < dist[T]:
                    nt = _push(T, nd, u, dist, prev, touched, nt, heap)
            else:
                nd = du - mate_w[u] + pi[g] - pi[u]
                if nd < dist[g] and nd < b:
                    nt = _push(g, nd, u, dist, prev, touched, nt, heap)
    cap = dist[T] if found else b
    for t in range(nt):
        u = touched[t]
        if dist[u] < cap and u != T:
            pi[u] += cap - dist[u]
        dist[u] = _INF
    if not found:
        return -1, -mate_w[p]
    cost = cap - b - mate_w[p]  # the cycle T ~> g0 -> T costs (its reduced length) - b
    change = -1
    x = prev[T]  # prev points towards g0 here
    if x >= n_pred:  # T -> x: GT pixel x gives up its pair, whose pixel moves on
        q = mate[x]
        mate[x] = -1
    else:  # T -> x: the unpaired pixel x pairs
        q = x
        change = 0
    if not _relink(q, g0, prev, mate, mate_w, pred_start, pred_gt, pred_w):
        raise RuntimeError("boundary_sweep: cycle does not close (potentials broken)")
    return change, cost


@njit(cache=True)
def _sweep(n_pred, n_gt, pred_start, pred_gt, pred_w, gt_start, gt_pred, gt_w, ow, step_start, ops):
    """Pairs and cost after each step; a step's ops are ~p (p leaves) or p (p enters), leaving first."""
    n = n_pred + n_gt + 1
    mate = np.full(n, -1, np.int64)
    mate_w = np.zeros(n, np.int64)
    pi = np.zeros(n, np.int64)
    dist = np.full(n, _INF, np.int64)
    prev = np.full(n, -1, np.int64)
    touched = np.empty(n, np.int64)
    present = np.zeros(n_pred, np.bool_)
    counts = np.zeros(step_start.size - 1, np.int64)
    costs = np.zeros(step_start.size - 1, np.int64)
    pairs, cost = 0, 0
    for s in range(step_start.size - 1):
        for o in range(step_start[s], step_start[s + 1]):
            if ops[o] < 0:
                dk, dc = _leave(~ops[o], n_pred, pred_start, pred_gt, pred_w, gt_start, gt_pred, gt_w, ow, mate,
                                mate_w, pi, dist, prev, touched, present)
            else:
                present[ops[o]] = True
                dk, dc = _enter(ops[o], n_pred, pred_start, pred_gt, pred_w, ow, mate, mate_w, pi, dist, prev,
                                touched)
            pairs += dk
            cost += dc
        counts[s] = pairs
        costs[s] = cost
    return counts, costs


def sweep_optima(steps: list[np.ndarray], i: np.ndarray, j: np.ndarray, w: np.ndarray, n_pred: int,
                 n_gt: int, ow: int) -> tuple[np.ndarray, np.ndarray]:
    """(pairs, cost) of the min-cost matching of each predicted set in ``steps`` (index arrays
    into 0..n_pred-1, in sweep order), given the candidate pairs (pred ``i``, GT ``j``) at integer
    weights ``w`` and the unpaired cost ``ow``; cost = sum of paired ``w`` + ``ow`` per unpaired
    predicted pixel."""
    if not steps:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    i, j, w = (np.asarray(a, dtype=np.int64) for a in (i, j, w))
    order = np.argsort(i, kind="stable")
    pred_start = np.searchsorted(i[order], np.arange(n_pred + 1)).astype(np.int64)
    pred_gt, pred_w = j[order] + n_pred, w[order]
    order = np.argsort(j, kind="stable")
    gt_start = np.searchsorted(j[order], np.arange(n_gt + 1)).astype(np.int64)
    gt_pred, gt_w = i[order], w[order]
    ops, sizes = [], []
    present = np.zeros(n_pred, dtype=bool)
    for s in steps:
        now = np.zeros(n_pred, dtype=bool)
        now[s] = True
        ops += [~np.flatnonzero(present & ~now), np.flatnonzero(now & ~present)]
        sizes.append(ops[-1].size + ops[-2].size)
        present = now
    step_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return _sweep(n_pred, n_gt, pred_start, pred_gt, pred_w, gt_start, gt_pred, gt_w, np.int64(ow), step_start,
                  np.concatenate(ops).astype(np.int64))


def warm_up() -> None:
    """Compile (or load from numba's cache) in this process, e.g. before forking workers."""
    sweep_optima([np.array([0]), np.array([0, 1])], np.array([0, 1]), np.array([0, 0]), np.array([1, 2]), 2, 1, 9)
