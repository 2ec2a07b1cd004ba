"""Early rejection: a candidate that cannot meet the target stops being scored, in every scoring path,
and is recorded, journaled and treated as failing everywhere."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import wsx
from wsx.errors import InvalidSettingError, MetricError
from wsx.executor import ScoringSession, SerialExecutor
from wsx.journal import read as read_journal
from wsx.problem import ApproximationCache, Problem, Timers, knob_key
from wsx.result import Candidate, pareto_front
from wsx.scoring import Scored, StopRule
from wsx.testing.strategies import BASELINE, synthetic_problem

from _tiny import TinyBackend, forward, make_mlp


# -- the bounds -----------------------------------------------------------------------------------
def test_exact_bound_is_the_mean_if_every_remaining_sample_scored_best():
    rule = StopRule(threshold=0.9)
    best = rule.best_means([30.0, 50.0], [50, 50], total=100, check=1)
    np.testing.assert_allclose(best, [0.8, 1.0])  # (30 + 50) / 100, (50 + 50) / 100
    assert rule.misses(best).tolist() == [True, False]
    lower = StopRule(threshold=0.5, greater_is_better=False, bounds=(0.0, math.inf))
    np.testing.assert_allclose(lower.best_means([30.0, 10.0], [50, 50], 100, 1), [0.3, 0.1])
    assert lower.misses([0.6, 0.3]).tolist() == [True, False]
    # nothing to reach past an unbounded best value
    assert not StopRule(threshold=0.5, bounds=(0.0, math.inf)).misses(
        StopRule(threshold=0.5, bounds=(0.0, math.inf)).best_means([0.0], [50], 100, 1)).any()


def test_tolerance_keeps_a_candidate_on_the_threshold():
    rule = StopRule(threshold=0.8, tolerance=1e-9)
    assert not rule.misses([0.8 - 1e-12]).any() and rule.misses([0.8 - 1e-6]).all()


def test_statistical_bound_is_tighter_than_the_exact_one_and_covers_the_subset_mean():
    rng = np.random.default_rng(0)
    exact, stat = StopRule(threshold=0.9), StopRule(threshold=0.9, confidence=0.95)
    misses = 0
    for _ in range(400):
        data = (rng.random(1000) < 0.85).astype(float)  # a subset whose mean is about 0.85
        order = rng.permutation(1000)
        seen = data[order[:200]]
        b_exact = exact.best_means([seen.sum()], [200], 1000, 1)[0]
        b_stat = stat.best_means([seen.sum()], [200], 1000, 1)[0]
        assert b_stat <= b_exact
        misses += b_stat < data.mean()
    assert misses <= 0.05 * 400  # a 95 % bound: the subset's mean lies below it (Hoeffding-Serfling)


def test_stop_rule_and_scored_are_plain_picklable_data():
    rule = StopRule(threshold=0.7, greater_is_better=False, bounds=(0.0, 2.0), confidence=0.99, tolerance=1e-9)
    assert pickle.loads(pickle.dumps(rule)) == rule
    s = Scored(0.5, 100, True, 0.6)
    assert pickle.loads(pickle.dumps(s)) == s


def test_the_first_batch_holds_eight_times_the_fewest_samples_that_can_reject():
    # 11 failing samples of 100 reach at best 0.89 < 0.9; 10 reach 0.90, which meets it
    assert StopRule(threshold=0.9).fewest_rejecting(100) == 11
    lower = StopRule(threshold=0.5, greater_is_better=False, bounds=(0.0, 2.0))
    assert lower.fewest_rejecting(100) == 26  # 26 samples at 2.0: mean 0.52 > 0.5; 25 give 0.50
    assert StopRule(threshold=0.5, bounds=(0.0, math.inf)).fewest_rejecting(100) is None
    tight = StopRule(threshold=0.999)  # no sample of 64 may fall
    assert tight.fewest_rejecting(64) == 1 and tight.first_batch(64, 16) == 8
    assert tight.first_batch(64, 8) is None  # not smaller than the batch: whole batches
    assert StopRule(threshold=0.9).first_batch(400, 256) is None  # 8 x 41 samples > 256


def test_data_batches_can_start_with_a_smaller_batch():
    data = wsx.Data(np.arange(130.0).reshape(130, 1))
    sizes = [len(sel) for sel, _ in data.batches(None, 60, first=8)]
    assert sizes == [8, 60, 60, 2]
    picked = np.concatenate([sel for sel, _ in data.batches(np.arange(129, -1, -1), 60, first=8)])
    assert picked.tolist() == list(range(129, -1, -1))  # the order given, every sample once
    assert [len(sel) for sel, _ in data.batches(None, 60, first=60)] == [60, 60, 10]
    assert [len(sel) for sel, _ in data.batches(np.arange(5), 60, first=8)] == [5]


# -- the scoring loop -------------------------------------------------------------------------------
class Counting(TinyBackend):
    """Counts the candidates each batch's forward runs."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.per_batch = []

    def _forward_population(self, inputs, prepared):
        self.per_batch.append(len(prepared))
        return super()._forward_population(inputs, prepared)


def _population(weights, rng, noise=(0.0, 0.05, 3.0, 30.0)):
    return [{"fc2": weights["fc2"] + rng.normal(size=weights["fc2"].shape).astype(np.float32) * s} for s in noise]


def test_rejected_candidates_leave_the_following_batches():
    weights, data = make_mlp(n=400)
    be = Counting(weights, data, batch_size=50)
    pop = _population(weights, np.random.default_rng(0))
    full = be.score(pop)
    be.per_batch.clear()
    threshold = 0.9
    got = be.score_detailed(pop, None, stop=StopRule(threshold=threshold))
    assert be.per_batch[0] == len(pop) and be.per_batch[-1] < len(pop)  # dropped from later forwards
    assert sum(be.per_batch) * 50 == sum(s.samples for s in got)  # samples = forwards actually run
    for s, v in zip(got, full):
        if s.rejected:  # the bound is provable: the full score lies below it, and misses the threshold
            assert s.samples < 400 and v <= s.bound + 1e-12 and s.bound < threshold and s.value < threshold
        else:
            assert s.samples == 400 and s.value == v
    assert any(s.rejected for s in got) and not got[0].rejected


def test_without_a_rule_or_with_a_metric_that_is_not_per_sample_all_samples_are_scored():
    weights, data = make_mlp(n=400)
    pop = _population(weights, np.random.default_rng(0))
    be = TinyBackend(weights, data, batch_size=50)
    assert all(s.samples == 400 and not s.rejected for s in be.score_detailed(pop, None))
    whole = wsx.metric(lambda out, y: float((out.argmax(1) == y).mean()), name="whole")  # not per-sample
    be = TinyBackend(weights, data, batch_size=50, metric=whole)
    assert all(not s.rejected for s in be.score_detailed(pop, None, stop=StopRule(threshold=0.99)))
    unbounded = wsx.metric(lambda out, y: (out.argmax(1) == y).astype(float), per_sample=True, name="nobounds")
    be = TinyBackend(weights, data, batch_size=50, metric=unbounded)
    assert all(not s.rejected for s in be.score_detailed(pop, None, stop=StopRule(threshold=0.99)))


def test_a_custom_per_sample_metric_with_bounds_takes_part_and_its_bounds_are_checked():
    weights, data = make_mlp(n=400)
    pop = _population(weights, np.random.default_rng(0))
    right = wsx.metric(lambda out, y: (out.argmax(1) == y).astype(float), per_sample=True, bounds=(0, 1), name="hit")
    be = TinyBackend(weights, data, batch_size=50, metric=right)
    assert any(s.rejected for s in be.score_detailed(pop, None, stop=StopRule(threshold=0.9)))
    wrong = wsx.metric(lambda out, y: 3.0 * (out.argmax(1) == y), per_sample=True, bounds=(0, 1), name="wrong")
    be = TinyBackend(weights, data, batch_size=50, metric=wrong)
    with pytest.raises(MetricError, match="declares per-sample values in"):
        be.score_detailed(pop, None, stop=StopRule(threshold=0.9))


def test_every_candidate_rejected_stops_reading_the_data():
    weights, data = make_mlp(n=400)
    be = Counting(weights, data, batch_size=50)
    got = be.score_detailed(_population(weights, np.random.default_rng(0), (30.0, 40.0)), None,
                            stop=StopRule(threshold=0.99))
    assert all(s.rejected for s in got) and len(be.per_batch) < 8


@pytest.mark.parametrize("paths", ["loop", "vmap", "prefix", "vmap+prefix"])
def test_torch_paths_drop_rejected_candidates(lenet, paths):
    model, data = lenet
    be = wsx.plugins.backends()["torch"](model, data, batch_size=60, vmap="vmap" in paths,
                                         prefix_cache="prefix" in paths)
    layer = be.layers()[-1].name
    w = be.get_weights(layer)
    rng = np.random.default_rng(1)
    pop = [{layer: w + rng.normal(size=w.shape).astype(np.float32) * s} for s in (0.0, 0.02, 5.0, 50.0)]
    subset = np.arange(0, 480)
    full = be.score(pop, subset)
    before = be.sample_forwards_
    got = be.score_detailed(pop, subset, stop=StopRule(threshold=0.9))
    assert be.sample_forwards_ - before == sum(s.samples for s in got) < len(pop) * 480
    assert [s.rejected for s in got] == [False, False, True, True]
    for s, v in zip(got, full):
        assert (s.value <= s.bound < 0.9 and v <= s.bound + 1e-12) if s.rejected else s.value == v
    if "prefix" in paths:
        assert be.stats_["prefix_hits"] > 0
    if "vmap" in paths:
        assert be.stats_["vmap_calls"] > 0 and be.vmap_error_ is None


def test_torch_scores_a_smaller_first_batch_where_one_sample_can_reject(lenet):
    model, (x, _) = lenet
    be = wsx.plugins.backends()["torch"](model, x, batch_size=60, metric="agreement")
    layer = be.layers()[-1].name
    w = be.get_weights(layer)
    pop = [{layer: w}, {layer: w + np.random.default_rng(1).normal(size=w.shape).astype(np.float32) * 50.0}]
    subset = np.arange(480)
    rule = StopRule(threshold=0.999)  # one changed sample of 480 misses it
    got = be.score_detailed(pop, subset, stop=rule)
    assert got[0].samples == 480 and not got[0].rejected and got[0].value == 1.0
    assert got[1].rejected and got[1].samples == rule.first_batch(480, 60) == 8  # not 60
    # a score call without a rule reads whole batches again
    assert be.first_batch_ is None and be.score_detailed(pop[1:], subset)[0].samples == 480


@pytest.mark.parametrize("metric", ["agreement", "mse"])
def test_fidelity_metrics_reject_with_their_bounds(lenet, metric):
    model, (x, _) = lenet
    be = wsx.plugins.backends()["torch"](model, x, batch_size=60, metric=metric)
    layer = be.layers()[-1].name
    w = be.get_weights(layer)
    pop = [{layer: w}, {layer: w * 0 + 1.0}]
    subset = np.arange(480)
    if metric == "agreement":
        rule = StopRule(threshold=0.95)
    else:
        rule = StopRule(threshold=be.score([{}], subset)[0] + 1e-3, greater_is_better=False, bounds=(0, math.inf))
    got = be.score_detailed(pop, subset, stop=rule)
    assert [s.rejected for s in got] == [False, True] and got[1].samples < 480


# -- the search: recorded, journaled, failing, never on a front ------------------------------------------
def _explore(tiny_data, **kw):
    weights, data = tiny_data
    args = dict(backend=TinyBackend(weights, data, batch_size=40), progress=False, subset=None,
                strategy="divide-and-conquer:pop_size=8,generations=3")
    args.update(kw)
    return wsx.explore(weights, data, **args)


@pytest.fixture
def tiny_data():
    return make_mlp(n=400)


def test_explore_records_rejections_and_keeps_them_off_the_front(tiny_data, tmp_path):
    result = _explore(tiny_data, out=tmp_path)
    rejected = [c for c in result.history if c.rejected]
    assert rejected and result.extras["rejected"] == len(rejected)
    for c in rejected:
        assert not c.meets_target and c.samples < 400 and c.accuracy <= c.bound
    assert all(not c.rejected and c.samples is None for c in result.front)
    forwards = result.extras["sample_forwards"]
    assert forwards["search"] == sum(400 if c.samples is None else c.samples for c in result.history) + \
        400 * result.extras["sample_orders"]  # each ordering by a candidate (the descent's) is a forward
    assert result.settings["early_rejection"] == "exact" and result.settings["stop_rule"]["threshold"] > 0
    again = wsx.Result.load(tmp_path)  # results.json keeps them
    assert [(c.rejected, c.samples, c.bound) for c in again.history] == [(c.rejected, c.samples, c.bound)
                                                                         for c in result.history]
    records = [r for r in read_journal(tmp_path / "journal.jsonl")[1] if r.get("rejected")]
    assert len(records) == len(rejected) and all(r["samples"] < 400 for r in records)


def test_rejection_saves_forwards_and_can_be_turned_off(tiny_data):
    on = _explore(tiny_data)
    off = _explore(tiny_data, early_rejection=False)
    assert off.extras["rejected"] == 0 and not any(c.rejected for c in off.history)
    assert off.settings["stop_rule"] is None
    per = {k: v for k, v in zip([tuple(sorted(c.knobs.items())) for c in off.history], off.history)}
    assert on.extras["sample_forwards"]["search"] < off.extras["sample_forwards"]["search"]
    for c in on.history:  # a rejected candidate fails in full too; the others score the same
        full = per.get(tuple(sorted(c.knobs.items())))
        if full is not None:
            assert (not full.meets_target) if c.rejected else full.accuracy == c.accuracy


def test_a_resumed_journal_replays_rejections(tiny_data, tmp_path):
    first = _explore(tiny_data, out=tmp_path)
    resumed = _explore(tiny_data, out=tmp_path)
    assert resumed.extras["journal"]["scored"] == 0
    assert [c.to_dict() for c in resumed.history] == [c.to_dict() for c in first.history]


def test_statistical_rejection_rejects_no_later_than_exact_and_scores_in_random_order(tiny_data):
    weights, data = tiny_data
    pop = _population(weights, np.random.default_rng(0), (0.0, 0.3, 1.0, 3.0))
    be = TinyBackend(weights, data, batch_size=40)
    exact = be.score_detailed(pop, np.arange(400), stop=StopRule(threshold=0.9))
    stat = be.score_detailed(pop, np.arange(400), stop=StopRule(threshold=0.9, confidence=0.9))
    assert all(s.samples <= e.samples for s, e in zip(stat, exact))
    assert sum(s.samples for s in stat) < sum(e.samples for e in exact)

    class Recording(SerialExecutor):
        subsets = []

        def score(self, population, subset, **kw):
            self.subsets.append(subset)
            return super().score(population, subset, **kw)

    result = _explore(tiny_data, early_rejection=0.9, executor=Recording())
    assert result.settings["stop_rule"]["confidence"] == 0.9
    search = [s for s in Recording.subsets if s is not None]  # the baseline is scored on all, in order
    assert search and all(sorted(s) == list(range(400)) and list(s) != sorted(s) for s in search)
    assert all(not c.rejected for c in result.front)


def _gaps(weights, x):
    top = np.sort(forward(weights, x).astype(np.float64), axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def test_sample_margins_are_the_uncompressed_models_top_two_gaps_in_the_subsets_order(tiny_data):
    weights, (x, y) = tiny_data
    be = TinyBackend(weights, (x, y), batch_size=40)
    subset = np.random.default_rng(3).permutation(400)[:150]
    got = be.sample_margins(subset, "flat")
    assert got.shape == (150,)
    np.testing.assert_allclose(got, _gaps(weights, x[subset]) ** 2, rtol=1e-4, atol=1e-6)  # float32 forwards
    assert be.sample_margins(subset, None) is None  # no class axis (mse, cosine): no order


def test_sample_margins_of_a_candidate_are_its_own_top_two_gaps(tiny_data):
    weights, (x, y) = tiny_data
    be = TinyBackend(weights, (x, y), batch_size=40)
    subset = np.random.default_rng(4).permutation(400)[:150]
    cand = _population(weights, np.random.default_rng(0), (0.3,))[0]
    got = be.sample_margins(subset, "flat", weights=cand)
    np.testing.assert_allclose(got, _gaps({**weights, **cand}, x[subset]) ** 2, rtol=1e-4, atol=1e-6)
    assert not np.allclose(got, be.sample_margins(subset, "flat"), rtol=1e-2)  # not the uncompressed model's
    np.testing.assert_allclose(be.sample_margins(subset, "flat", weights={}), be.sample_margins(subset, "flat"))


class _OrderBy(wsx.strategy.Strategy):
    """Scores one candidate, orders the samples by another's margins, scores that one and a third."""

    name = "order-by"

    def _run(self, problem):
        self.at_ = {n: problem.knob_values[n][len(problem.knob_values[n]) // 2] for n in problem.layer_names}
        problem.evaluate([{n: problem.knob_values[n][-1] for n in problem.layer_names}])
        self.ordered_ = problem.order_samples_by(self.at_)
        problem.evaluate([self.at_, {n: problem.knob_values[n][0] for n in problem.layer_names}])


def test_a_search_can_order_the_samples_by_a_candidate(tiny_data):
    """Problem.order_samples_by puts the samples nearest a change of class under that candidate first
    from the next scoring on (the uncompressed model's order before), and its forward counts as the
    search's; without exact rejection there is no order to change."""
    weights, (x, _) = tiny_data

    class Recording(SerialExecutor):
        subsets, sessions = [], []

        def score(self, population, subset, **kw):
            self.subsets.append(None if subset is None else list(subset))
            self.sessions.append(self.session)
            return super().score(population, subset, **kw)

    strategy = _OrderBy()
    result = _explore(tiny_data, executor=Recording(), strategy=strategy)
    assert strategy.ordered_
    search = [s for s in Recording.subsets if s is not None]
    first = list(np.argsort(_gaps(weights, x) ** 2, kind="stable"))
    assert search[0] == first and search[-1] != first
    be = TinyBackend(weights, tiny_data[1], batch_size=40)
    mine = be.sample_margins(np.arange(400), "flat", weights=Recording.sessions[-1].materialise([strategy.at_])[0])
    assert search[-1] == list(np.argsort(mine, kind="stable"))
    forwards = result.extras["sample_forwards"]["search"]
    assert result.extras["sample_orders"] == 1
    assert forwards == 400 + sum(c.samples or 400 for c in result.history)  # the ordering forward counts
    Recording.subsets = []
    strategy = _OrderBy()
    _explore(tiny_data, executor=Recording(), strategy=strategy, early_rejection=False)
    assert strategy.ordered_ is False and all(s is None for s in Recording.subsets)


def test_exact_rejection_scores_the_samples_nearest_a_change_of_class_first(tiny_data):
    weights, (x, _) = tiny_data

    class Recording(SerialExecutor):
        subsets = []

        def score(self, population, subset, **kw):
            self.subsets.append(subset)
            return super().score(population, subset, **kw)

    result = _explore(tiny_data, executor=Recording())
    search = [s for s in Recording.subsets if s is not None]
    # the uncompressed model's order until a strategy orders them by a candidate (the descent does)
    assert search and list(search[0]) == list(np.argsort(_gaps(weights, x) ** 2, kind="stable"))
    assert all(sorted(s) == list(range(400)) for s in search)
    assert result.extras["rejected"] > 0
    Recording.subsets = []
    _explore(tiny_data, executor=Recording(), early_rejection=False)  # nothing to gain: the data's order
    assert all(s is None for s in Recording.subsets)
    # the point of it: rejected candidates stop after fewer samples than in the data's order
    pop = _population(weights, np.random.default_rng(0), (0.0, 0.02, 0.05, 0.1))  # small changes flip few
    be = TinyBackend(weights, tiny_data[1], batch_size=40)
    rule = StopRule(threshold=0.99)
    natural = be.score_detailed(pop, np.arange(400), stop=rule)
    nearest = be.score_detailed(pop, search[0], stop=rule)
    assert [s.rejected for s in natural] == [s.rejected for s in nearest] and any(s.rejected for s in natural)
    assert sum(s.samples for s in nearest) < sum(s.samples for s in natural)


def test_a_rejected_candidates_distortion_is_rescaled_from_the_nearest_samples_to_the_subset():
    from wsx.engine import _rescaled, partial_scales

    gaps = np.sort(np.random.default_rng(1).uniform(1e-3, 1.0, size=64))  # nearest first, as searched
    per_sample = 0.5 / gaps  # equal undivided distances
    scale = partial_scales(gaps)
    for m in (1, 16, 40, 64):
        np.testing.assert_allclose(per_sample[:m].mean() * scale[m - 1], per_sample.mean(), rtol=1e-12)
    partial = Scored(0.5, 16, rejected=True, bound=0.7, distortion=float(per_sample[:16].mean()))
    assert _rescaled(partial, scale).distortion == pytest.approx(per_sample.mean())
    assert _rescaled(partial, scale).samples == 16 and partial.distortion == per_sample[:16].mean()
    full = Scored(0.9, 64, distortion=1.0)
    assert _rescaled(full, scale) is full  # only partial means are estimates
    assert _rescaled(Scored(0.2, 16, rejected=True), scale).distortion is None


@pytest.mark.parametrize("value", [1.5, 0.0, "fast", -0.5])
def test_early_rejection_setting_is_checked(tiny_data, value):
    with pytest.raises(InvalidSettingError, match="early_rejection"):
        _explore(tiny_data, early_rejection=value)


def test_evaluate_without_rejection_rescores_a_rejected_candidate(tiny_data):
    weights, data = tiny_data
    be = TinyBackend(weights, data, batch_size=40)
    appr = wsx.plugins.approximations()["weight-sharing"]()
    layers = {layer.name: layer for layer in be.layers()}
    cache = ApproximationCache(appr, wsx.plugins.clusterers()["sorted1d"](), weights.__getitem__, Timers())
    ex = SerialExecutor()
    ex.start(ScoringSession(backends={"search": be}, cache=cache, layers=layers))
    problem = Problem(layers=list(layers.values()), knob_values={n: [2, 4] for n in layers}, approximation=appr,
                          cache=cache, score_fn=lambda pop, stop=None: ex.score(pop, None, stop=stop),
                          baseline_accuracy=be.score([{}])[0], target=0.99)
    c, = problem.evaluate([{"fc1": 2, "fc2": 2}])
    assert c.rejected and not c.meets_target and problem.scorings == 1
    again, = problem.evaluate([{"fc1": 2, "fc2": 2}])
    assert again.rejected and problem.scorings == 1  # known: not scored again
    full, = problem.evaluate([{"fc1": 2, "fc2": 2}], reject=False)
    assert not full.rejected and full.samples is None and problem.scorings == 2
    assert full.accuracy <= c.bound + 1e-12 and len(problem.history) == 2


def test_pareto_front_leaves_rejected_candidates_out():
    ok = Candidate({"a": 8}, 0.9, 1.0, 2.0, True)
    partial = Candidate({"a": 2}, 0.95, 0.5, 9.0, False, rejected=True, samples=10, bound=0.96)
    assert pareto_front([ok, partial]) == [ok]


# -- strategies treat rejected candidates as failing, and fit nothing on them ---------------------------
def _flattering(problem, bad_knob):
    """Candidates naming ``bad_knob`` for layer l1 come back rejected with the baseline's value: a
    partial score that looks perfect. A strategy must still treat them as failing."""
    truth = problem._score_fn

    def score(population, stop=None):
        return [Scored(BASELINE, 10, True, BASELINE) if c.get("l1.weight") == bad_knob else Scored(float(v), 1000)
                for c, v in zip(population, truth(population))]

    problem._score_fn = score
    problem._takes_stop = True
    return problem


@pytest.mark.parametrize("strategy", ["greedy", "greedy-pareto"])
def test_greedy_strategies_never_keep_a_rejected_candidate(strategy):
    problem = _flattering(synthetic_problem(), 2)
    algo = wsx.plugins.strategies()[strategy]()
    algo.run(problem)
    kept = [algo.knobs_] if strategy == "greedy" else algo.population_
    assert kept and all(k.get("l1.weight") != 2 for k in kept)


def test_nsga_and_local_search_count_a_rejected_candidate_as_failing():
    from wsx_plugins.strategies._common import pareto_local_search
    from wsx_plugins.strategies.nsga import run_nsga2

    problem = _flattering(synthetic_problem(budget=300), 2)
    res = run_nsga2(problem, problem.knob_values, evaluate=lambda pop: problem.evaluate(pop), pop_size=20,
                    generations=3, seed=0)
    feasible = res.pop.get("feasible").ravel()
    genes = np.round(res.pop.get("X")).astype(int)[:, 0]
    assert not np.any(feasible & (genes == problem.knob_values["l1.weight"].index(2)))
    before = {knob_key(c.knobs) for c in problem.history}
    pareto_local_search(problem, problem.knob_values, "polish", problem.max_loss)
    expanded_from = [c for c in problem.history if knob_key(c.knobs) not in before]
    assert all(c.knobs.get("l1.weight") != 2 or c.rejected for c in expanded_from)


def test_regression_and_knapsack_fit_only_full_scores(tiny_data):
    for strategy, fitted_on in (("divide-and-conquer:combination=regression,samples=12,rounds=1", ("doe", "surrogate")),
                                ("knapsack:rounds=1", ("layer-wise",))):
        result = _explore(tiny_data, strategy=strategy, knobs=[2, 3, 4, 8, 16], budget=60)
        fitted = [c for c in result.history if c.origin.startswith(fitted_on)]
        assert fitted and not any(c.rejected for c in fitted), strategy


def test_sample_forwards_count_the_test_scoring(tiny_data):
    weights, data = tiny_data
    x, y = data
    result = _explore(tiny_data, test_data=(x[:100], y[:100]))
    assert result.extras["sample_forwards"]["test"] == 100 * len(result.front) > 0


def test_nominated_candidates_join_the_final_rescoring(tiny_data):
    """Problem.nominate: candidates a strategy names are re-scored on all samples at the end besides
    the subset's front (where they are near or inside the target), and may take a place on the final
    front; without nominations only the front is re-scored."""
    from wsx_plugins.strategies.divide_and_conquer import DivideAndConquer

    class NominatingAll(DivideAndConquer):
        def _run(self, problem):
            super()._run(problem)
            problem.nominate(problem.history)

    kw = dict(subset=0.5, min_subset=0, early_rejection=False)
    plain = _explore(tiny_data, **kw)
    nominated = _explore(tiny_data, strategy=NominatingAll(pop_size=8, generations=3), **kw)
    assert [c.knobs for c in plain.history] == [c.knobs for c in nominated.history]
    plain_final, final = plain.extras["sample_forwards"]["final"], nominated.extras["sample_forwards"]["final"]
    assert plain_final % 400 == 0 and final % 400 == 0  # whole candidates on all 400 samples
    assert plain_final < final <= 400 * len(nominated.history)
    assert all(c.measured_on == "full" for c in nominated.front)
    best = lambda r: max((c.compression_rate for c in r.front if c.meets_target), default=0.0)  # noqa: E731
    assert best(nominated) >= best(plain)  # more candidates checked on all samples, never a worse pick


def test_a_subset_noisier_than_the_allowed_loss_is_noted(tiny_data):
    """The search subset's standard error against the allowed loss: a note says when it is larger and
    which subset would do; none when the search scores every sample or the subset is large enough."""
    small = _explore(tiny_data, subset=40, min_subset=0)
    note = [m for m in small.notes if "standard error" in m]
    assert len(note) == 1 and "40 of 400 samples" in note[0] and "subset=" in note[0]
    assert not any("standard error" in m for m in _explore(tiny_data, subset=None).notes)
    wanted = int(note[0].split("subset=")[1].split(" ")[0])
    if wanted < 400:
        assert not any("standard error" in m for m in _explore(tiny_data, subset=wanted, min_subset=0).notes)


def test_auto_subset_buys_a_quieter_subset_where_cheap_and_a_resumed_run_keeps_its_size(tiny_data, tmp_path,
                                                                                         monkeypatch):
    """subset="auto" starts from 10 % (40 of 400 samples here, min_subset=0): too noisy for the target,
    and scoring more costs next to nothing, so it is raised (and says so); priced out, the 10 % stays
    and the noise note names the size; a resumed run keeps the size its journal was started with."""
    from wsx import engine
    from wsx.commands import parse_subset

    assert parse_subset("auto") == "auto" and parse_subset("0.1") == 0.1
    cheap = _explore(tiny_data, subset="auto", min_subset=0, out=tmp_path)
    raised = cheap.settings["subset_samples"]
    assert raised > 40 and cheap.settings["subset"] == "auto"
    assert any(m.startswith(f"subset=auto: {raised} of 400") for m in cheap.notes)
    monkeypatch.setattr(engine, "AUTO_EXTRA_SECONDS", 0.0)
    dear = _explore(tiny_data, subset="auto", min_subset=0)
    assert dear.settings["subset_samples"] == 40 and not any(m.startswith("subset=auto") for m in dear.notes)
    assert any("standard error" in m and "40 of 400" in m for m in dear.notes)
    resumed = _explore(tiny_data, subset="auto", min_subset=0, out=tmp_path)
    assert resumed.settings["subset_samples"] == raised
    assert any(m.startswith("resumed from") for m in resumed.notes)
    assert [c.knobs for c in resumed.history] == [c.knobs for c in cheap.history]


def test_a_metric_too_coarse_for_the_allowed_loss_is_noted():
    """On all of 40 samples one flipped sample moves top-1 by 2.5 pp, more than mlperf-heavy's 1 pp: the
    run says the target lets no sample change and how many samples would give it resolution; on 400
    samples (0.25 pp a sample) it says nothing."""
    coarse = _explore(make_mlp(n=40), subset=None)
    note = [m for m in coarse.notes if "lets no sample change" in m]
    assert len(note) == 1 and "one of the 40 samples" in note[0] and "2.5 pp" in note[0]
    assert "score on 500 samples" in note[0]
    assert not any("lets no sample change" in m for m in _explore(make_mlp(n=400), subset=None).notes)


def test_on_a_subset_rejection_spares_what_the_final_rescoring_would_consider(tiny_data, monkeypatch):
    """On a search subset the final re-scoring takes candidates up to a margin past the target (3
    standard errors): early rejection stops a candidate only once its bound lies past that margin, so
    that it never takes from the front one that may meet the target on all samples. On all samples
    (no subset) it rejects at the target, as ever."""
    from wsx import engine

    def rejected_bounds(result):
        return [c.bound for c in result.history if c.rejected]

    kw = dict(subset=0.5, min_subset=0)
    sub = _explore(tiny_data, **kw)
    rule = sub.settings["stop_rule"]
    margin = engine._rescore_margin(wsx.metrics.Top1(), rule["threshold"], 200) / 100  # in accuracy
    assert 0 < margin < 1 and rule["tolerance"] == pytest.approx(margin, rel=1e-6)
    assert rejected_bounds(sub) and all(b < rule["threshold"] - margin for b in rejected_bounds(sub))
    near = [c for c in sub.history if not c.rejected and not c.meets_target
            and c.accuracy >= rule["threshold"] - margin]
    assert near and all(c.samples is None for c in near)  # scored on the whole subset, re-scorable
    # without the slack the same problem rejects candidates that missed by less than the margin
    monkeypatch.setattr(engine, "_rejection_slack", lambda *a: 0.0)
    tight = _explore(tiny_data, **kw)
    assert any(rule["threshold"] - margin <= b for b in rejected_bounds(tight))
    monkeypatch.undo()
    assert _explore(tiny_data, subset=None).settings["stop_rule"]["tolerance"] < 1e-6
