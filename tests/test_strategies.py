"""Strategies: the conformance suite over every registered strategy, plus what each one promises."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import wsx
from wsx.testing.strategies import CHECKS, relative_error, synthetic_problem, true_accuracy

# Cheaper settings where the defaults would only make the suite slower (same code paths).
FAST = {
    "divide-and-conquer": {"pop_size": 16, "generations": 8},
    "nsga2": {"pop_size": 16, "generations": 8},
}
CASES = [(name, FAST.get(name, {})) for name in sorted(wsx.plugins.strategies())]
CASES.append(("divide-and-conquer", {"combination": "regression", "surrogate_pop_size": 24,
                                     "surrogate_generations": 8, "rounds": 2}))
CASES.append(("divide-and-conquer", {"combination": "scoring", "pop_size": 16, "generations": 8}))


def _id(case) -> str:
    name, params = case
    return name + (f"[{params['combination']}]" if "combination" in params else "")


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_conformance(case, check):
    name, params = case
    CHECKS[check](wsx.plugins.strategies()[name], params)


def test_thesis_family_is_registered():
    assert {"greedy", "greedy-filter", "greedy-pareto", "divide-and-conquer", "nsga2", "random",
            "knapsack"} <= set(wsx.plugins.strategies())


# -- knapsack ------------------------------------------------------------------------------------------
def _brute_front(costs, values):
    pts = []
    for combo in itertools.product(*[range(len(c)) for c in costs]):
        pts.append((sum(c[i] for c, i in zip(costs, combo)), sum(v[i] for v, i in zip(values, combo))))
    front = []
    for s, v in sorted(pts):
        if not front or v < front[-1][1] - 1e-12:
            front.append((s, v))
    return front


@pytest.mark.parametrize("seed", range(6))
def test_knapsack_dp_is_exact(seed):
    from wsx_plugins.strategies.knapsack import pareto_dp, solve

    rng = np.random.default_rng(seed)
    groups = int(rng.integers(2, 5))
    costs = [rng.integers(1, 20, size=int(rng.integers(1, 6))).astype(float) for _ in range(groups)]
    values = [rng.random(len(c)) * 10 for c in costs]
    s, v, choice = pareto_dp(costs, values)
    assert [(a, round(b, 9)) for a, b in zip(s, v)] == [(a, round(b, 9)) for a, b in _brute_front(costs, values)]
    for row, ss, vv in zip(choice, s, v):  # the choices reproduce each point
        assert sum(c[i] for c, i in zip(costs, row)) == ss
        assert math.isclose(sum(x[i] for x, i in zip(values, row)), vv)
    for capacity in range(0, int(sum(c.max() for c in costs)) + 2):
        feasible = [sum(x[i] for x, i in zip(values, combo))
                    for combo in itertools.product(*[range(len(c)) for c in costs])
                    if sum(c[i] for c, i in zip(costs, combo)) <= capacity]
        got = solve(costs, values, capacity)
        if not feasible:
            assert got is None
        else:
            assert math.isclose(got[0], min(feasible))


def test_knapsack_finds_the_true_best_on_an_additive_problem():
    """The synthetic metric is additive in per-layer errors, so the scanned local ALs are an exact
    surrogate: the knapsack front holds the highest CR meeting the target of the whole space."""
    problem = synthetic_problem(budget=200)
    wsx.plugins.strategies()["knapsack"]().run(problem)
    names = problem.layer_names
    best = 0.0
    for combo in itertools.product(*[problem.knob_values[n] for n in names]):
        knobs = dict(zip(names, combo))
        acc = true_accuracy({n: relative_error(problem, n, k) for n, k in knobs.items()})
        if problem.meets_target(acc):
            best = max(best, problem.compression_rate(knobs))
    found = max(c.compression_rate for c in problem.history if c.meets_target)
    assert found == pytest.approx(best)


# -- divide and conquer: the knapsack combination (default) ---------------------------------------------
def _best_in(problem, choices: dict) -> float:
    """The true highest CR meeting the target over every combination of ``choices``."""
    from wsx.problem import UNCOMPRESSED

    best = 0.0
    names = list(choices)
    for combo in itertools.product(*[choices[n] for n in names]):
        knobs = {n: k for n, k in zip(names, combo) if k is not UNCOMPRESSED}
        if problem.meets_target(true_accuracy({n: relative_error(problem, n, k) for n, k in knobs.items()})):
            best = max(best, problem.compression_rate(knobs))
    return best


def test_dc_knapsack_finds_the_best_of_phi_with_a_fraction_of_nsga2s_scorings():
    """On the additive synthetic metric the layer-wise losses make an exact model: the knapsack
    combination reaches the best CR of the whole phi space (at least), as NSGA-II does, with far fewer
    scorings."""
    strategies = wsx.plugins.strategies()
    problem = synthetic_problem()
    dc = strategies["divide-and-conquer"]()
    assert dc.combination == "knapsack"
    dc.run(problem)
    best = _best_in(problem, dc.phi_)
    found = max(c.compression_rate for c in problem.history if c.meets_target)
    assert found >= best - 1e-9  # the descent may leave phi for a better one
    assert any(c.origin.startswith("knapsack:") for c in problem.history)
    nsga = synthetic_problem()
    strategies["divide-and-conquer"](combination="scoring").run(nsga)
    assert max(c.compression_rate for c in nsga.history if c.meets_target) <= found + 1e-9
    assert problem.scorings * 3 < nsga.scorings


def test_dc_knapsack_meets_the_target_with_interactions_and_spends_a_budget():
    """Interacting layers (the sum of local losses underestimates): the refit and the descent still
    end on a candidate meeting the target; with a budget the rest goes to a local search."""
    problem = synthetic_problem(interaction=30.0, budget=90)
    dc = wsx.plugins.strategies()["divide-and-conquer"]()
    dc.run(problem)
    legal = [c for c in problem.history if c.meets_target and len(c.knobs) == 4]
    assert legal
    assert problem.scorings <= 90 and problem.extras["knapsack"]["polish"] > 0  # until no neighbour is left
    assert max(c.compression_rate for c in legal) >= 0.9 * _best_in(problem, dc.phi_)


def test_dc_bisection_finds_the_boundary_along_the_front_in_log_scorings():
    """Strong interactions make the additive model far too optimistic; the bisection along its front
    still ends on a point meeting the target next to one missing it, in O(log) scorings."""
    problem = synthetic_problem(interaction=200.0)
    dc = wsx.plugins.strategies()["divide-and-conquer"]()
    dc.run(problem)
    made = problem.extras["knapsack"]["bisection"]
    bis = [c for c in problem.history if c.origin == "knapsack:bisection"]
    assert len(bis) == made and 0 < made <= math.ceil(math.log2(problem.extras["knapsack"]["rounds"][0]["front"] + 1)) + 1
    legal = [c for c in bis if c.meets_target]
    assert legal and any(not c.meets_target for c in bis)
    assert max(c.compression_rate for c in legal) < min(c.compression_rate for c in bis if not c.meets_target)


def test_dc_loss_tables_keep_measured_losses_and_interpolate_monotonically():
    from wsx.problem import UNCOMPRESSED
    from wsx_plugins.strategies.divide_and_conquer import loss_tables

    problem = synthetic_problem()
    name = "l3.weight"
    ks = [2, 4, 8, 16, 32]
    scored = problem.evaluate([{name: k} for k in (4, 16)], origin="layer-wise")
    table = loss_tables(problem, {name: ks + [UNCOMPRESSED]}, {name: scored})[name]
    assert table[1] == pytest.approx(scored[0].accuracy_loss) and table[3] == pytest.approx(scored[1].accuracy_loss)
    assert table[-1] == 0.0
    assert np.all(np.diff(table[:5]) <= 1e-12)  # more shared values, no more loss
    assert table[0] >= table[1] and 0.0 <= table[4] <= table[3]


def _descent_setup(**params):
    from wsx_plugins.strategies.divide_and_conquer import AdditiveSurrogate, loss_tables

    problem = synthetic_problem()
    dc = wsx.plugins.strategies()["divide-and-conquer"](**params)
    phi = {n: [4, 8, 16, 32] for n in problem.layer_names}
    dc.layerwise_ = {n: problem.evaluate([{n: k} for k in phi[n]], origin="layer-wise") for n in phi}
    dc.surrogate_ = AdditiveSurrogate(phi, loss_tables(problem, phi, dc.layerwise_))
    return problem, dc, problem.evaluate([{n: 32 for n in phi}], origin="start")[0]


def test_dc_descent_moves_one_layer_down_while_it_improves():
    """From the least compressive candidate, the descent takes layers a step down (the next bit-width's
    top, or the smallest value of the group) while the result still meets the target, and ends better
    than it started."""
    from wsx_plugins.strategies.divide_and_conquer import best_meeting, move_up, moves_down

    problem, dc, start = _descent_setup(picks=4)  # groups {2} {3, 4} {6, 8} {12, 16} {32}
    assert moves_down(problem, "l1.weight", 16) == [12, 8] and moves_down(problem, "l1.weight", 2) == []
    assert moves_down(problem, "l1.weight", 6) == [4] and moves_down(problem, "l1.weight", None) == [32]
    assert [move_up(problem, "l1.weight", k) for k in (2, 3, 4, 16, 32, None)] == [3, 4, 6, 32, None, None]
    assert start.meets_target and best_meeting(problem) == start
    made = dc._descend(problem, start)
    end = best_meeting(problem)
    assert made > 0 and end.compression_rate > start.compression_rate and end.origin == "knapsack:descent"
    assert all(c.origin == "knapsack:descent" for c in problem.history[-made:])
    assert all(problem.compression_rate(c.knobs) > start.compression_rate for c in problem.history[-made:])


def _unscored_neighbours(problem, end) -> list:
    from wsx_plugins.strategies._common import is_scored
    from wsx_plugins.strategies.divide_and_conquer import moves_down

    here = {n: end.knobs.get(n) for n in problem.layer_names}
    neighbours = [{**here, n: k} for n in problem.layer_names for k in moves_down(problem, n, here[n])]
    assert neighbours
    return [c for c in neighbours if not is_scored(problem, c)]


def test_dc_descent_sweeps_every_single_move_before_it_stops():
    """However few moves a round scores and however soon it gives up (picks=1, descent_patience=1),
    a descent with sweeps left stops only after a sweep has scored every single move down from where
    it ends, none of which meets the target: the model's ranking cannot bury one that would. Without
    sweeps (descent_sweeps=0) it stops with such moves unscored."""
    from wsx_plugins.strategies.divide_and_conquer import best_meeting

    problem, dc, start = _descent_setup(picks=1, descent_patience=1, descent_sweeps=100)
    dc._descend(problem, start)
    assert best_meeting(problem).compression_rate > start.compression_rate
    assert _unscored_neighbours(problem, best_meeting(problem)) == []
    problem, dc, start = _descent_setup(picks=1, descent_patience=1, descent_sweeps=0)
    dc._descend(problem, start)
    assert _unscored_neighbours(problem, best_meeting(problem))
    with pytest.raises(wsx.InvalidSettingError, match="descent_sweeps"):
        wsx.plugins.strategies()["divide-and-conquer"](descent_sweeps=-1).run(synthetic_problem())


def test_dc_restart_descends_from_its_own_start():
    """A restart's descent moves on its own best, not on the best found before it: from a start below
    where the first descent ended it explores that region (a descent on the overall best would leave
    it after one round), and here it ends at a better optimum than the first descent's."""
    from wsx_plugins.strategies.divide_and_conquer import best_meeting

    problem, dc, start = _descent_setup(picks=1, descent_patience=1, descent_sweeps=0)
    dc._descend(problem, start)
    top = best_meeting(problem)
    other = problem.evaluate([{n: 16 for n in problem.layer_names}], origin="start")[0]
    assert other.meets_target and other.compression_rate < top.compression_rate
    since = len(problem.history)
    dc._descend(problem, other, since=since)
    assert sum(c.compression_rate < top.compression_rate for c in problem.history[since:]) >= 3
    assert best_meeting(problem, since).compression_rate > top.compression_rate


def test_dc_kicks_descend_again_from_below_the_best():
    """kicks=N runs N more descents after the first, each from the best candidate meeting the target
    at or below kick_back times the best CR then, its candidates marked knapsack:kick, and reports
    each (its start, its best, its scorings); kicks=0 runs none and the first descent is the same
    either way, so the best never falls. The noise (kick_noise) is seeded: the same kicks again. Bad
    values are refused by name."""
    runs = {}
    for n in (0, 2, 2):
        problem = synthetic_problem(steps=64)
        wsx.plugins.strategies()["divide-and-conquer"](kicks=n, kick_back=0.8, kick_noise=0.5).run(problem)
        runs.setdefault(n, []).append(problem)
    none, kicked, again = runs[0][0], runs[2][0], runs[2][1]
    assert none.extras["knapsack"]["kicks"] == [] and not any(c.origin == "knapsack:kick" for c in none.history)
    done = kicked.extras["knapsack"]["kicks"]
    assert len(done) == 2 and all(set(k) == {"start", "best", "scorings"} for k in done)
    first = [c.knobs for c in none.history if not c.origin.startswith("knapsack:ladder")]
    assert [c.knobs for c in kicked.history][:len(first)] == first
    at = [i for i, c in enumerate(kicked.history) if c.origin == "knapsack:kick"]
    assert len(at) == sum(k["scorings"] for k in done) and done[0]["scorings"] > 0
    begins = [at[0], at[done[0]["scorings"]]]  # each kick's first scoring
    for k, i in zip(done, begins):  # its start: at or below kick_back times the best before it
        top = max(c.compression_rate for c in kicked.history[:i] if c.meets_target and not c.rejected)
        assert k["start"] <= 0.8 * top + 1e-9 and k["best"] is not None
    best = {p: max(c.compression_rate for c in p.history if c.meets_target) for p in (none, kicked)}
    assert best[kicked] >= best[none]
    assert [c.knobs for c in again.history] == [c.knobs for c in kicked.history]
    plain = synthetic_problem(steps=64)  # kick_noise=0 (default): the model as it is, a fresh descent
    wsx.plugins.strategies()["divide-and-conquer"](kicks=2, kick_back=0.8).run(plain)
    assert len(plain.extras["knapsack"]["kicks"]) == 2 and any(c.origin == "knapsack:kick" for c in plain.history)
    assert max(c.compression_rate for c in plain.history if c.meets_target) >= best[none]
    for bad in (dict(kicks=-1), dict(kicks=1.5), dict(kicks=True), dict(kick_back=1.0), dict(kick_noise=-0.1),
                dict(kick_share=0), dict(kick_share=-0.5), dict(kick_share="all"), dict(kick_share=True)):
        with pytest.raises(wsx.InvalidSettingError, match="kick"):
            wsx.plugins.strategies()["divide-and-conquer"](**bad).run(synthetic_problem())


def test_dc_kick_share_bounds_a_kicks_scorings():
    """A kick makes at most kick_share times the scorings made before it (at least one); None leaves
    it unbounded. The default runs one kick so bounded, from at or below 0.95 times the best CR."""
    made = {}
    for share in (None, 0.05):
        problem = synthetic_problem(steps=64)
        wsx.plugins.strategies()["divide-and-conquer"](kicks=1, kick_back=0.8, kick_share=share).run(problem)
        at = [i for i, c in enumerate(problem.history) if c.origin == "knapsack:kick"]
        before = problem.history[:at[0]]
        made[share] = len(at)
        assert problem.extras["knapsack"]["kicks"][0]["scorings"] == len(at)
        if share is not None:
            assert len(at) <= max(int(share * len(before)), 1)
    assert made[None] > made[0.05] >= 1
    problem = synthetic_problem(steps=64)
    wsx.plugins.strategies()["divide-and-conquer"]().run(problem)
    (kick,) = problem.extras["knapsack"]["kicks"]
    at = [i for i, c in enumerate(problem.history) if c.origin == "knapsack:kick"]
    top = max(c.compression_rate for c in problem.history[:at[0]] if c.meets_target and not c.rejected)
    assert kick["start"] <= 0.95 * top + 1e-9 and 0 < len(at) <= max(int(0.25 * at[0]), 1)


def test_dc_restarts_are_reported_and_checked():
    """restarts=N runs N more bisections and descents after the first and reports each (its start,
    its best, its scorings); restarts=0 runs none; the first descent is the same either way, so the
    best never falls. A value that is not an int >= 0 is refused by name."""
    runs = {}
    for n in (0, 2):
        problem = synthetic_problem(steps=64)
        wsx.plugins.strategies()["divide-and-conquer"](restarts=n).run(problem)
        runs[n] = problem
    assert runs[0].extras["knapsack"]["restarts"] == []
    done = runs[2].extras["knapsack"]["restarts"]
    assert len(done) == 2 and all(set(r) == {"start", "best", "scorings"} for r in done)
    assert all(r["start"] is None or r["best"] >= r["start"] for r in done)
    first = [c.knobs for c in runs[0].history if not c.origin.startswith("knapsack:ladder")]
    assert [c.knobs for c in runs[2].history][:len(first)] == first
    best = {n: max(c.compression_rate for c in p.history if c.meets_target) for n, p in runs.items()}
    assert best[2] >= best[0]
    for bad in (-1, 1.5, True):
        with pytest.raises(wsx.InvalidSettingError, match="restarts"):
            wsx.plugins.strategies()["divide-and-conquer"](restarts=bad).run(synthetic_problem())


def test_dc_ladder_scores_fallbacks_spread_below_the_best():
    """Below the best candidate, the model's front is scored at CRs spread down to ladder_floor x its
    CR: candidates the final re-scoring on all samples can fall back to where the subset flattered the
    boundary. On the additive problem the model is exact, so each of them meets the target; what is
    scored already is not scored again; ladder=0 scores none."""
    from wsx_plugins.strategies.divide_and_conquer import AdditiveSurrogate, loss_tables
    from wsx_plugins.strategies.knapsack import size_tables

    problem = synthetic_problem()
    dc = wsx.plugins.strategies()["divide-and-conquer"](ladder=6, ladder_floor=0.6)
    phi = {n: [2, 3, 4, 6, 8, 12, 16, 32] for n in problem.layer_names}
    dc.layerwise_ = {n: problem.evaluate([{n: k} for k in phi[n]], origin="layer-wise") for n in phi}
    dc.surrogate_ = AdditiveSurrogate(phi, loss_tables(problem, phi, dc.layerwise_))
    top = problem.evaluate([{n: 16 for n in phi}], origin="start")[0]
    assert top.meets_target
    made = dc._ladder(problem, phi, size_tables(problem, phi), top)
    ladder = problem.history[-made:]
    assert made >= 3 and all(c.origin == "knapsack:ladder" for c in ladder)
    assert all(0.6 * top.compression_rate <= c.compression_rate < top.compression_rate and c.meets_target
               for c in ladder)
    assert len({round(c.compression_rate, 6) for c in ladder}) == made
    assert dc._ladder(problem, phi, size_tables(problem, phi), top) == 0  # all scored now
    dc.ladder = 0
    assert dc._ladder(problem, phi, size_tables(problem, phi), problem.history[-1]) == 0
    whole = synthetic_problem()
    wsx.plugins.strategies()["divide-and-conquer"]().run(whole)
    assert whole.extras["knapsack"]["ladder"] == sum(c.origin == "knapsack:ladder" for c in whole.history)
    with pytest.raises(wsx.InvalidSettingError, match="ladder_floor"):
        wsx.plugins.strategies()["divide-and-conquer"](ladder_floor=1.0).run(synthetic_problem())


# -- divide and conquer with regression ------------------------------------------------------------------
def test_regression_fits_an_additive_problem():
    problem = synthetic_problem(budget=120)
    strat = wsx.plugins.strategies()["divide-and-conquer"](combination="regression", doe="lhs",
                                                           surrogate_pop_size=24, surrogate_generations=8)
    strat.run(problem)
    reg = problem.extras["regression"]
    assert reg["samples"] > 10 and reg["n_test"] >= 2
    assert reg["r2"] > 0.99 and reg["rmse"] < 1e-6 and reg["mae"] < 1e-6
    assert reg["by_feature"]["inertia"] > 0.99 and reg["by_feature"]["k"] < 0.99
    assert any(c.origin.startswith("surrogate-front") for c in problem.history)


def test_regression_doe_auto_picks_the_best_pilot():
    problem = synthetic_problem(budget=150, interaction=30.0)
    strat = wsx.plugins.strategies()["divide-and-conquer"](combination="regression", doe="auto",
                                                           surrogate_pop_size=24, surrogate_generations=8)
    strat.run(problem)
    reg = problem.extras["regression"]
    r2 = reg["doe_pilot"]["r2"]
    from wsx_plugins.strategies.doe import SAMPLERS

    assert set(r2) == set(SAMPLERS)
    assert reg["doe"] == max((d for d in r2 if np.isfinite(r2[d])), key=r2.get)


# -- greedy ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.05, 0.15, 0.33, 1.0])
def test_greedy_filter_scores_ratio_of_each_layer(ratio):
    problem = synthetic_problem()
    wsx.plugins.strategies()["greedy-filter"](inertia_filter_ratio=ratio).run(problem)
    for name in problem.layer_names:
        scored = [c for c in problem.history if c.origin.endswith(f":{name}")]
        n = len(problem.knob_values[name])
        assert len(scored) == max(1, math.ceil(ratio * n - 1e-9))
        # the kept candidates are those of lowest inertia
        kept = {c.knobs[name] for c in scored}
        worst_kept = max(problem.proxy(name, k) for k in kept)
        assert all(problem.proxy(name, k) >= worst_kept for k in problem.knob_values[name] if k not in kept)


def test_greedy_keeps_the_best_al_per_layer_in_order():
    problem = synthetic_problem()
    strat = wsx.plugins.strategies()["greedy"](order="last-to-first")
    strat.run(problem)
    origins = [c.origin.rsplit(":", 1)[1] for c in problem.history]
    assert origins == sorted(origins, key=problem.layer_names.index, reverse=True)
    for name in problem.layer_names:  # additive metric: the lowest-error k of each layer, ties to the smaller k
        errs = [relative_error(problem, name, k) for k in problem.knob_values[name]]
        assert strat.knobs_[name] == problem.knob_values[name][int(np.argmin(errs))]


def test_greedy_passes_stop_when_nothing_changes():
    problem = synthetic_problem()
    strat = wsx.plugins.strategies()["greedy"](passes=5)
    strat.run(problem)
    assert strat.passes_ == 2  # the second pass confirms the first on an additive metric


def test_greedy_pareto_population_is_efficient_in_al_and_bits():
    problem = synthetic_problem()
    strat = wsx.plugins.strategies()["greedy-pareto"](inertia_filter_ratio=1.0, max_population=None)
    strat.run(problem)
    last = problem.layer_names[-1]
    pop = [c for c in problem.history if c.knobs in strat.population_]
    bits = {id(c): math.ceil(math.log2(c.knobs[last])) for c in pop}
    for a in pop:
        assert not any(b.accuracy_loss <= a.accuracy_loss and bits[id(b)] <= bits[id(a)]
                       and (b.accuracy_loss, bits[id(b)]) != (a.accuracy_loss, bits[id(a)]) for b in pop)
    # every layer's exploration extended every member of the previous population
    assert len(problem.history) > len(problem.layer_names) * len(problem.knob_values[last])


# -- designs of experiments ---------------------------------------------------------------------------------
@pytest.mark.parametrize("design", ["uniform", "lhs", "lhs-spacefilling", "halton", "maximin", "kmeans"])
def test_doe_samplers_give_valid_distinct_indices(design):
    from wsx_plugins.strategies.doe import sample

    sizes = [3, 5, 7, 2]
    rows = sample(design, sizes, 40, seed=3)
    assert rows.shape == (40, 4) and rows.dtype.kind == "i"
    assert (rows >= 0).all() and (rows < np.array(sizes)).all()
    assert len({tuple(r) for r in rows}) == 40
    assert np.array_equal(rows, sample(design, sizes, 40, seed=3))
    # every level of every factor is visited by a 40-point design of this small space
    assert all(len(set(rows[:, j])) == s for j, s in enumerate(sizes))
    small = sample(design, [2, 2], 10, seed=0, exclude={(0, 0)})
    assert sorted(map(tuple, small)) == [(0, 1), (1, 0), (1, 1)]


def test_lhs_is_a_latin_hypercube():
    from wsx_plugins.strategies.doe import sample

    rows = sample("lhs", [10, 10, 10], 10, seed=1)
    assert all(sorted(rows[:, j]) == list(range(10)) for j in range(3))


# -- surrogate predictions stay out of the history ---------------------------------------------------------
def test_surrogate_strategies_record_only_real_scorings():
    for strat in (wsx.plugins.strategies()["knapsack"](),
                  wsx.plugins.strategies()["divide-and-conquer"](combination="regression", surrogate_pop_size=24,
                                                                 surrogate_generations=8)):
        problem = synthetic_problem(budget=90)
        strat.run(problem)
        assert problem.scorings == len(problem.history) <= 90
        assert all(c.measured_on == "subset" for c in problem.history)


def test_greedy_pareto_group_filter_keeps_every_bit_width():
    from wsx_plugins.strategies.greedy import inertia_filter

    problem = synthetic_problem()
    name = problem.layer_names[0]
    bits = lambda ks: {math.ceil(math.log2(k)) for k in ks}  # noqa: E731
    whole = inertia_filter(problem, name, 0.15)
    grouped = inertia_filter(problem, name, 0.15, per_group=True)
    assert bits(grouped) == bits(problem.knob_values[name])
    keep = math.ceil(0.15 * len(problem.knob_values[name]))
    assert whole == sorted(problem.knob_values[name])[-keep:]  # lowest inertia = largest k
    assert len(bits(whole)) < len(bits(grouped))

