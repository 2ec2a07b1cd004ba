"""Pieces several strategies share: seeds, time checks, the layer-wise scan and picking what to score.

Not a plugin module (no entry point): strategies import it.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from wsx.errors import SearchStopped
from wsx.problem import knob_key
from wsx.result import pareto_front


def seed_of(strategy, problem) -> int:
    """The strategy's own ``seed``, or the exploration's when it is None."""
    seed = getattr(strategy, "seed", None)
    return int(problem.seed if seed is None else seed)


def check_time(problem) -> None:
    """Raise SearchStopped once the problem's time limit is spent (for long steps that do not score)."""
    if problem._time_up():
        problem.stop_reason = "time limit reached"
        raise SearchStopped(problem.stop_reason)


def budget_left(problem, default: int) -> int:
    """Scorings still allowed; ``default`` when the problem is unbudgeted."""
    left = problem.budget_left
    return default if left is None else int(left)


def is_scored(problem, knobs: Mapping) -> bool:
    return knob_key(knobs) in problem.scores


def knobs_at(choices: Mapping[str, Sequence], row) -> dict:
    """The knob dict an index row names (entry j indexes the j-th layer's ``choices``)."""
    return {n: choices[n][int(i)] for n, i in zip(choices, row)}


def evenly_spaced(size: int, n: int) -> np.ndarray:
    """At most ``n`` distinct indices spread evenly over range(size), both ends included."""
    return np.unique(np.round(np.linspace(0, size - 1, n)).astype(int))


def layerwise_scorings(problem) -> int:
    """Scorings of the layer-wise scan: sum_i |K_i|."""
    return sum(len(v) for v in problem.knob_values.values())


def layerwise_scan(problem, reject: bool = True, out: dict | None = None) -> dict:
    """Score every knob value of each layer with the other layers untouched (thesis §5.2).

    Returns {layer: [Candidate per knob value, in knob order]}, filled into ``out`` when given (layer by
    layer, so what a stopped run scored stays there). Costs sum_i |K_i| scorings.
    ``reject=False`` scores each in full (for strategies that fit a model on the values).
    """
    out = {} if out is None else out
    with problem.stage("layer-wise", layerwise_scorings(problem)):
        for name in problem.layer_names:
            population = [{name: kn} for kn in problem.knob_values[name]]
            out[name] = problem.evaluate(population, origin=f"layer-wise:{name}", reject=reject)
    return out


def index_bits_of(problem, name: str, knob) -> int:
    """b_index of a knob (the approximation's group key, ceil(log2 k) for weight sharing)."""
    return problem.approximation.group_key(problem.layer(name), knob)


def pick_for_scoring(cr: np.ndarray, predicted_al: np.ndarray, n: int, max_al: float,
                     margin: float) -> list[int]:
    """Indices (at most ``n``) of surrogate-front points worth scoring for real.

    Only points predicted within ``max_al + margin`` qualify. Half of the picks go to the highest-CR
    qualifying points (the region where the target's boundary lies, where prediction errors matter
    most), the rest are spread evenly over the qualifying CR range (hypervolume).
    """
    cr = np.asarray(cr, dtype=float)
    predicted_al = np.asarray(predicted_al, dtype=float)
    if n <= 0 or cr.size == 0:
        return []
    ok = np.flatnonzero(predicted_al <= max_al + margin)
    if ok.size == 0:  # nothing predicted legal: score the lowest-AL points
        ok = np.argsort(predicted_al)[:n]
    ok = ok[np.argsort(cr[ok], kind="stable")]
    if ok.size <= n:
        return [int(i) for i in ok]
    top = n - n // 2
    chosen = list(ok[-top:])
    rest = ok[:-top]
    spread = n - top
    if spread > 0 and rest.size:
        chosen.extend(rest[evenly_spaced(rest.size, spread)])
    return sorted({int(i) for i in chosen}, key=lambda i: cr[i])


def margin_of(rmse: float | None, max_al: float) -> float:
    """How far above the target a predicted AL may lie and still be scored: one RMSE of the model,
    at least a quarter of the allowed loss."""
    base = 0.25 * max_al
    return base if rmse is None or not math.isfinite(rmse) else max(base, float(rmse))


def size_tables(problem, choices: Mapping[str, Sequence]) -> list[np.ndarray]:
    """Bits of each choice of each layer, in ``choices`` order."""
    return [np.asarray([problem.layer_size_bits(n, k) for k in ks], dtype=float) for n, ks in choices.items()]


def compression_rates(problem, choices: Mapping[str, Sequence], idx: np.ndarray,
                      tables: list[np.ndarray] | None = None) -> np.ndarray:
    """CR of many index rows at once (layers outside ``choices`` keep their baseline size)."""
    tables = tables if tables is not None else size_tables(problem, choices)
    idx = np.asarray(idx, dtype=int).reshape(-1, len(tables))
    rest = sum(problem.approximation.baseline_bits(problem.layer(n)) for n in problem.layer_names
               if n not in choices)
    total = sum(t[idx[:, j]] for j, t in enumerate(tables)) + rest
    return problem.total_baseline_bits / total


def pareto_local_search(problem, choices: Mapping[str, Sequence], origin: str, max_al: float) -> int:
    """Spend leftover budget around the scored front: each Pareto-efficient candidate (knobs naming
    every layer, AL within ``max_al``; highest CR first) not yet expanded has its one-step neighbours
    (one layer's knob moved to the next value down or up its list) scored; repeat until none is
    left or the budget is spent. While no such candidate meets ``max_al`` the front of all of them
    is expanded, lowest AL first. Returns the number of scorings made.
    """
    names = list(choices)
    pos = {n: {k: i for i, k in enumerate(choices[n])} for n in names}
    expanded: set = set()
    start = problem.scorings
    while True:
        cap = budget_left(problem, default=10**9)
        if cap <= 0:
            break
        full = [c for c in problem.history if len(c.knobs) == len(names)
                and all(n in pos and c.knobs[n] in pos[n] for n in c.knobs)]
        pool = [c for c in full if c.accuracy_loss <= max_al and not c.rejected]
        if pool:  # the highest CR first
            order = sorted(pareto_front(pool), key=lambda c: -c.compression_rate)
        else:  # nothing legal yet: climb from the lowest AL
            order = sorted(pareto_front(full), key=lambda c: c.accuracy_loss)
        todo = [c for c in order if knob_key(c.knobs) not in expanded]
        if not todo:
            break
        member = todo[0]
        expanded.add(knob_key(member.knobs))
        neighbours = []
        for n in names:
            i = pos[n][member.knobs[n]]
            for j in (i - 1, i + 1):
                if 0 <= j < len(choices[n]):
                    cand = {**member.knobs, n: choices[n][j]}
                    if not is_scored(problem, cand):
                        neighbours.append(cand)
        if neighbours:
            check_time(problem)
            problem.evaluate(neighbours[:cap], origin=origin)
    return problem.scorings - start
