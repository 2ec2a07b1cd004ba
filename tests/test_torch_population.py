"""The torch backend's folded population forward (wsx_backends._torch_population) against one-by-one
forwards, on graphs that use its fast rules and graphs that need its per-node vmap fallback."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.func import functional_call  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import wsx  # noqa: E402
from wsx_backends._torch_fx import Part, split, trace  # noqa: E402
from wsx_backends._torch_population import PopulationInterpreter  # noqa: E402

P = 5


def whole(model):
    return Part.whole(trace(model), model)


class MobileBlock(nn.Module):
    """Stem conv, an inverted residual (1x1 expand, depthwise, 1x1 project, skip), BatchNorm, ReLU6,
    adaptive pooling, nn.Flatten and a BatchNorm1d between two Linears."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.expand = nn.Conv2d(8, 16, 1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.project = nn.Conv2d(16, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 12)
        self.bn2 = nn.BatchNorm1d(12)
        self.out = nn.Linear(12, 4)

    def forward(self, x):
        x = F.relu6(self.bn0(self.stem(x)))
        y = self.project(F.relu6(self.bn1(self.dw(F.relu6(self.expand(x))))))
        x = x + y
        return self.out(torch.relu(self.bn2(self.fc(self.flat(self.pool(x))))))


class OddOps(nn.Module):
    """Ops the interpreter hands to per-node vmap: channel concat, spatial mean, a transposed conv,
    a functional conv reading its weight as an attribute, softmax; plus Conv1d, MaxPool1d and
    ``view(x.size(0), -1)``."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3, padding=1)
        self.a = nn.Conv2d(1, 3, 3, padding="same", dilation=2)
        self.b = nn.Conv2d(1, 3, 3, padding=1)
        self.up = nn.ConvTranspose2d(6, 2, 2, stride=2)
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3) * 0.3)
        self.head = nn.Linear(4 * 8 + 4, 3)

    def forward(self, x):
        s = F.max_pool1d(torch.relu(self.c1(x.flatten(2)[:, :, :16].repeat(1, 2, 1))), 2)
        z = torch.cat([self.a(x), self.b(x)], dim=1)
        z = F.conv2d(torch.relu(self.up(z)), self.w, padding=1)
        f = torch.cat([s.view(s.size(0), -1), z.mean((2, 3))], 1)
        return F.softmax(self.head(f), dim=-1)


class GroupedFirst(nn.Module):
    """A grouped, strided first conv on the shared input, then Linear layers on a sequence axis."""

    def __init__(self):
        super().__init__()
        self.g = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.seq = nn.Linear(6, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        t = self.g(x).flatten(2).transpose(1, 2)  # N, T, C
        return self.out(torch.tanh(self.seq(t))).mean(1)


class Norms(nn.Module):
    """GroupNorm and LayerNorm (per-node vmap, on contiguous copies of channels-last activations),
    functional pooling, ``view(-1, C)``."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.ln = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.adaptive_avg_pool2d(F.avg_pool2d(self.gn(self.c2(x)), 2), 1)
        return self.fc(self.ln(torch.flatten(x, 1).view(-1, 8)))


def _randomize(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))
    return model.eval()


CASES = {
    "mobile": (MobileBlock, (6, 3, 12, 12)),
    "odd": (OddOps, (6, 1, 8, 8)),
    "grouped-first": (GroupedFirst, (6, 4, 9, 9)),
    "norms": (Norms, (6, 3, 8, 8)),
}


def _stacked(model, names, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {n: torch.stack([params[n].detach() * (1 + 0.3 * torch.randn(params[n].shape, generator=gen))
                            for _ in range(P)]) for n in names}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("which", ["all", "last", "first"])
def test_folded_forward_equals_one_by_one(case, which):
    torch.manual_seed(0)
    cls, shape = CASES[case]
    model = _randomize(cls())
    weights = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2 or n == "w"]
    names = {"all": weights, "last": weights[-1:], "first": weights[:1]}[which]
    stacked = _stacked(model, names)
    x = torch.randn(*shape)
    with torch.inference_mode():
        got = PopulationInterpreter(whole(model)).run(stacked, (x,), P)
        for i in range(P):
            ref = functional_call(model, {n: t[i] for n, t in stacked.items()}, (x,))
            torch.testing.assert_close(got[i], ref, rtol=1e-4, atol=1e-5)


def test_fast_rules_cover_a_mobilenet_block_and_odd_ops_fall_back():
    torch.manual_seed(0)
    model = _randomize(MobileBlock())
    interp = PopulationInterpreter(whole(model))
    names = [n for n, p in model.named_parameters() if p.dim() >= 2]
    with torch.inference_mode():
        interp.run(_stacked(model, names), (torch.randn(4, 3, 12, 12),), P)
    assert interp.fallbacks == {}  # conv, BN, ReLU6, residual add, pooling, flatten, BN1d, Linear: all folded

    odd_model = OddOps().eval()
    odd = PopulationInterpreter(whole(odd_model))
    with torch.inference_mode():
        odd.run(_stacked(odd_model, ["a.weight", "up.weight", "w"]), (torch.randn(4, 1, 8, 8),), P)
    assert {"cat", "up", "conv2d", "mean", "softmax"} <= set(odd.fallbacks)


def _perturbed_population(be, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append({i.name: (be.get_weights(i.name) * (1 + 0.3 * rng.standard_normal(i.shape))).astype(np.float32)
                    for i in be.layers()})
    return out


def test_backend_scores_populations_folded_and_matches_one_by_one():
    torch.manual_seed(0)
    model = _randomize(MobileBlock())
    x = torch.randn(30, 3, 12, 12)
    data = (x.numpy(), model(x).argmax(1).numpy())
    be = wsx.plugins.backends()["torch"](model, data, batch_size=16, vmap=True)
    pop = _perturbed_population(be, 6)
    got = be.score(pop)
    assert be.fold_error_ is None and be.stats_["folded_calls"] == 2  # two batches
    plain = wsx.plugins.backends()["torch"](model, data, batch_size=16, vmap=False, prefix_cache=False)
    np.testing.assert_allclose(got, plain.score(pop), atol=1e-9)
    # the layer-wise step: the prefix cache's suffix graphs are folded too
    layer = be.layers()[2].name
    sweep = [{layer: c[layer]} for c in pop]
    np.testing.assert_allclose(be.score(sweep), plain.score(sweep), atol=1e-9)
    assert be.stats_["prefix_misses"] > 0 and be.stats_["folded_calls"] == 4 and be.fold_error_ is None


def test_folded_forward_that_disagrees_is_dropped_for_vmap(monkeypatch):
    from wsx_backends import _torch_population

    torch.manual_seed(0)
    model = _randomize(MobileBlock())
    x = torch.randn(20, 3, 12, 12)
    data = (x.numpy(), model(x).argmax(1).numpy())
    real_run = _torch_population.PopulationInterpreter.run
    monkeypatch.setattr(_torch_population.PopulationInterpreter, "run",
                        lambda self, *a: real_run(self, *a) + 1.0)  # a wrong answer
    be = wsx.plugins.backends()["torch"](model, data, vmap=True, prefix_cache=False)
    pop = _perturbed_population(be, 4)
    got = be.score(pop)
    assert "disagrees" in be.fold_error_ and be.stats_["folded_calls"] == 0 and be.stats_["vmap_calls"] == 1
    np.testing.assert_allclose(got, [be.score([c])[0] for c in pop], atol=1e-9)


def test_fold_population_off_uses_vmap():
    torch.manual_seed(0)
    model = _randomize(MobileBlock())
    x = torch.randn(10, 3, 12, 12)
    data = (x.numpy(), model(x).argmax(1).numpy())
    be = wsx.plugins.backends()["torch"](model, data, vmap=True, fold_population=False)
    be.score(_perturbed_population(be, 3))
    assert be.stats_["vmap_calls"] == 1 and be.stats_["folded_calls"] == 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_cut_parts_reproduce_the_model_and_substitute_by_name(case):
    """Prefix + suffix of every cut equal the whole forward, with and without substituted weights."""
    torch.manual_seed(0)
    cls, shape = CASES[case]
    model = _randomize(cls())
    gm = trace(model)
    x = torch.randn(*shape)
    params = dict(model.named_parameters())
    with torch.inference_mode():
        ref = model(x)
        torch.testing.assert_close(Part.whole(gm, model)(x), ref)
        cuts = 0
        for name, p in params.items():
            if p.dim() < 2:
                continue
            parts = split(gm, model, {id(p)})
            if parts is None:
                continue
            prefix, suffix, n_live = parts
            live = prefix(x)
            assert len(live) == n_live
            torch.testing.assert_close(suffix(*live), ref)
            new = {name: p * 0.5}
            torch.testing.assert_close(functional_call(suffix, new, live), functional_call(model, new, (x,)))
            cuts += 1
        assert cuts >= 2


def test_subnormal_weights_are_scored_as_zero_on_a_private_copy():
    torch.manual_seed(0)
    model = _randomize(MobileBlock())
    with torch.no_grad():  # a few subnormal weights, as weight decay leaves them
        model.fc.weight[0, :3] = 1e-40
        model.project.weight.view(-1)[:5] = -3e-39
    x = torch.randn(12, 3, 12, 12)
    data = (x.numpy(), model(x).argmax(1).numpy())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flushed = wsx.plugins.backends()["torch"](model, data, batch_size=8)
    kept = wsx.plugins.backends()["torch"](model, data, batch_size=8, flush_subnormals=False)
    assert flushed.subnormals_flushed_ == 8 and flushed.net_ is not model
    assert kept.subnormals_flushed_ == 0 and kept.net_ is model
    assert _subnormal_params(flushed.net_) == 0 and _subnormal_params(model) == 8
    # a candidate carrying subnormals: flushed for scoring, the caller's array untouched
    cand = {"fc.weight": flushed.get_weights("fc.weight")}
    cand["fc.weight"][1, :2] = 2e-39
    arr = cand["fc.weight"].copy()
    pop = [cand] + _perturbed_population(flushed, 3)
    np.testing.assert_allclose(flushed.score(pop), kept.score(pop), atol=1e-6)
    np.testing.assert_array_equal(cand["fc.weight"], arr)
    native = flushed._to_native("fc.weight", arr)
    assert float(native[1, 0]) == 0.0 and float(kept._to_native("fc.weight", arr)[1, 0]) == pytest.approx(2e-39, rel=1e-3)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # set_weights reaches the private copy (flushed again)
    w = flushed.get_weights("out.weight") * 0.5
    w[0, 0] = 1e-40
    flushed.set_weights("out.weight", w)
    net_w = flushed.net_.out.weight.detach()
    assert float(net_w[0, 0]) == 0.0 and float(net_w[0, 1]) == pytest.approx(w[0, 1])
    assert float(model.out.weight.detach()[0, 0]) == pytest.approx(1e-40, rel=1e-3)


def _subnormal_params(module) -> int:
    tiny = torch.finfo(torch.float32).tiny
    return sum(int(((p.abs() < tiny) & (p != 0)).sum()) for p in module.parameters())
