"""The framework-free data layer (wsx.data), output selection (wsx.outputs), the metric contract and
targets (wsx.metrics): what every backend and strategy builds on."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

import wsx
from wsx.data import Data, as_data
from wsx.errors import InvalidDataError, InvalidSettingError, MetricError
from wsx.metrics import Goal, MeanAccumulator, resolve_metric, target_spec
from wsx.outputs import describe, select


def tok(n=6, seq=4):
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(0, 9, (n, seq)), "attention_mask": np.ones((n, seq), np.int64)}


# -- data forms ------------------------------------------------------------------------------------------
def test_the_accepted_forms_normalise_alike():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    for data in ((x, y), Data(x, y), [(x[:4], y[:4]), (x[4:], y[4:])], [[x[:3], y[:3]], [x[3:], y[3:]]]):
        d = as_data(data)
        assert np.array_equal(d.inputs, x) and np.array_equal(d.labels, y) and len(d) == 6
    alone = as_data(x)
    assert alone.labels is None and np.array_equal(alone.inputs, x)
    inputs = tok()
    d = as_data(inputs)  # a dict is inputs alone (a tokenizer's output)
    assert d.labels is None and set(d.inputs) == {"input_ids", "attention_mask"}
    both = as_data([{k: v[:2] for k, v in inputs.items()}, {k: v[2:] for k, v in inputs.items()}])
    assert np.array_equal(both.inputs["input_ids"], inputs["input_ids"])


def test_tuple_inputs_are_given_with_labels_or_explicitly():
    a, b = np.zeros((5, 2)), np.ones((5, 3))
    two = as_data(((a, b), np.arange(5)))
    assert isinstance(two.inputs, tuple) and len(two.inputs) == 2 and two.labels.shape == (5,)
    no_labels = as_data(Data(inputs=(a, b)))
    assert isinstance(no_labels.inputs, tuple) and no_labels.labels is None
    # a tuple of two arrays always reads as (inputs, labels)
    assert as_data((a, np.ones((5, 3)))).labels.shape == (5, 3)


def test_labels_are_kept_as_given():
    """Float, 2-D and dict labels reach the metric unchanged (no int64 cast)."""
    x = np.zeros((4, 2), np.float32)
    y = np.array([0.30, 0.86, 0.5, 0.1])
    assert as_data((x, y)).labels.dtype == np.float64
    assert np.array_equal(as_data((x, y)).labels, y)
    emb = np.ones((4, 384), np.float32)
    assert as_data((x, emb)).labels.shape == (4, 384)
    d = as_data((x, {"box": np.zeros((4, 4)), "cls": np.arange(4)}))
    assert set(d.labels) == {"box", "cls"}


def test_single_examples_are_stacked():
    items = [(np.full(3, i, np.float32), np.int64(i)) for i in range(5)]
    d = as_data(items)
    assert d.inputs.shape == (5, 3) and np.array_equal(d.labels, np.arange(5))


def test_subsets_and_batches_index_every_entry():
    inputs = tok(7)
    d = as_data((inputs, {"a": np.arange(7), "b": np.arange(7) * 10}))
    sub = d.take(np.array([1, 4, 6]))
    assert np.array_equal(sub.inputs["input_ids"], inputs["input_ids"][[1, 4, 6]])
    assert np.array_equal(sub.labels["b"], [10, 40, 60])
    got = list(d.batches(np.array([0, 2, 3, 5, 6]), 2))
    assert [list(i) for i, _ in got] == [[0, 2], [3, 5], [6]]
    assert np.array_equal(got[1][1].inputs["attention_mask"], inputs["attention_mask"][[3, 5]])
    assert np.array_equal(got[2][1].labels["a"], [6])


def test_torch_tensors_are_read_as_numpy():
    torch = pytest.importorskip("torch")
    x = torch.randn(4, 3, requires_grad=True)
    d = as_data({"x": x, "m": torch.ones(4, dtype=torch.int64)})
    assert isinstance(d.inputs["x"], np.ndarray) and np.allclose(d.inputs["x"], x.detach().numpy())


@pytest.mark.parametrize("data, needles", [
    ({"input_ids": np.zeros((6, 4)), "attention_mask": np.zeros((5, 4))},
     ["inputs['attention_mask'] has 5 samples", "inputs['input_ids'] has 6"]),
    ((np.zeros((6, 2)), np.zeros(5)), ["inputs have 6 samples but labels have 5"]),
    ((np.zeros((6, 2)), {"a": np.zeros(6), "b": np.zeros(4)}), ["labels['b'] has 4 samples"]),
    ((np.zeros((0, 2)), np.zeros(0)), ["empty"]),
    ([], ["yielded no batches"]),
    ([(np.zeros((2, 2)), np.zeros(2)), np.zeros((2, 2))], ["batch 1", "other entries"]),
    ((np.float32(3.0), np.zeros(1)), ["scalar"]),
    ("data.csv", ["data must be"]),
])
def test_bad_data_names_what_is_wrong(data, needles):
    with pytest.raises(InvalidDataError) as info:
        as_data(data)
    for needle in needles:
        assert needle in str(info.value)


# -- outputs -----------------------------------------------------------------------------------------------
class FakeModelOutput(OrderedDict):
    """Like transformers' ModelOutput: an ordered dict whose entries are also attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


def test_output_selection_defaults_and_choices():
    t = np.ones((2, 3))
    assert select(t) is t
    hidden, pooled, logits = np.zeros((2, 4, 3)), np.ones((2, 3)), np.full((2, 5), 2.0)
    assert select(FakeModelOutput(last_hidden_state=hidden, pooler_output=pooled)) is hidden  # first entry
    assert select({"hidden": hidden, "logits": logits}) is logits  # "logits" when present
    assert select((pooled, hidden)) is pooled
    out = FakeModelOutput(last_hidden_state=hidden, pooler_output=pooled)
    assert select(out, "pooler_output") is pooled and select(out, 1) is pooled and select((pooled, hidden), -1) is hidden
    assert select(out, lambda o: o.last_hidden_state[:, 0]).shape == (2, 3)
    assert "'last_hidden_state'" in describe(out) and "by default" in describe(out)


@pytest.mark.parametrize("selector, needles", [
    ("logits", ["output='logits' is not among the model's outputs", "'last_hidden_state'", "'pooler_output'"]),
    (5, ["output=5 is outside the model's 2 outputs"]),
    (True, ["output=True"]),
])
def test_output_selection_errors_name_the_choices(selector, needles):
    out = FakeModelOutput(last_hidden_state=np.zeros((2, 3)), pooler_output=np.zeros((2, 3)))
    with pytest.raises(InvalidSettingError) as info:
        select(out, selector)
    for needle in needles:
        assert needle in str(info.value)


# -- metrics -----------------------------------------------------------------------------------------------
def test_builtin_metrics_match_their_formulas():
    rng = np.random.default_rng(0)
    out, ref = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    labels = ref.argmax(1)
    m = resolve_metric("top1")
    assert m(out, labels) == pytest.approx(np.mean(out.argmax(1) == labels))
    assert m(out, labels.astype(float)) == m(out, labels)  # integral floats are class indices
    assert m(out, labels[:, None]) == m(out, labels)
    assert resolve_metric("agreement")(out, ref) == pytest.approx(np.mean(out.argmax(1) == ref.argmax(1)))
    cos = np.sum(out * ref, 1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert resolve_metric("cosine")(out, ref) == pytest.approx(cos.mean())
    assert resolve_metric("mse")(out, ref) == pytest.approx(np.mean((out - ref) ** 2))
    peak = ref.max() - ref.min()
    assert resolve_metric("psnr")(out, ref) == pytest.approx(10 * np.log10(peak ** 2 / np.mean((out - ref) ** 2)))
    assert resolve_metric("psnr")(ref, ref) == pytest.approx(100.0)  # identical outputs: the cap
    # agreement per token: arg-max over the last axis, averaged per sample
    seq_out, seq_ref = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    assert resolve_metric("agreement")(seq_out, seq_ref) == pytest.approx(
        np.mean(seq_out.argmax(-1) == seq_ref.argmax(-1)))


def test_metric_declarations():
    assert (resolve_metric("top1").greater_is_better, resolve_metric("top1").unit) == (True, "pp")
    mse = resolve_metric("mse")
    assert not mse.greater_is_better and mse.per_sample and mse.bounds == (0.0, math.inf)
    assert resolve_metric("cosine").bounds == (-1.0, 1.0) and resolve_metric("agreement").needs_reference
    assert not resolve_metric("psnr").per_sample
    plain = resolve_metric(lambda o, y: 0.5)  # a plain callable: higher is better, computed once
    assert plain.greater_is_better and not plain.per_sample
    declared = wsx.metric(lambda o, y: 0.5, greater_is_better=False, per_sample=True, bounds=(0, 1), name="err")
    assert (declared.name, declared.greater_is_better, declared.per_sample, declared.bounds) == \
        ("err", False, True, (0.0, 1.0))
    assert wsx.metric(lambda o, r: 1.0, needs_reference=True).needs_reference
    assert wsx.metric("mse", against="reference").needs_reference
    assert resolve_metric("cosine").bind(has_labels=True).against == "labels"
    assert resolve_metric("cosine").bind(has_labels=False).needs_reference


def test_per_sample_accumulator_exposes_running_sums_and_counts():
    m = resolve_metric("mse")
    acc = m.accumulator(2)
    assert isinstance(acc, MeanAccumulator)
    ref = np.zeros((4, 3))
    acc.add(0, np.ones((4, 3)), ref)
    acc.add(1, np.full((4, 3), 2.0), ref)
    acc.add(0, np.zeros((2, 3)), ref[:2])
    assert list(acc.counts) == [6, 4] and list(acc.sums) == [4.0, 16.0]
    assert np.allclose(acc.running(), [4 / 6, 4.0]) and np.allclose(acc.result(), acc.running())


def test_a_per_sample_callable_may_return_values_or_the_batch_mean():
    out, y = np.arange(6.0).reshape(6, 1), np.zeros(6)
    values = wsx.metric(lambda o, t: (o[:, 0] - t) ** 2, per_sample=True, greater_is_better=False)
    means = wsx.metric(lambda o, t: float(((o[:, 0] - t) ** 2).mean()), per_sample=True, greater_is_better=False)
    for m in (values, means):
        acc = m.accumulator(1)
        acc.add(0, out[:4], y[:4])
        acc.add(0, out[4:], y[4:])
        assert acc.result()[0] == pytest.approx(np.mean(np.arange(6.0) ** 2))


def test_a_metric_receives_float_labels_unchanged():
    seen = []

    def metric(outputs, labels):
        seen.append(labels)
        return 1.0

    resolve_metric(metric)(np.zeros((3, 2)), np.array([0.30, 0.86, 0.5]))
    assert np.allclose(seen[0], [0.30, 0.86, 0.5])


@pytest.mark.parametrize("labels, needle", [
    (np.array([0, 3.7, 1.0]), "3.7"), (np.zeros((3, 384)), "shape (3, 384)"), (np.array([0, 1, 7]), "[0, 7]"),
    ({"a": np.zeros(3)}, "type dict"), (None, "needs labels")])
def test_top1_label_checks(labels, needle):
    with pytest.raises(InvalidDataError) as info:
        resolve_metric("top1")(np.zeros((3, 5)), labels)
    assert needle in str(info.value)


@pytest.mark.parametrize("fn, needle", [
    (lambda o, y: float("nan"), "non-finite"), (lambda o, y: np.ones(3), "array of shape (3,)"),
    (lambda o, y: "good", "not a number")])
def test_bad_metric_values_are_errors_naming_the_metric(fn, needle):
    fn.__name__ = "mine"
    with pytest.raises(MetricError) as info:
        resolve_metric(fn)(np.zeros((4, 2)), np.zeros(4))
    assert "'mine'" in str(info.value) and needle in str(info.value)


# -- targets -----------------------------------------------------------------------------------------------
def test_targets_for_each_direction():
    top1, mse = resolve_metric("top1"), resolve_metric("mse")
    heavy = target_spec(top1).goal(top1, 0.9)  # the default for higher-is-better: mlperf-heavy
    assert heavy.spec.label == "mlperf-heavy" and heavy.max_loss == pytest.approx(0.9)
    assert heavy.meets(0.891) and not heavy.meets(0.8909) and heavy.threshold == pytest.approx(0.891)
    drop = target_spec(top1, max_drop=0.5).goal(top1, 0.9)
    assert drop.meets(0.895) and not drop.meets(0.8949) and drop.loss(0.89) == pytest.approx(1.0)
    inc = target_spec(mse, max_increase=0.01).goal(mse, 0.2)
    assert inc.loss(0.205) == pytest.approx(0.005) and inc.meets(0.21) and not inc.meets(0.2101)
    assert inc.threshold == pytest.approx(0.21) and inc.loss(0.19) < 0  # better than the baseline
    assert isinstance(inc.rebased(0.3), Goal) and inc.rebased(0.3).threshold == pytest.approx(0.31)


@pytest.mark.parametrize("metric, kwargs, needles", [
    ("mse", {}, ["lower-is-better", "max_increase"]),
    ("mse", {"target": 0.99}, ["lower-is-better", "max_increase"]),
    ("mse", {"max_drop": 0.1}, ["max_drop is for higher-is-better", "max_increase"]),
    ("top1", {"max_increase": 0.1}, ["max_increase is for lower-is-better", "max_drop"]),
    ("top1", {"target": 0.99, "max_drop": 0.5}, ["target and max_drop", "alternatives"]),
    ("top1", {"target": True}, ["target=True"]),
    ("top1", {"max_drop": -1}, ["max_drop=-1", "non-negative"]),
])
def test_bad_targets_say_what_to_use(metric, kwargs, needles):
    with pytest.raises(InvalidSettingError) as info:
        target_spec(resolve_metric(metric), **kwargs)
    for needle in needles:
        assert needle in str(info.value)


def test_a_fraction_of_a_negative_baseline_is_refused():
    m = wsx.metric(lambda o, y: -1.0, name="loglik")
    with pytest.raises(InvalidSettingError, match="max_drop"):
        target_spec(m, target=0.99).goal(m, -3.0)
