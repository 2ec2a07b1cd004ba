"""Exact multiple-choice knapsack over an additive AL surrogate (beyond the thesis).

With AL ≈ c + Σ_i v_i(k_i) and size = Σ_i s_i(k_i) (eq. 4.1 is additive), picking one k per layer to
minimise predicted AL under a size budget is a multiple-choice knapsack. Dynamic programming over the
layers, keeping only Pareto-efficient (size, value) partial states, solves it exactly for *every*
size budget at once: the final states are the surrogate's exact front.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.strategy import Strategy

from ._common import (budget_left, check_time, evenly_spaced, is_scored, knobs_at, layerwise_scan,
                      layerwise_scorings, margin_of, pareto_local_search, pick_for_scoring, seed_of, size_tables)
from .surrogate import AdditiveSurrogate, feature_tables, holdout_metrics

FEATURES = ("isotonic", "local-al", "inertia")


def pareto_dp(costs: Sequence[np.ndarray], values: Sequence[np.ndarray],
              max_states: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact front of min Σ value vs min Σ cost, one option per group.

    Returns (cost, value, choice) sorted by cost ascending, value strictly descending; ``choice``
    is (n_front, n_groups) option indices. ``max_states`` thins the partial front evenly when it
    grows larger (the result is then approximate); None never thins.
    """
    s = np.zeros(1)
    v = np.zeros(1)
    back: list[tuple[np.ndarray, np.ndarray]] = []
    for c, val in zip(costs, values):
        c = np.asarray(c, dtype=float)
        val = np.asarray(val, dtype=float)
        S = (s[:, None] + c[None, :]).ravel()
        V = (v[:, None] + val[None, :]).ravel()
        order = np.lexsort((V, S))  # by cost, then value
        Vo = V[order]
        prev_min = np.concatenate([[np.inf], np.minimum.accumulate(Vo)[:-1]])
        kept = order[Vo < prev_min]  # strictly better value than every cheaper (or equal) state
        if max_states is not None and kept.size > max_states:
            kept = kept[evenly_spaced(kept.size, max_states)]
        back.append((kept // c.size, kept % c.size))
        s, v = S[kept], V[kept]
    choice = np.zeros((s.size, len(back)), dtype=int)
    state = np.arange(s.size)
    for j in range(len(back) - 1, -1, -1):
        parent, option = back[j]
        choice[:, j] = option[state]
        state = parent[state]
    return s, v, choice


def solve(costs: Sequence[np.ndarray], values: Sequence[np.ndarray], capacity: float):
    """(value, choice) minimising Σ value with Σ cost <= capacity, or None when nothing fits."""
    s, v, choice = pareto_dp(costs, values)
    ok = np.flatnonzero(s <= capacity + 1e-9)
    if ok.size == 0:
        return None
    best = ok[np.argmin(v[ok])]
    return float(v[best]), choice[best]


def layer_tables(problem, scan: dict, feature: str) -> dict[str, np.ndarray]:
    """Per-layer AL model g_i(k) from the layer-wise scan (local AL, clipped at 0).

    "local-al": the measured local AL; "isotonic": the local AL made non-decreasing in inertia
    (scikit-learn's IsotonicRegression; removes scoring noise, keeps the order inertia gives);
    "inertia": β_i x inertia with β_i the least-squares slope of local AL on inertia.
    """
    from sklearn.isotonic import IsotonicRegression

    local_al = feature_tables(problem, problem.knob_values, "local-al", scan)
    out = {}
    for name, ks in problem.knob_values.items():
        local = np.clip(local_al[name], 0.0, None)
        if feature == "local-al":
            out[name] = local
            continue
        inertia = np.asarray(problem.proxies(name, ks), dtype=float)
        if feature == "isotonic":
            out[name] = IsotonicRegression(increasing=True, y_min=0.0).fit(inertia, local).predict(inertia)
        else:
            denom = float(inertia @ inertia)
            out[name] = inertia * (float(inertia @ local) / denom if denom > 0 else 0.0)
    return out


class Knapsack(Strategy):
    """Layer-wise scan, an additive AL surrogate per (layer, k), the exact knapsack front of that
    surrogate by dynamic programming, real scoring of the promising part of that front, and a
    refit of the surrogate's per-layer weights on what was scored; repeated while budget remains.

    ``features`` picks the per-layer model g_i ("isotonic", "local-al" or "inertia", see
    ``layer_tables``); the surrogate is AL ≈ c + Σ α_i g_i(k_i), starting from α = 1, c = 0 and
    refitted (non-negative α) on every scored candidate — scan points included — whose AL is within
    ``fit_cap`` times the allowed loss (the region of interest, where the additive model holds).
    Round r scores at most the budget left split over the ``rounds - r`` rounds still planned (32
    without a budget); rounds continue past ``rounds`` (up to ``max_rounds``) while budget is left
    and the front offers new points. ``max_states`` bounds the DP's partial fronts (exact while not
    reached). With ``polish`` the budget the rounds leave is spent on a Pareto local search around
    the scored front (one layer's k one step down or up; ``_common.pareto_local_search``).
    """

    name = "knapsack"

    def __init__(self, *, features: str = "isotonic", rounds: int = 4, max_rounds: int = 12,
                 fit_cap: float = 4.0, refit: bool = True, max_states: int | None = 20000,
                 polish: bool = True, seed: int | None = None):
        self.features = features
        self.rounds = rounds
        self.max_rounds = max_rounds
        self.fit_cap = fit_cap
        self.refit = refit
        self.max_states = max_states
        self.polish = polish
        self.seed = seed

    def first_step_scorings(self, problem) -> int:
        return layerwise_scorings(problem)

    def _run(self, problem) -> None:
        if self.features not in FEATURES:
            raise InvalidSettingError(f"features={self.features!r}; use one of {list(FEATURES)}")
        if self.rounds < 1 or self.max_rounds < self.rounds or self.fit_cap <= 0:
            raise InvalidSettingError("need 1 <= rounds <= max_rounds and fit_cap > 0")
        seed = seed_of(self, problem)
        choices = {n: list(problem.knob_values[n]) for n in problem.layer_names}
        scan = layerwise_scan(problem, reject=False)  # its values become the per-layer tables
        self.surrogate_ = AdditiveSurrogate(choices, layer_tables(problem, scan, self.features))
        costs = size_tables(problem, choices)
        max_al = problem.max_loss
        self.rounds_ = []
        fit = {}
        for r in range(self.max_rounds):
            check_time(problem)
            s, v, choice = pareto_dp(costs, self.surrogate_.contributions(), self.max_states)
            pred = v + self.surrogate_.intercept_
            cr = problem.total_baseline_bits / s
            fresh = [i for i in range(len(s)) if not is_scored(problem, knobs_at(choices, choice[i]))]
            left = budget_left(problem, default=10**9)
            quota = 32 if problem.budget is None else max(1, left // max(self.rounds - r, 1))
            margin = min(margin_of(fit.get("rmse"), max_al), max_al)
            picks = pick_for_scoring(cr[fresh], pred[fresh], min(quota, left), max_al, margin)
            info = {"round": r + 1, "front": int(len(s)), "scored": len(picks),
                    "surrogate": self.surrogate_.describe()}
            self.rounds_.append(info)
            problem.extras["knapsack"] = {"features": self.features, "rounds": self.rounds_}
            if not picks:
                break
            pop = [knobs_at(choices, choice[fresh[i]]) for i in picks]
            with problem.stage(f"knapsack round {r + 1}", len(pop)):
                problem.evaluate(pop, origin=f"knapsack:{r + 1}")
            if self.refit:
                fit = refit(problem, self.surrogate_, self.fit_cap, seed)
                info.update(fit)
            if problem.budget_left == 0:  # None (no budget) never equals 0
                break
            if problem.budget is None and r + 1 >= self.rounds:
                break
        if self.polish and problem.budget is not None:
            with problem.stage("knapsack polish", problem.budget_left):
                made = pareto_local_search(problem, choices, "knapsack:polish", max_al)
            problem.extras["knapsack"]["polish_scorings"] = made


def refit(problem, sur: AdditiveSurrogate, fit_cap: float, seed: int) -> dict:
    """Refit the surrogate's α, c on scored candidates within ``fit_cap`` times the allowed loss (the
    region of interest, where the additive model holds); hold-out metrics are measured on
    combinations (candidates approximating every layer) only."""
    from sklearn.model_selection import train_test_split

    cap = fit_cap * problem.max_loss
    X, usable = sur.rows([c for c in problem.history if not c.rejected])  # partial values are no fit data
    # the region of interest; while it holds few combinations, the lowest-AL ones join it
    combos_by_al = sorted(c.accuracy_loss for c in usable if len(c.knobs) == len(sur.names))
    need = min(2 * (len(sur.names) + 1), len(combos_by_al))
    if need and combos_by_al[need - 1] > cap:
        cap = combos_by_al[need - 1]
    inside = np.asarray([c.accuracy_loss <= cap for c in usable], dtype=bool)
    X = X[inside]
    y = np.asarray([c.accuracy_loss for c in usable], dtype=float)[inside]
    full = np.asarray([len(c.knobs) == len(sur.names) for c in usable], dtype=bool)[inside]
    combos = np.flatnonzero(full)
    out = {"n_fit": int(len(y)), "n_combinations": int(combos.size)}
    if combos.size >= 10:  # a hold-out of at least two (R² needs two)
        tr, te = train_test_split(combos, test_size=0.2, random_state=seed)
        train = np.setdiff1d(np.arange(len(y)), te)
        sur.fit_features(X[train], y[train])
        out.update(holdout_metrics(y[te], sur.predict_features(X[te])))
    if len(y) >= len(sur.names) + 2:
        sur.fit_features(X, y)
    return out


@hookimpl
def wsx_strategies():
    return [Knapsack]
