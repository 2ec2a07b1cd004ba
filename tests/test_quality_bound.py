"""The CR bound of benchmarks/quality/bound.py: which layers a CR target forces to one index bit."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from wsx import weight_sharing_bits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root holds benchmarks/
from benchmarks.quality.bound import forced_one_bit, two_values  # noqa: E402

LENET = {"conv1": 150, "conv2": 2400, "conv3": 48000, "fc1": 10080, "fc2": 840}


def test_cr_17_forces_conv3_or_fc1_to_one_bit():
    allowed, sets = forced_one_bit(LENET, 17)
    assert allowed == pytest.approx(sum(LENET.values()) * 32 / 17)
    assert sets == [("conv3", "fc1")]
    # both at two index bits and every other layer at one value: over the budget
    floor = {n: weight_sharing_bits(w, 1) for n, w in LENET.items()}
    both = sum(floor.values()) + sum(weight_sharing_bits(LENET[n], 3) - floor[n] for n in ("conv3", "fc1"))
    assert both > allowed
    # either one alone at two index bits still fits
    for n in ("conv3", "fc1"):
        assert sum(floor.values()) + weight_sharing_bits(LENET[n], 3) - floor[n] <= allowed


def test_a_layer_alone_over_the_budget_is_a_singleton():
    _, sets = forced_one_bit(LENET, 25)
    assert ("conv3",) in sets and all(len(s) == 1 for s in sets)


def test_a_reachable_cr_forces_nothing():
    assert forced_one_bit(LENET, 14)[1] == []


def test_two_values_split_at_the_quantile_and_scale_each_sides_mean():
    torch = pytest.importorskip("torch")
    w = torch.tensor([-3.0, -1.0, 1.0, 2.0, 6.0])
    out = two_values(w, 0.5, 2.0, 1.0).numpy()  # split at the median (1.0): {-3, -1, 1} and {2, 6}
    assert np.allclose(out, [-2.0, -2.0, -2.0, 4.0, 4.0])
    assert len(np.unique(out)) == 2
