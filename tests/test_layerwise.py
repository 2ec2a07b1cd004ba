"""The layer-wise search (bisection over index bit-widths), the bit-width k grid and "leave uncompressed"."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from wsx.problem import UNCOMPRESSED, knob_key
from wsx.testing.strategies import BASELINE, synthetic_problem

from wsx_plugins.approximations.weight_sharing import bit_width_grid, index_bits, log_k_range
from wsx_plugins.strategies._layerwise import LayerSearch, groups_of, search_layers, search_scorings

K = (2, 3, 4, 6, 8, 12, 16, 32)  # bit-width groups: {2} {3, 4} {6, 8} {12, 16} {32}


def scripted(meets: dict, **kw):
    """A synthetic problem whose candidates meet the target exactly where ``meets(layer, k)`` says
    (for every layer a candidate names); the calls made are counted in ``problem.calls``."""
    problem = synthetic_problem(k_values=K, **kw)
    problem.calls = []

    def score(population):
        problem.calls.extend(population)
        return np.asarray([BASELINE if all(meets[n](k) for n, k in c.items()) else 0.5 for c in population])

    problem._score_fn = score
    return problem


def test_groups_are_the_index_bit_widths():
    problem = synthetic_problem(k_values=K)
    assert groups_of(problem, "l1.weight") == [[2], [3, 4], [6, 8], [12, 16], [32]]
    assert search_scorings(problem, "l1.weight") <= len(K)


def test_monotone_layer_takes_few_scorings_and_keeps_one_value_per_larger_bit_width():
    problem = scripted({n: (lambda k: k >= 12) for n in ("l1.weight", "l2.weight", "l3.weight", "l4.weight")})
    search = LayerSearch(problem, "l1.weight")
    phi, relaxed = search.run()
    assert not relaxed
    assert phi == [12, 32]  # the smallest k meeting it, the 5-bit group
    assert len(problem.calls) < len(K) and {3, 6} & set(search.scored) == set()  # never scored
    assert 32 not in search.scored  # the largest value: taken to meet, the bisection ended below it


def test_a_non_monotone_layer_is_scanned_below_the_bit_width_found():
    # 4 misses but 2 and 8 meet: bisection lands on the 3-bit group, the guard finds 2 meets too
    problem = scripted({"l1.weight": lambda k: k != 4 and k != 3})
    phi, relaxed = LayerSearch(problem, "l1.weight").run()
    assert not relaxed and phi[0] == 2 and UNCOMPRESSED not in phi


def test_a_layer_failing_alone_keeps_its_largest_value_and_uncompressed():
    problem = scripted({"l1.weight": lambda k: False})
    phi, relaxed = LayerSearch(problem, "l1.weight").run()
    # the bisection over the group tops 4, 8, 16 ends on the largest, which is then scored
    assert relaxed and phi == [32, UNCOMPRESSED] and [c["l1.weight"] for c in problem.calls] == [4, 8, 16, 32]


def test_divide_and_conquer_backs_off_a_layer_that_fails_alone():
    """Every k of l1 misses the target: the combination step leaves it uncompressed and still
    compresses the others together, without stopping early."""
    ok = lambda k: k >= 6  # noqa: E731
    problem = scripted({"l1.weight": lambda k: False, "l2.weight": ok, "l3.weight": ok, "l4.weight": ok})
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=8, generations=6, seed=0)
    dc.run(problem)
    assert not problem.stop_reason and dc.relaxed_ == ["l1.weight"]
    assert [n for n, phi in dc.phi_.items() if UNCOMPRESSED in phi] == ["l1.weight"]
    meeting = [c for c in problem.history if c.meets_target]
    assert any(c.knobs == {} for c in meeting)  # the front reaches down to CR 1
    assert max(len(c.knobs) for c in meeting) == 3 and not any("l1.weight" in c.knobs for c in meeting)


def test_scan_keeps_the_thesis_phi():
    problem = scripted({n: (lambda k: k >= 6) for n in ("l1.weight", "l2.weight", "l3.weight", "l4.weight")})
    dc = wsx.plugins.strategies()["divide-and-conquer"](pop_size=4, generations=1, layerwise="scan")
    dc.run(problem)
    assert dc.phi_["l1.weight"] == [6, 12, 32]  # best AL per group (ties: the smaller)
    assert problem.scorings >= 4 * len(K)


def test_uncompressed_is_a_value_every_layer_takes():
    problem = synthetic_problem(k_values=K)
    assert knob_key({"l1.weight": UNCOMPRESSED, "l2.weight": 4}) == knob_key({"l2.weight": 4})
    assert problem.size_bits({"l1.weight": UNCOMPRESSED}) == problem.total_baseline_bits
    assert problem.layer_size_bits("l2.weight", UNCOMPRESSED) == 32 * 120
    c, = problem.evaluate([{"l1.weight": UNCOMPRESSED, "l2.weight": 4}])
    assert c.knobs == {"l2.weight": 4} and problem.proxies("l1.weight", [UNCOMPRESSED]) == [0.0]


@pytest.mark.parametrize("weights", [500, 40_000, 2_000_000])
def test_bit_width_grid_has_every_bit_width_top_and_more_only_where_the_codebook_counts(weights):
    grid = bit_width_grid(weights, bits=32, k_min=2, k_max=1024, cap=weights)
    tops = [min(1 << b, weights) for b in range(1, 11)]
    assert set(tops) <= set(grid) and grid == sorted(set(grid)) and max(grid) <= min(weights, 1024)
    extra = len(grid) - len(tops)
    if weights >= 2_000_000:  # the codebook is under 1 % of the layer at every k: tops only
        assert extra == 0
    if weights == 500:  # a small layer: smaller k of a bit-width save a share of it
        assert extra > 5
    assert len(grid) < len(set(log_k_range(100, 2, 1024, cap=weights)))
    assert {index_bits(k) for k in grid} == {index_bits(k) for k in tops}


def test_k_grid_setting_is_checked_and_log_gives_the_thesis_values():
    from wsx.errors import InvalidSettingError
    from wsx.layers import LayerInfo

    layer = LayerInfo(name="w", shape=(300, 300), size=90_000, kind="Linear")
    log = wsx.plugins.approximations()["weight-sharing"](k_grid="log")
    assert log.knob_values(layer) == log_k_range(100, 2, 1024, cap=90_000)
    with pytest.raises(InvalidSettingError, match="k_grid"):
        wsx.plugins.approximations()["weight-sharing"](k_grid="every").knob_values(layer)


def test_layers_are_searched_together_one_population_per_round():
    """Every layer's search advances in the same population, and each layer ends where its search
    alone ends (same phi, same knobs scored)."""
    meets = {"l1.weight": lambda k: k >= 12, "l2.weight": lambda k: k >= 3, "l3.weight": lambda k: False,
             "l4.weight": lambda k: k != 4 and k != 3}
    together = scripted(meets)
    sizes = []
    score = together._score_fn
    together._score_fn = lambda pop: (sizes.append(len(pop)), score(pop))[1]
    searches = [LayerSearch(together, n) for n in meets]
    found = search_layers(together, searches)
    assert sizes[0] == 4 and len(sizes) < together.scorings  # rounds, not one call per scoring
    by_origin = {c.origin for c in together.history}
    assert by_origin == {f"layer-wise:{n}" for n in meets}
    for search in searches:
        alone = scripted(meets)
        solo = LayerSearch(alone, search.name)
        assert found[search.name] == solo.run()
        assert set(search.scored) == set(solo.scored)
        assert all(c.knobs == {search.name: k} for k, c in search.scored.items())
