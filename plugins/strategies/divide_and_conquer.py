"""Divide and conquer (thesis ch. 5): layer-wise reduction of each layer's knob range to phi_i, then
NSGA-II over the combinations of phi_i — every candidate scored, or on a regression surrogate."""
from __future__ import annotations

import collections

import numpy as np

from wsx.hookspecs import hookimpl
from wsx.problem import UNCOMPRESSED, knob_key
from wsx.result import pareto_mask
from wsx.strategy import Strategy

from . import doe as doe_mod
from ._common import (budget_left, check_time, compression_rates, index_bits_of, is_scored, knobs_at,
                      layerwise_scan, layerwise_scorings, margin_of, pareto_local_search, pick_for_scoring,
                      seed_of, size_tables)
from ._layerwise import LayerSearch, groups_of, search_layers, search_scorings
from .knapsack import pareto_dp, refit
from .nsga import check_settings, run_nsga2
from .surrogate import FEATURES, AdditiveSurrogate, feature_tables


# The descent orders the samples by its current candidate's margins at its start and after this many
# moves (Problem.order_samples_by; one forward each): EfficientNet-B0 in benchmarks/scale/study.
REORDER_EVERY = 4


def select_phi(problem, name: str, scored: list) -> tuple[list, bool]:
    """phi_i: per knob group (index bit-width for weight sharing) the best-AL candidate meeting the
    target. Returns (sorted knobs, relaxed) — relaxed when no candidate of the layer meets the target,
    in which case the best AL per group is kept regardless (of the candidates scored in full)."""
    legal = [c for c in scored if c.meets_target]
    relaxed = not legal
    pool = [c for c in scored if not c.rejected] if relaxed else legal
    best: dict = {}
    for c in pool:
        knob = c.knobs[name]
        group = index_bits_of(problem, name, knob)
        key = (c.accuracy_loss, problem.layer_size_bits(name, knob))  # tie: the smaller layer
        if group not in best or key < best[group][0]:
            best[group] = (key, knob)
    return sorted(knob for _, knob in best.values()), relaxed


def loss_tables(problem, choices: dict, layerwise: dict, prior: dict | None = None, *,
                signal: str = "loss") -> dict:
    """{layer: its loss alone at each of its ``choices``}: measured where the layer-wise step scored
    the value in full, elsewhere interpolated in the inertia by a non-decreasing fit (scikit-learn's
    isotonic regression through the measured points and (0, 0), the layer as it is).

    ``prior`` {layer: (loss, inertia)} adds ``loss`` x inertia / ``inertia`` to every value: measured
    losses at or below 0 (noise on a subset) would make many values equally free and the model's
    least lossy combination aggressive; the prior keeps more shared values always better.

    ``signal="distortion"`` tabulates the outputs' distance to the uncompressed model's instead
    (``Candidate.distortion``, rejected candidates' partial means included), proportional to the
    inertia beyond the largest one measured (a small weight error moves the outputs linearly)."""
    from sklearn.isotonic import IsotonicRegression

    def measure(c):
        if signal == "distortion":
            return c.distortion
        return None if c.rejected else max(c.accuracy_loss, 0.0)

    out = {}
    for name, ks in choices.items():
        inertia = np.asarray(problem.proxies(name, ks), dtype=float)
        measured = {c.knobs[name]: measure(c) for c in layerwise.get(name, [])
                    if c.knobs.get(name, UNCOMPRESSED) is not UNCOMPRESSED and measure(c) is not None}
        xs = [0.0] + list(problem.proxies(name, list(measured)))
        ys = [0.0] + list(measured.values())
        model = IsotonicRegression(increasing=True, y_min=0.0, out_of_bounds="clip").fit(xs, ys)
        table = model.predict(inertia)
        top = int(np.argmax(xs))
        if signal == "distortion" and xs[top] > 0:
            beyond = inertia > xs[top]
            table[beyond] = model.predict([xs[top]])[0] * inertia[beyond] / xs[top]
        for i, k in enumerate(ks):
            if k in measured:
                table[i] = measured[k]
            elif k is UNCOMPRESSED:
                table[i] = 0.0
        if prior and prior.get(name) and prior[name][1] > 0:
            table = table + prior[name][0] * inertia / prior[name][1]
        out[name] = table
    return out


def loss_prior(problem, phi: dict) -> dict:
    """Per layer (loss, inertia): a share 1/L of the allowed loss at the layer's most compressive phi
    value (see ``loss_tables``)."""
    share = problem.max_loss / max(len(phi), 1)
    return {n: (share, max(problem.proxies(n, ks), default=0.0)) for n, ks in phi.items()}


def has_distortions(phi: dict, layerwise: dict) -> bool:
    """Whether every layer with a value to share has an output distortion measured alone."""
    return all(any(c.distortion is not None and c.knobs.get(n, UNCOMPRESSED) is not UNCOMPRESSED
                   for c in layerwise.get(n, []))
               for n, ks in phi.items() if any(k is not UNCOMPRESSED for k in ks))


def distortion_weights(problem, sur: AdditiveSurrogate) -> np.ndarray:
    """Per-layer weights α ≥ 0 with Σ α_i D_i(k_i) ≈ the distortion measured on every scored candidate
    (layers interact: a layer's distortion alone need not be its share in a combination), fitted in
    relative error and pulled toward 1 where the candidates say little (non-negative least squares
    on rows augmented by a ridge toward 1, ``scipy.optimize.nnls``)."""
    from scipy.optimize import nnls

    X, kept = sur.rows([c for c in problem.history if c.distortion is not None and c.distortion > 0])
    ones = np.ones(len(sur.names))
    if len(kept) < 2:
        return ones
    y = np.asarray([c.distortion for c in kept])
    A = X / y[:, None]  # relative error: each row's target is 1
    pull = np.sqrt(max(float(np.mean((A ** 2).sum(axis=0))), 1e-12))  # the rows' typical weight per layer
    alpha, _ = nnls(np.vstack([A, pull * np.eye(len(ones))]), np.concatenate([np.ones(len(y)), pull * ones]))
    return alpha


def distortion_scale(problem, sur: AdditiveSurrogate, alpha: np.ndarray | None = None) -> tuple[float, dict]:
    """The factor turning the model's summed distortion (layers weighted by ``alpha``) into loss: the
    allowed loss over the threshold on it that best separates the scored candidates meeting the
    target from those that miss it (fewest misplaced; between the two sides' nearest points).
    Returns the factor and what it rests on."""
    X, kept = sur.rows(problem.history)
    d = list(X @ (np.ones(len(sur.names)) if alpha is None else alpha))
    ok = [bool(c.meets_target) for c in kept]
    order = np.argsort(d, kind="stable")
    d, ok = np.asarray(d, dtype=float)[order], np.asarray(ok, dtype=bool)[order]
    if d.size == 0 or d[-1] <= 0:
        return 1.0, {"threshold": None, "misplaced": 0}
    # threshold after position j: the first j are predicted to meet
    errors = np.concatenate([[0], np.cumsum(~ok)]) + np.concatenate([np.cumsum(ok[::-1])[::-1], [0]])
    j = int(np.flatnonzero(errors == errors.min())[-1])  # the most permissive of the best
    if j == 0:
        threshold = d[0] / 2
    elif j == d.size:
        threshold = d[-1]
    else:
        threshold = (d[j - 1] + d[j]) / 2
    threshold = max(threshold, float(d[d > 0].min()) / 2)
    return problem.max_loss / threshold, {"threshold": float(threshold), "misplaced": int(errors[j])}


def rank_moves(moves: list, missed: collections.Counter) -> list:
    """The descent's moves (modelled loss per bit saved, -bits saved, candidate, steps) in the order to
    score them: first those whose steps (layer, knob) missed the target least often from earlier
    positions (under a target that lets no sample change, a step that flipped one from a neighbour
    mostly flips it again), then by the model's loss per bit saved, then the larger saving."""
    order = sorted(range(len(moves)), key=lambda i: (sum(missed[(n, k)] for n, k, _ in moves[i][3]),
                                                    moves[i][0], moves[i][1], i))
    return [moves[i] for i in order]


def best_meeting(problem, since: int = 0, at_most: float | None = None):
    """The highest-CR candidate scored so far (from ``problem.history[since]`` on) that meets the
    target and was not rejected, of CR at most ``at_most`` where given (None: none)."""
    legal = [c for c in problem.history[since:] if c.meets_target and not c.rejected
             and (at_most is None or c.compression_rate <= at_most)]
    return max(legal, key=lambda c: c.compression_rate, default=None)


def outcome(problem, start, best, made: int) -> dict:
    """What a restart or a kick did: its start's CR, the best CR it reached and its scorings (since
    ``made``); None where there was no such candidate."""
    def cr(c):
        return None if c is None else float(c.compression_rate)
    return {"start": cr(start), "best": cr(best), "scorings": problem.scorings - made}


def moves_down(problem, name: str, knob) -> list:
    """One step down from ``knob`` in the layer's knob values: the top of the next smaller group (one
    index bit fewer) and the smallest value of its own group (the codebook's saving); a layer left as
    it is moves to its largest value."""
    groups = groups_of(problem, name)
    if knob is UNCOMPRESSED:
        return [groups[-1][-1]]
    at = next(i for i, g in enumerate(groups) if knob in g)
    out = [groups[at][0]] if groups[at][0] != knob else []
    return out + ([groups[at - 1][-1]] if at > 0 else [])


def move_up(problem, name: str, knob):
    """One step up: the top of its own group, or from a top the smallest value of the next group
    (one index bit more); None at the largest value or for a layer left as it is."""
    if knob is UNCOMPRESSED:
        return None
    groups = groups_of(problem, name)
    at = next(i for i, g in enumerate(groups) if knob in g)
    if groups[at][-1] != knob:
        return groups[at][-1]
    return groups[at + 1][0] if at + 1 < len(groups) else None


class DivideAndConquer(Strategy):
    """A layer-wise step over each layer's knob values (others untouched) that keeps per layer the
    values worth combining (phi_i), then a combination search over phi.

    ``layerwise="search"`` (default) finds phi_i in O(log) scorings per layer where the loss is
    monotone in the knob (bisection over the index bit-widths, a guard for layers that are not, then
    the smallest value of the bit-width found that still meets the target; ``_layerwise``); phi_i holds
    it and one value per larger bit-width (its top or, where the codebook is at least ``min_saving``
    of the layer's size, its smallest value). ``layerwise="scan"`` scores every knob value (the
    thesis): phi_i = best AL per index bit-width among candidates meeting the target. Either way a
    layer that cannot meet the target alone gets ``UNCOMPRESSED`` (the layer left as it is) in phi_i,
    so it never empties the combination step; NSGA-II starts from the back-off (such layers
    uncompressed, the others at their most accurate phi value), and the uncompressed model is scored
    once so that the front reaches down to CR 1.

    - ``combination="knapsack"`` (default; beyond the thesis): each layer's loss alone over phi_i
      (measured by the layer-wise step, interpolated monotonically in the inertia where it was not
      scored) makes an additive model AL ≈ c + Σ α_i g_i(k_i); the exact front of that model under
      the size (a multiple-choice knapsack, dynamic programming) is first bisected for the last
      point meeting the target (real loss grows along it even where the model is off), then scored
      for real ``picks`` at a time near the target, the model refitted on what was scored (``knapsack.refit``, within
      ``fit_cap`` times the allowed loss), until a round finds no better candidate meeting the
      target (at least ``rounds`` rounds); then a descent from the best one (one layer a step down
      its knob values, to the next bit-width's top or its group's smallest value, or a trade of one
      layer down for another up: the ``picks`` the model ranks best, then together the longest run of
      those that met the target on their own) while it improves; after ``descent_patience`` rounds
      without a better candidate single moves give way to trades, and trades that find nothing
      better to a sweep that scores every single move not scored yet (``descent_sweeps`` times in
      a descent; measured on EfficientNet-B0 in ``benchmarks/scale/study``); then it stops.
      ``restarts`` (default 0) more times, the model is refitted on everything scored, its front
      bisected again and a descent run from the last point meeting the target, on its own best: a
      descent ends in a local optimum that tiny differences choose, and another start is another
      draw (``benchmarks/scale/study`` at 784f283: restarts=1 took ViT-tiny one by one from CR 7.08 to 7.67 and
      EfficientNet-B0 from 5.29 / 5.59 to 5.72 at 1.6-1.8x the sample-forwards, and left ResNet-18,
      MobileNetV2, BERT-6 and ViT-tiny stacked where they were, at 1.4-1.7x). ``kicks`` (default 1)
      more descents before those, each from the best candidate meeting the target at or below
      ``kick_back`` times the best CR so far: a fresh descent from a point a descent passed (the
      moves that missed before forgotten, the candidates scored before skipped) takes another path,
      without a restart's climb from the model's front. Each kick makes at most ``kick_share`` times the
      scorings made before it (None: no limit), so that the default's one kick, the cheapest other
      draw, costs at most a quarter more scorings (``benchmarks/scale/study`` at 42b7447: ViT-tiny
      stacked 7.40 -> 7.87, EfficientNet-B0 5.21 -> 5.48 stacked, BERT-6 7.88 -> 8.05, LeNet-5 over
      20 seeds 13.03 -> 13.38, nothing lower, at 2-27 % more sample-forwards). ``kick_noise`` > 0 also
      scales the model's per-layer weights by seeded log-normal noise of that sigma
      (``benchmarks/scale/study`` at c4ee6c1: kicks=3 took ViT-tiny one by one from 7.23 to 8.12,
      ResNet-18 from 13.79 to 14.23 and BERT-6 from 7.40 to 7.47 at 1.4-1.8x the sample-forwards; with
      noise 0.5 ViT-tiny 7.52-8.00 over three seeds; nothing better where the first descent ended
      high, at 1.1-1.4x).
      Restarts run before the ladder and, with a budget, before the polish, which gets what they leave.
      ``signal`` picks what the model adds up: "loss" (each layer's loss alone, per-layer weights refitted
      on the scored candidates), "distortion" (each layer's output distortion alone,
      ``Candidate.distortion``, one scale to the loss refitted: a metric moving in whole samples, such as
      top-1 on 64 samples where one flip is more than the allowed loss, gives the loss model nothing to
      fit; per-layer weights are refitted on the distortions measured, ``distortion_weights``) or "auto"
      (distortion where the backend measured it for every layer; measured in ``benchmarks/scale/study``).
      Then ``ladder`` fallbacks: the model's front at CRs spaced geometrically from the best down to
      ``ladder_floor`` x its CR, so that the final re-scoring on all samples has candidates to fall back
      to where the search's subset was optimistic about the whole boundary region. With a budget, what is
      left is spent on a Pareto local search around the scored front. Measured in
      ``benchmarks/scale/study``: about a tenth of NSGA-II's scorings at an equal or higher CR.
    - ``combination="scoring"`` runs NSGA-II with every candidate scored (thesis approach III);
      ``pop_size`` and ``generations`` set it (thesis: 100 x 100; repeated candidates are free);
      it ends early after ``patience`` generations without a change of the front (``None``: never).
    - ``combination="regression"`` (approach IV) samples the phi space with the design ``doe``
      (see ``doe.SAMPLERS``; "auto" scores a pilot of each and keeps the best hold-out R²), scores
      the samples, fits AL ≈ c + Σ α_i·f_i with f = ``features`` ("inertia", "local-al", "k"),
      reports R², RMSE and MAE on a 20 % hold-out, runs NSGA-II on the surrogate
      (``surrogate_pop_size`` x ``surrogate_generations``; 200 x 100 by default, the thesis used
      500 x 200 — on an additive surrogate both converge, the smaller costs a fifth of the overhead) and scores the
      surrogate's front for real. ``samples`` fixes the sample count (default:
      ``sample_fraction`` of the budget left after the layer-wise step; 500 without a budget);
      the rest of the budget goes to ``rounds`` rounds of front scoring, each refitting the
      surrogate on everything scored so far.

    ``seed=None`` takes the exploration's seed.
    """

    name = "divide-and-conquer"

    def __init__(self, *, combination: str = "knapsack", pop_size: int = 100, generations: int = 100,
                 crossover: float = 0.9, mutation: float = 0.2, seed: int | None = None,
                 doe: str = "kmeans", features: str = "inertia", samples: int | None = None,
                 sample_fraction: float = 0.6, surrogate_pop_size: int = 200,
                 surrogate_generations: int = 100, rounds: int = 3, patience: int | None = 10,
                 layerwise: str = "search", min_saving: float = 0.01, picks: int = 12,
                 fit_cap: float = 4.0, ladder: int = 8, ladder_floor: float = 0.5, signal: str = "auto",
                 descent_patience: int = 3, descent_sweeps: int = 1, restarts: int = 0, kicks: int = 1,
                 kick_back: float = 0.95, kick_share: float | None = 0.25, kick_noise: float = 0.0):
        self.combination = combination
        self.kicks = kicks
        self.kick_share = kick_share
        self.kick_back = kick_back
        self.kick_noise = kick_noise
        self.restarts = restarts
        self.descent_sweeps = descent_sweeps
        self.signal = signal
        self.descent_patience = descent_patience
        self.ladder = ladder
        self.ladder_floor = ladder_floor
        self.picks = picks
        self.fit_cap = fit_cap
        self.layerwise = layerwise
        self.min_saving = min_saving
        self.patience = patience
        self.pop_size = pop_size
        self.generations = generations
        self.crossover = crossover
        self.mutation = mutation
        self.seed = seed
        self.doe = doe
        self.features = features
        self.samples = samples
        self.sample_fraction = sample_fraction
        self.surrogate_pop_size = surrogate_pop_size
        self.surrogate_generations = surrogate_generations
        self.rounds = rounds

    def _check(self) -> None:
        from wsx.errors import InvalidSettingError

        if self.combination not in self._combiners():
            raise InvalidSettingError(f"combination={self.combination!r} is unknown; use one of "
                                      f"{sorted(self._combiners())}")
        check_settings(self.pop_size, self.generations, self.patience)
        if self.layerwise not in ("search", "scan"):
            raise InvalidSettingError(f"layerwise={self.layerwise!r}; use 'search' (O(log) scorings per layer) or "
                                      "'scan' (every knob value)")
        if not 0.0 <= self.min_saving < 1.0:
            raise InvalidSettingError(f"min_saving={self.min_saving!r}: give a fraction of a layer's size in [0, 1)")
        if self.descent_patience < 1:
            raise InvalidSettingError(f"descent_patience={self.descent_patience!r}: give the descent's rounds "
                                      "without a better candidate before it changes moves or stops (>= 1)")
        if self.descent_sweeps < 0:
            raise InvalidSettingError(f"descent_sweeps={self.descent_sweeps!r}: give how many times a stalled "
                                      "descent scores every single move left before it stops (>= 0)")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) or self.restarts < 0:
            raise InvalidSettingError(f"restarts={self.restarts!r}: give how many more descents to run from the "
                                      "refitted model's front after the first (an int >= 0; 0: none)")
        if isinstance(self.kicks, bool) or not isinstance(self.kicks, int) or self.kicks < 0:
            raise InvalidSettingError(f"kicks={self.kicks!r}: give how many more descents to run from below "
                                      "the best after the first (an int >= 0; 0: none)")
        if not 0.0 < self.kick_back < 1.0 or not self.kick_noise >= 0.0:
            raise InvalidSettingError(f"kick_back={self.kick_back!r}, kick_noise={self.kick_noise!r}: need "
                                      "kick_back in (0, 1) (a kick starts at or below this share of the best CR) "
                                      "and kick_noise >= 0")
        if self.kick_share is not None and not (isinstance(self.kick_share, (int, float))
                                                and not isinstance(self.kick_share, bool) and self.kick_share > 0):
            raise InvalidSettingError(f"kick_share={self.kick_share!r}: give the most scorings a kick may make, as "
                                      "a share of those the exploration made before it (a number > 0; None: "
                                      "no limit)")
        if self.picks < 1 or self.fit_cap <= 0:
            raise InvalidSettingError(f"picks={self.picks!r}, fit_cap={self.fit_cap!r}: need picks >= 1 and fit_cap > 0")
        if self.signal not in ("auto", "loss", "distortion"):
            raise InvalidSettingError(f"signal={self.signal!r}; use 'loss' (the layers' losses alone), "
                                      "'distortion' (their outputs' distance to the uncompressed model's) or 'auto'")
        if self.ladder < 0 or not 0.0 < self.ladder_floor < 1.0:
            raise InvalidSettingError(f"ladder={self.ladder!r}, ladder_floor={self.ladder_floor!r}: need ladder >= 0 "
                                      "(fallback candidates below the best; 0: none) and ladder_floor in (0, 1)")
        if self.combination == "regression":
            if self.doe != "auto" and self.doe not in doe_mod.SAMPLERS:
                raise InvalidSettingError(f"doe={self.doe!r} is unknown; use 'auto' or one of "
                                          f"{sorted(doe_mod.SAMPLERS)}")
            if self.features not in FEATURES:
                raise InvalidSettingError(f"features={self.features!r}; use one of {list(FEATURES)}")
            if not 0.0 < self.sample_fraction < 1.0 or self.rounds < 1:
                raise InvalidSettingError("sample_fraction must be in (0, 1) and rounds >= 1")
            if self.surrogate_pop_size < 2 or self.surrogate_generations < 1:
                raise InvalidSettingError("surrogate_pop_size must be >= 2 and surrogate_generations >= 1")

    def _combiners(self) -> dict:
        return {"knapsack": self._combine_knapsack, "scoring": self._combine_scoring,
                "regression": self._combine_regression}

    def first_step_scorings(self, problem) -> int:
        if self.layerwise == "scan":
            return layerwise_scorings(problem)
        return sum(search_scorings(problem, name) for name in problem.layer_names)

    def _run(self, problem) -> None:
        self._check()
        self.layerwise_ = {}
        self.phi_ = {}
        self.relaxed_ = []
        if self.layerwise == "scan":
            layerwise_scan(problem, out=self.layerwise_)
            found = {}
            for name, scored in self.layerwise_.items():
                phi, relaxed = select_phi(problem, name, scored)
                found[name] = (phi + [UNCOMPRESSED] if relaxed else phi, relaxed)
        else:  # every layer's search advances in one population per round
            searches = [LayerSearch(problem, name, self.min_saving) for name in problem.layer_names]
            with problem.stage("layer-wise", None):
                try:
                    found = search_layers(problem, searches)
                finally:  # what a stopped search scored stays on record
                    for s in searches:
                        self.layerwise_[s.name] = [s.scored[k] for k in problem.knob_values[s.name] if k in s.scored]
        for name in problem.layer_names:
            phi, relaxed = found[name]
            self.phi_[name] = phi
            if relaxed:
                self.relaxed_.append(name)
                problem.note(f"layer {name}: no knob value meets the target on its own; the combination step "
                             "may leave it uncompressed" + (" or take the best accuracy per group (target "
                                                            "relaxed for this layer)" if len(phi) > 1 else ""))
        problem.extras["phi"] = {k: list(v) for k, v in self.phi_.items()}
        problem.extras["layerwise"] = {
            name: [[c.knobs[name], c.accuracy_loss, bool(c.meets_target), bool(c.rejected)] for c in scored]
            for name, scored in self.layerwise_.items()}
        problem.evaluate([{}], origin="uncompressed")  # the front reaches down to CR 1
        self._combiners()[self.combination](problem)

    def _combine_scoring(self, problem) -> None:
        seed = seed_of(self, problem)
        with problem.stage("nsga2 over phi", None):  # ends at an unknown count (patience, repeats)
            self.nsga_ = run_nsga2(problem, self.phi_, evaluate=lambda pop: problem.evaluate(pop, origin="nsga2"),
                                   pop_size=self.pop_size, generations=self.generations,
                                   crossover=self.crossover, mutation=self.mutation, seed=seed,
                                   patience=self.patience, initial=self._starts())

    def _starts(self) -> list[dict]:
        """NSGA-II's seeded starts: layers whose target was relaxed left uncompressed, the others at
        their most accurate phi value (the back-off), at their most compressive and at the next."""
        def at(i):
            return {n: UNCOMPRESSED if n in self.relaxed_ else phi[min(i, len(phi) - 1) if i >= 0 else -1]
                    for n, phi in self.phi_.items()}
        starts = [at(-1), at(0), at(1)]
        return [dict(s) for s in {tuple(s.items()): s for s in starts}.values()]

    # -- knapsack over phi: an additive model from the layer-wise step, its exact front scored ---------
    def _combine_knapsack(self, problem) -> None:
        seed = seed_of(self, problem)
        phi = {n: list(self.phi_[n]) for n in problem.layer_names}
        self.signal_ = self.signal
        if self.signal == "auto":
            self.signal_ = "distortion" if has_distortions(phi, self.layerwise_) else "loss"
        elif self.signal == "distortion" and not has_distortions(phi, self.layerwise_):
            problem.note("signal='distortion': the backend measured no output distortion for some layers "
                         "(outputs not arrays, or reference outputs not cached); the knapsack models the loss")
            self.signal_ = "loss"
        self.prior_ = loss_prior(problem, phi) if self.signal_ == "loss" else None
        self.surrogate_ = AdditiveSurrogate(phi, self._tables(problem, phi))
        costs = size_tables(problem, phi)
        max_al = problem.max_loss
        report = {"signal": self.signal_, "rounds": []}
        problem.extras["knapsack"] = report
        report["bisection"], _ = self._bisect_front(problem, phi, costs)
        fit = self._refit(problem, seed, report)
        best = best_meeting(problem)
        for r in range(max(self.rounds, 8)):
            check_time(problem)
            s, v, choice = self._front(costs)
            pred = v + self.surrogate_.intercept_
            cr = problem.total_baseline_bits / s
            fresh = [i for i in range(len(s)) if not is_scored(problem, knobs_at(phi, choice[i]))]
            quota = min(self.picks, budget_left(problem, default=10**9))
            margin = min(margin_of(fit.get("rmse"), max_al), max_al)
            picks = pick_for_scoring(cr[fresh], pred[fresh], quota, max_al, margin)
            report["rounds"].append({"round": r + 1, "front": int(len(s)), "scored": len(picks)})
            if not picks:
                break
            with problem.stage(f"knapsack round {r + 1}", len(picks)):
                problem.evaluate([knobs_at(phi, choice[fresh[i]]) for i in picks], origin=f"knapsack:{r + 1}")
            fit = self._refit(problem, seed, report)
            report["rounds"][-1].update({k: v for k, v in fit.items() if k in ("r2", "rmse", "n_fit")})
            found = best_meeting(problem)
            improved = found is not None and (best is None or found.compression_rate > best.compression_rate)
            best = found if improved else best
            if problem.budget_left == 0 or (not improved and r + 1 >= self.rounds):
                break
        report["descent"] = self._descend(problem, best)
        report["kicks"] = [self._kick(problem, np.random.default_rng([seed, 7, i])) for i in range(self.kicks)
                           if budget_left(problem, default=10**9) > 0]
        report["restarts"] = [self._restart(problem, phi, costs, seed, report) for _ in range(self.restarts)
                              if budget_left(problem, default=10**9) > 0]
        report["ladder"] = self._ladder(problem, phi, costs, best_meeting(problem))
        if problem.budget is not None and problem.budget_left:
            with problem.stage("knapsack polish", problem.budget_left):
                report["polish"] = pareto_local_search(problem, phi, "knapsack:polish", max_al)
        if problem.budget_left == 0 and not problem.stop_reason:  # picks fit the budget: it never raised
            problem.stop_reason = "scoring budget reached"

    def _tables(self, problem, phi: dict) -> dict:
        """The per-layer model over ``phi`` (or any knob values) in the chosen signal's unit."""
        return loss_tables(problem, phi, self.layerwise_, getattr(self, "prior_", None),
                           signal=getattr(self, "signal_", "loss"))

    def _refit(self, problem, seed: int, report: dict) -> dict:
        """Refit the model on what was scored: per-layer weights on the loss (``knapsack.refit``) or, on
        distortion, per-layer weights on the distortions measured (``distortion_weights``) and one scale
        to the loss (``distortion_scale``: a metric moving in steps gives a per-layer fit of the loss
        nothing to hold on to)."""
        if self.signal_ == "loss":
            return refit(problem, self.surrogate_, self.fit_cap, seed)
        alpha = distortion_weights(problem, self.surrogate_)
        scale, report["scale"] = distortion_scale(problem, self.surrogate_, alpha)
        self.surrogate_.coef_ = scale * alpha
        return {}

    def _ladder(self, problem, phi: dict, costs, best) -> int:
        """Fallbacks below the best candidate: the model's front at ``ladder`` CRs spaced geometrically
        down to ``ladder_floor`` x its CR. The search's subset can be optimistic about a whole region
        (its samples happen to be easy for those layers), so that the front's best fail on all samples;
        the ladder's candidates are nominated for the final re-scoring on all samples
        (``Problem.nominate``), where one the subset's front would hide can take their place.
        Returns the scorings made."""
        if best is None or not self.ladder:
            return 0
        s, _, choice = self._front(costs)
        cr = problem.total_baseline_bits / s
        top = best.compression_rate
        wanted = top * self.ladder_floor ** (np.arange(1, self.ladder + 1) / self.ladder)
        rows = []
        for c in wanted:  # the model's front point closest below each wanted CR
            below = np.flatnonzero((cr <= c) & (cr >= top * self.ladder_floor))
            if below.size:
                knobs = knobs_at(phi, choice[below[np.argmax(cr[below])]])
                if knobs not in rows:
                    rows.append(knobs)
        fresh = [k for k in rows if not is_scored(problem, k)][:budget_left(problem, default=10**9)]
        start = problem.scorings
        if fresh:
            with problem.stage("knapsack ladder", len(fresh)):
                problem.evaluate(fresh, origin="knapsack:ladder")
        problem.nominate([k for k in rows if is_scored(problem, k)])  # those scored before too
        return problem.scorings - start

    def _restart(self, problem, phi: dict, costs, seed: int, report: dict) -> dict:
        """One restart: the model refitted on everything scored, its front bisected again and a descent
        from the last point meeting the target, which moves on its own best (the candidates scored
        before are not scored again). A descent ends in a local optimum that tiny differences choose
        (``benchmarks/scale/path-gap.md``); another start is another draw. Returns what it did."""
        check_time(problem)
        self._refit(problem, seed, report)
        since, made = len(problem.history), problem.scorings
        _, start = self._bisect_front(problem, phi, costs, origin="knapsack:restart")
        if start is not None:
            self._descend(problem, start, since=since)
        end = best_meeting(problem, since)
        best = max((c for c in (start, end) if c is not None), key=lambda c: c.compression_rate, default=None)
        return outcome(problem, start, best, made)

    def _kick(self, problem, rng) -> dict:
        """One kick: a descent from the best candidate meeting the target at or below ``kick_back``
        times the best CR (with ``kick_noise``, on the model's per-layer weights scaled by log-normal
        noise): another path from a point the descents passed, which needs no climb from the model's
        front (a restart's). Returns where it started, its best and its scorings."""
        check_time(problem)
        top = best_meeting(problem)
        start = None if top is None else best_meeting(problem, at_most=self.kick_back * top.compression_rate)
        since, made = len(problem.history), problem.scorings
        cap = None if self.kick_share is None else max(int(self.kick_share * made), 1)
        if start is not None:
            self._descend(problem, start, since=since, noise=rng, origin="knapsack:kick", cap=cap)
        return outcome(problem, start, best_meeting(problem, since), made)

    def _front(self, costs) -> tuple:
        """The model's exact front under the size (``pareto_dp``): sizes, modelled values, choices."""
        return pareto_dp(costs, self.surrogate_.contributions(), 20000)

    def _bisect_front(self, problem, phi: dict, costs, origin: str = "knapsack:bisection") -> tuple:
        """Bisection along the model's front (least compressive first) for the last point meeting the
        target: real loss grows along it even where the model's values are off (layers that
        interact), so O(log) scorings find the boundary and give the refit points on both sides of
        it. Returns the scorings made and that last point (None: none met)."""
        s, _, choice = self._front(costs)
        rows = choice[np.argsort(s)[::-1]]
        start, last = problem.scorings, None
        lo, hi = -1, len(rows)  # rows[lo] meets (-1: nothing scored yet), rows[hi] misses
        with problem.stage(origin.replace(":", " "), None):  # one bar for the whole bisection
            while hi - lo > 1 and budget_left(problem, default=10**9) > 0:
                check_time(problem)
                mid = (lo + hi) // 2
                cand = problem.evaluate([knobs_at(phi, rows[mid])], origin=origin)[0]
                lo, hi = (mid, hi) if cand.meets_target else (lo, mid)
                if cand.meets_target and not cand.rejected:
                    last = cand
        return problem.scorings - start, last

    def _descend(self, problem, best, since: int = 0, noise=None, origin: str = "knapsack:descent",
                 cap: int | None = None) -> int:
        """From the best candidate meeting the target, score its ``picks`` most promising neighbours,
        ranked by the model's loss per bit saved after those whose steps missed least often before
        (``rank_moves``): one layer a step down (``moves_down``), or, once
        ``descent_patience`` rounds of those found nothing better, a trade (one layer down, another up,
        smaller in all); take those meeting the target together where they still do (``_merge``), move
        to the best candidate and repeat while that improves. Where trades find nothing better either,
        a sweep scores every single move left unscored (the model's ranking can bury the one that still
        fits), ``descent_sweeps`` times in a descent. At its start and after every ``REORDER_EVERY``
        moves the samples are ordered by the current candidate's margins (``Problem.order_samples_by``):
        its neighbours flip the samples it brought near a change, and stop on their first batch.
        ``noise`` (a numpy Generator) scales the model's per-layer weights by log-normal noise of sigma
        ``kick_noise`` (a kick's); its candidates record ``origin``. ``cap`` (a kick's) bounds its
        scorings. Returns the scorings made."""
        start = problem.scorings

        def left() -> int:  # scorings the budget and the cap still allow
            room = budget_left(problem, default=10**9)
            return room if cap is None else min(room, cap - (problem.scorings - start))
        coef = np.asarray(self.surrogate_.coef_, dtype=float)
        if noise is not None and self.kick_noise > 0:
            coef = coef * noise.lognormal(0.0, self.kick_noise, coef.shape)
        coef = dict(zip(self.surrogate_.names, coef.tolist()))
        cache: dict = {}

        def g(n, k):  # the layer's modelled loss alone at k
            if (n, k) not in cache:
                cache[(n, k)] = coef.get(n, 1.0) * float(self._tables(problem, {n: [k]})[n][0])
            return cache[(n, k)]

        mode, failed, sweeps = "steps", 0, self.descent_sweeps
        missed = collections.Counter()  # (layer, knob) -> moves to it that missed the target
        moved = REORDER_EVERY  # moves since the samples were ordered by the current candidate
        while best is not None and left() > 0:
            check_time(problem)
            if moved >= REORDER_EVERY:  # its neighbours flip the samples it brought near a change
                problem.order_samples_by(best.knobs)
                moved = 0
            here = {n: best.knobs.get(n, UNCOMPRESSED) for n in problem.layer_names}
            size = problem.size_bits(here)
            steps = []  # (layer, new knob, loss change)
            for n in problem.layer_names:
                steps += [(n, k, g(n, k) - g(n, here[n])) for k in moves_down(problem, n, here[n])]
            if mode == "trades":
                ups = [(n, k, g(n, k) - g(n, here[n])) for n in problem.layer_names
                       if (k := move_up(problem, n, here[n])) is not None]
                steps = [((a, ka, da), (b, kb, db)) for a, ka, da in steps for b, kb, db in ups if a != b]
            else:
                steps = [(s,) for s in steps]
            moves = []
            for step in steps:
                cand = dict(here)
                for n, k, _ in step:
                    cand[n] = k
                saved = size - problem.size_bits(cand)
                if saved > 0 and not is_scored(problem, cand):
                    moves.append((max(sum(d for _, _, d in step), 0.0) / saved, -saved, cand, step))
            moves = rank_moves(moves, missed)
            quota = left()
            pop = [m[2] for m in moves[:min(quota if mode == "sweep" else self.picks, quota)]]
            if pop:
                with problem.stage("knapsack descent sweep" if mode == "sweep" else "knapsack descent", len(pop)):
                    got = problem.evaluate(pop, origin=origin)
                for m, c in zip(moves, got):
                    if not c.meets_target:
                        missed.update((n, k) for n, k, _ in m[3])
                self._merge(problem, here, [c for c in got if c.meets_target], origin, left)
                found = best_meeting(problem, since)  # a restart moves on its own best
                if found is not None and found.compression_rate > best.compression_rate:
                    best, mode, failed, moved = found, "steps", 0, moved + 1
                    continue
                failed += 1
                if mode != "sweep" and failed < self.descent_patience:
                    continue
            # nothing better: single moves give way to trades, trades to a sweep (while sweeps are
            # left) of every single move not scored yet, then it stops
            if mode == "steps":
                mode, failed = "trades", 0
            elif mode == "trades" and sweeps > 0:
                mode, failed, sweeps = "sweep", 0, sweeps - 1
            else:
                break
        return problem.scorings - start

    def _merge(self, problem, here: dict, good: list, origin: str = "knapsack:descent", left=None) -> None:
        """Moves from ``here`` that each met the target, taken together: the longest prefix of them
        (largest CR first, one move per layer) that still meets it, by bisection on its length, so
        that a descent step takes every compatible move instead of one. ``left()`` gives the scorings
        still allowed (default: the budget's)."""
        left = left or (lambda: budget_left(problem, default=10**9))
        changes, used = [], set()
        for c in sorted(good, key=lambda c: -c.compression_rate):
            diff = {n: k for n in problem.layer_names if (k := c.knobs.get(n, UNCOMPRESSED)) != here[n]}
            if used.isdisjoint(diff):
                changes.append(diff)
                used |= set(diff)

        def meets(m):
            cand = dict(here)
            for d in changes[:m]:
                cand.update(d)
            return problem.evaluate([cand], origin=origin)[0].meets_target

        lo, hi = 1, len(changes)  # a prefix of lo moves meets; find the longest that does
        if hi <= lo or left() <= 0 or meets(hi):
            return
        while hi - lo > 1 and left() > 0:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if meets(mid) else (lo, mid)

    # -- approach IV: DoE + regression surrogate + NSGA-II on the surrogate ----------------------------
    def _combine_regression(self, problem) -> None:
        seed = seed_of(self, problem)
        names = problem.layer_names
        phi = {n: list(self.phi_[n]) for n in names}
        sizes = [len(phi[n]) for n in names]
        space = doe_mod.space_size(sizes)
        left = problem.budget_left
        if self.samples is not None:
            n_samples = int(self.samples)
        elif left is None:
            n_samples = 500
        else:
            n_samples = int(self.sample_fraction * left)
        n_samples = max(0, min(n_samples, space if left is None else min(space, left)))
        self._score_phi(problem, phi)
        tables = feature_tables(problem, phi, self.features, self.layerwise_)
        self.surrogate_ = AdditiveSurrogate(phi, tables, positive=self.features != "k")
        self.sample_idx_ = np.zeros((0, len(names)), dtype=int)
        self.sample_al_ = np.zeros(0)
        report = {"features": self.features, "samples": 0, "space": int(space)}
        problem.extras["regression"] = report

        design = self.doe
        if design == "auto":
            design, report["doe_pilot"] = self._pick_design(problem, phi, sizes, n_samples, seed)
        report["doe"] = design
        with problem.stage(f"doe {design}", max(n_samples - len(self.sample_al_), 0)):
            rows = doe_mod.sample(design, sizes, n_samples - len(self.sample_al_), seed,
                                  exclude={tuple(r) for r in self.sample_idx_})
            self._score_rows(problem, phi, rows, origin=f"doe:{design}")
        report["samples"] = int(len(self.sample_al_))
        report.update(self.surrogate_.holdout(self.sample_idx_, self.sample_al_, seed))
        report["by_feature"] = self._feature_r2(problem, phi, seed)
        report["model"] = self.surrogate_.describe()
        self._surrogate_rounds(problem, phi, seed, report)

    def _score_phi(self, problem, phi: dict) -> None:
        """Full scores of every phi member alone (the local-AL feature table; the search leaves some
        unscored and may have rejected others)."""
        for name, knobs in phi.items():
            have = {c.knobs[name] for c in self.layerwise_[name] if not c.rejected}
            todo = [k for k in knobs if k is not UNCOMPRESSED and k not in have]
            if todo:
                got = problem.evaluate([{name: k} for k in todo], origin=f"layer-wise:{name}", reject=False)
                self.layerwise_[name] = self.layerwise_[name] + got

    def _score_rows(self, problem, phi: dict, rows: np.ndarray, origin: str) -> list:
        """Score design rows in full (the regression is fitted on their values, never on partial ones)."""
        pop = [knobs_at(phi, row) for row in rows]
        try:
            got = problem.evaluate(pop, origin=origin, reject=False)
        finally:  # keep what was scored even when the budget stops the search
            done = [(row, problem.scores.get(knob_key(p))) for row, p in zip(rows, pop)]
            done = [(row, v) for row, v in done if v is not None]
            if done:
                self.sample_idx_ = np.vstack([self.sample_idx_, np.array([r for r, _ in done], dtype=int)])
                self.sample_al_ = np.concatenate([self.sample_al_,
                                                  [problem.loss(v) for _, v in done]])
        return got

    def _pick_design(self, problem, phi: dict, sizes: list, n_samples: int, seed: int):
        """Score a pilot of every design; keep the one whose model has the best R² on the pooled
        hold-outs of all pilots (a common test set)."""
        from sklearn.metrics import r2_score
        from sklearn.model_selection import train_test_split

        designs = sorted(doe_mod.SAMPLERS)
        n_pilot = max(len(phi) + 3, n_samples // (2 * len(designs)))
        parts = {}
        for d in designs:
            start = len(self.sample_al_)
            rows = doe_mod.sample(d, sizes, n_pilot, seed, exclude={tuple(r) for r in self.sample_idx_})
            self._score_rows(problem, phi, rows, origin=f"doe-pilot:{d}")
            parts[d] = np.arange(start, len(self.sample_al_))
        split = {d: train_test_split(idx, test_size=0.2, random_state=seed) if idx.size >= 5 else (idx, idx[:0])
                 for d, idx in parts.items()}
        pooled = np.concatenate([te for _, te in split.values()])
        table = {}
        for d, (tr, _) in split.items():
            if tr.size < 2 or pooled.size < 2:
                table[d] = float("nan")
                continue
            model = AdditiveSurrogate(phi, dict(zip(phi, self.surrogate_.tables)),
                                      positive=self.surrogate_.positive)
            model.fit(self.sample_idx_[tr], self.sample_al_[tr])
            table[d] = float(r2_score(self.sample_al_[pooled], model.predict(self.sample_idx_[pooled])))
        finite = {d: v for d, v in table.items() if np.isfinite(v)}
        best = max(finite, key=finite.get) if finite else "kmeans"
        return best, {"per_design": n_pilot, "r2": table}

    def _feature_r2(self, problem, phi: dict, seed: int) -> dict:
        """Hold-out R² of the same samples with each feature set (thesis Table 5.3); no scoring."""
        out = {}
        for f in FEATURES:
            model = AdditiveSurrogate(phi, feature_tables(problem, phi, f, self.layerwise_), positive=f != "k")
            out[f] = model.holdout(self.sample_idx_, self.sample_al_, seed)["r2"]
        return out

    def _surrogate_rounds(self, problem, phi: dict, seed: int, report: dict) -> None:
        costs = size_tables(problem, phi)
        upper = np.array([len(v) - 1 for v in phi.values()])
        max_al = problem.max_loss

        def objectives(X):  # reads the surrogate as refitted by the latest round
            return self.surrogate_.predict(X), compression_rates(problem, phi, X, costs)

        report["rounds"] = []
        for r in range(self.rounds):
            check_time(problem)
            margin = margin_of(report["rounds"][-1].get("rmse") if report["rounds"] else report.get("rmse"), max_al)
            with problem.stage(f"nsga2 on surrogate ({r + 1})", None):
                res = run_nsga2(problem, phi, objectives=objectives, pop_size=self.surrogate_pop_size,
                                generations=self.surrogate_generations, crossover=self.crossover,
                                mutation=self.mutation, seed=seed + r, max_al=max_al + margin)
            X = np.unique(np.clip(np.round(res.pop.get("X")), 0, upper).astype(int), axis=0)
            pred, cr = objectives(X)
            front = np.flatnonzero(pareto_mask(pred, cr))
            fresh = [i for i in front if not is_scored(problem, knobs_at(phi, X[i]))]
            left = budget_left(problem, default=10**9)
            quota = min(left, 64 if problem.budget is None else max(1, left // (self.rounds - r)))
            picks = pick_for_scoring(cr[fresh], pred[fresh], quota, max_al, margin)
            report["rounds"].append({"round": r + 1, "surrogate_front": int(front.size), "scored": len(picks)})
            if not picks:
                break
            rows = X[[fresh[i] for i in picks]]
            with problem.stage(f"score surrogate front ({r + 1})", len(rows)):
                self._score_rows(problem, phi, rows, origin=f"surrogate-front:{r + 1}")
            if r + 1 < self.rounds:  # refit on everything scored in phi space
                fit = self.surrogate_.holdout(self.sample_idx_, self.sample_al_, seed)
                report["rounds"][-1].update(r2=fit["r2"], rmse=fit["rmse"], mae=fit["mae"])
            if problem.budget_left == 0:  # None (no budget) never equals 0
                break


@hookimpl
def wsx_strategies():
    return [DivideAndConquer]
