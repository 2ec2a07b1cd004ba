"""Output distortion: every score carries the candidate's outputs' distance to the uncompressed model's
(``Scored.distortion``), recorded, journaled and replayed; divide-and-conquer's knapsack models it where
the metric moves in steps."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from wsx.errors import InvalidSettingError
from wsx.journal import read as read_journal
from wsx.scoring import StopRule
from wsx.testing.strategies import synthetic_problem

from _tiny import TinyBackend, forward, make_mlp


def _noisy(weights, scales=(0.0, 0.05, 0.5, 5.0)):
    rng = np.random.default_rng(0)
    return [{"fc2": weights["fc2"] + rng.normal(size=weights["fc2"].shape).astype(np.float32) * s} for s in scales]


def _batched(weights, x, idx, batch):
    # the backend's batches: float32 products round differently with a batch's length on some CPUs
    return np.concatenate([forward(weights, x[idx[j:j + batch]]) for j in range(0, len(idx), batch)])


def _expected(weights, x, cand, margin=True, idx=None, batch=64) -> float:
    """Mean distortion over samples ``idx`` (all by default) scored in batches of ``batch``, with the
    reference outputs as the backend caches them: from batches over all samples."""
    idx = np.arange(len(x)) if idx is None else idx
    out = _batched({**weights, **cand}, x, idx, batch).astype(np.float64)
    ref = _batched(weights, x, np.arange(len(x)), batch)[idx].astype(np.float64)
    per = ((out - ref) ** 2).mean(axis=1)
    if margin:  # class-deciding metrics: against the squared gap between the reference's top two classes
        top = np.sort(ref, axis=1)
        per = per / ((top[:, -1] - top[:, -2]) ** 2 + 1e-12 * (ref ** 2).mean(axis=1) + np.finfo(np.float64).tiny)
    return float(per.mean())


@pytest.mark.parametrize("metric", ["top1", "agreement", "mse"])
def test_scores_carry_the_mean_squared_distance_to_the_uncompressed_outputs(metric):
    weights, (x, y) = make_mlp(n=300)
    be = TinyBackend(weights, (x, y) if metric == "top1" else x, batch_size=64, metric=metric)
    pop = _noisy(weights)
    got = be.score_detailed(pop, None)
    assert got[0].distortion == 0.0
    for s, cand in zip(got, pop):
        assert s.distortion == pytest.approx(_expected(weights, x, cand, metric != "mse"), rel=1e-9)
        assert s.distortion != pytest.approx(_expected(weights, x, cand, metric == "mse"), rel=1e-3) or s is got[0]
    assert got[1].distortion < got[2].distortion < got[3].distortion
    subset = np.arange(40, 140)
    part = be.score_detailed(pop[2:3], subset)[0]
    assert part.distortion == pytest.approx(_expected(weights, x, pop[2], metric != "mse", subset), rel=1e-9)


def test_a_rejected_candidate_s_distortion_is_over_the_samples_it_was_scored_on():
    weights, (x, y) = make_mlp(n=400)
    be = TinyBackend(weights, (x, y), batch_size=50)
    got = be.score_detailed(_noisy(weights, (0.0, 30.0)), None, stop=StopRule(threshold=0.95))
    assert got[1].rejected and got[1].samples < 400
    assert got[1].distortion == pytest.approx(_expected(weights, x, _noisy(weights, (0.0, 30.0))[1],
                                                        idx=np.arange(got[1].samples), batch=50),
                                              rel=1e-9)


def test_without_reference_outputs_per_sample_no_distortion_is_claimed():
    weights, (x, y) = make_mlp(n=200)

    class NoIndices(TinyBackend):  # data without sample indices: a label metric would pay a second forward
        def _iter_batches(self, subset):
            for batch in super()._iter_batches(subset):
                yield batch[0], batch[1]

    assert all(s.distortion is None for s in NoIndices(weights, (x, y)).score_detailed(_noisy(weights), None))
    off = TinyBackend(weights, (x, y))
    off.track_distortion = False
    assert all(s.distortion is None for s in off.score_detailed(_noisy(weights), None))


def test_explore_records_journals_and_replays_distortions(tmp_path):
    weights, data = make_mlp(n=400)

    def run():
        return wsx.explore(weights, data, backend=TinyBackend(weights, data, batch_size=40), progress=False,
                           subset=None, out=tmp_path)

    first = run()
    assert all(c.distortion is not None and c.distortion >= 0 for c in first.history)
    assert first.to_frame()["distortion"].notna().all()
    records = read_journal(tmp_path / "journal.jsonl")[1]
    assert [r["distortion"] for r in records] == [c.distortion for c in first.history]
    again = run()
    assert again.extras["journal"]["scored"] == 0
    assert [c.to_dict() for c in again.history] == [c.to_dict() for c in first.history]
    assert [c.distortion for c in wsx.Result.load(tmp_path).history] == [c.distortion for c in first.history]


# -- the knapsack on distortion -----------------------------------------------------------------------------
def test_distortion_scale_puts_the_threshold_between_meeting_and_missing():
    from wsx_plugins.strategies.divide_and_conquer import AdditiveSurrogate, distortion_scale

    problem = synthetic_problem(steps=64)
    phi = {n: [2, 4, 8, 16, 32] for n in problem.layer_names}
    scored = problem.evaluate([{n: k for n in phi} for k in (2, 4, 8, 16, 32)], origin="combinations")
    tables = {n: np.asarray(problem.proxies(n, phi[n]), dtype=float) for n in phi}
    sur = AdditiveSurrogate(phi, tables)
    scale, info = distortion_scale(problem, sur)
    model = {c.compression_rate: sum(tables[n][phi[n].index(c.knobs[n])] for n in phi) for c in scored}
    ok = [model[c.compression_rate] for c in scored if c.meets_target]
    miss = [model[c.compression_rate] for c in scored if not c.meets_target]
    assert ok and miss and info["misplaced"] == 0
    assert max(ok) < info["threshold"] < min(miss) and scale == pytest.approx(problem.max_loss / info["threshold"])


def test_knapsack_models_distortion_where_measured_and_loss_otherwise():
    dc = wsx.plugins.strategies()["divide-and-conquer"]
    stepped = synthetic_problem(steps=64)  # a top-1 on 64 samples: one flip is more than the allowed loss
    dc().run(stepped)
    report = stepped.extras["knapsack"]
    assert report["signal"] == "distortion" and report["scale"]["threshold"] > 0
    assert any(c.meets_target and len(c.knobs) == 4 for c in stepped.history)
    plain = synthetic_problem()  # plain values: no distortion measured
    dc().run(plain)
    assert plain.extras["knapsack"]["signal"] == "loss"
    lossy = synthetic_problem(steps=64)
    dc(signal="loss").run(lossy)
    assert lossy.extras["knapsack"]["signal"] == "loss" and "scale" not in lossy.extras["knapsack"]
    forced = synthetic_problem()
    dc(signal="distortion").run(forced)
    assert forced.extras["knapsack"]["signal"] == "loss" and any("signal='distortion'" in n for n in forced.notes)
    with pytest.raises(InvalidSettingError, match="signal="):
        dc(signal="outputs").run(synthetic_problem())


def test_descent_takes_the_longest_run_of_moves_that_met_the_target_alone():
    """Single-layer moves that each meet the target are tried together, largest CR first: all of them
    (one scoring) and, where that misses, the longest prefix that still meets it, by bisection."""
    problem = synthetic_problem()
    dc = wsx.plugins.strategies()["divide-and-conquer"]()
    here = {n: 32 for n in problem.layer_names}
    moves = problem.evaluate([{**here, n: 6} for n in problem.layer_names], origin="moves")
    good = [c for c in moves if c.meets_target]
    assert len(good) == 4 and not problem.evaluate([{n: 6 for n in here}], origin="probe")[0].meets_target
    start = problem.scorings
    dc._merge(problem, here, good)
    merged = problem.history[start:]
    assert 1 <= len(merged) <= 2 and all(c.origin == "knapsack:descent" for c in merged)
    best = max((c for c in problem.history if c.meets_target), key=lambda c: c.compression_rate)
    assert best in merged and sum(k == 6 for k in best.knobs.values()) == 3  # three of four still meet
    assert best.compression_rate > max(c.compression_rate for c in good)
    start = problem.scorings
    dc._merge(problem, here, good[:1])  # one move: nothing to merge
    assert problem.scorings == start


@pytest.mark.parametrize("interaction", [0.0, 200.0])
def test_distortion_weights_are_one_where_layers_add_up_and_grow_where_they_compound(interaction):
    from wsx_plugins.strategies.divide_and_conquer import AdditiveSurrogate, distortion_weights, loss_tables

    problem = synthetic_problem(steps=64, interaction=interaction)
    phi = {n: [2, 4, 8, 16, 32] for n in problem.layer_names}
    layerwise = {n: problem.evaluate([{n: k} for k in phi[n]], origin="layer-wise") for n in phi}
    sur = AdditiveSurrogate(phi, loss_tables(problem, phi, layerwise, signal="distortion"))
    assert np.allclose(distortion_weights(problem, sur), 1.0)  # alone, each layer is its own table
    problem.evaluate([{n: k for n in phi} for k in (4, 8, 16)], origin="combinations")
    alpha = distortion_weights(problem, sur)
    if interaction:
        assert np.all(alpha >= 1.0 - 1e-9) and alpha.max() > 1.01  # the combinations distort more than the sum
    else:
        assert np.allclose(alpha, 1.0, atol=1e-6)


def test_descent_scores_moves_that_missed_from_earlier_positions_last():
    import collections

    from wsx_plugins.strategies.divide_and_conquer import rank_moves

    moves = [(0.1, -50, {"a": 4}, (("a", 4, 0.1),)),   # the model's favourite, but it missed twice
             (0.5, -80, {"b": 8}, (("b", 8, 0.5),)),
             (0.5, -90, {"c": 2}, (("c", 2, 0.5),)),   # same loss per bit as b, saves more
             (0.2, -60, {"a": 4, "b": 16}, (("a", 4, 0.1), ("b", 16, 0.1)))]
    assert [m[2] for m in rank_moves(moves, collections.Counter())] == [moves[i][2] for i in (0, 3, 2, 1)]
    missed = collections.Counter({("a", 4): 2})
    assert [m[2] for m in rank_moves(moves, missed)] == [moves[i][2] for i in (2, 1, 0, 3)]


def test_distortion_does_not_depend_on_the_outputs_scale():
    """Outputs 1e-20 times smaller (a random-init network's logits can be) give the same distortion:
    the top-two gap is measured against the outputs' own scale, not an absolute constant."""
    weights, (x, y) = make_mlp(n=200)
    small = {**weights, "fc2": weights["fc2"] * np.float32(1e-20)}
    pop = _noisy(weights)
    big = TinyBackend(weights, x, metric="agreement").score_detailed(pop, None)
    tiny = TinyBackend(small, x, metric="agreement").score_detailed(
        [{"fc2": c["fc2"] * np.float32(1e-20)} if c else c for c in pop], None)
    for b, t in zip(big[1:], tiny[1:]):
        assert t.distortion == pytest.approx(b.distortion, rel=1e-4)
