"""NSGA-II (pymoo) over per-layer choice indices: minimise AL, maximise CR, subject to the target."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.strategy import Strategy

from ._common import check_time, seed_of


def run_nsga2(problem, choices: Mapping[str, Sequence], *, evaluate: Callable | None = None,
              pop_size: int, generations: int, crossover: float = 0.9, mutation: float = 0.2,
              seed: int = 0, constrained: bool = True, initial: Sequence[Mapping] | None = None,
              objectives: Callable | None = None, max_al: float | None = None, patience: int | None = None):
    """Run NSGA-II where gene i indexes ``choices[layer_i]``.

    Either ``evaluate(population of knob dicts)`` returns Candidates (real scoring through
    ``problem.evaluate``), or ``objectives(index matrix)`` returns arrays (AL, CR) — the fast path
    for surrogates, whose predictions never become Candidates. The constraint is AL <= ``max_al``
    (default: the problem's target). ``initial`` knob dicts seed the first generation. Each
    generation checks the problem's time limit. With ``patience`` the run also ends once that many
    generations in a row left the population's non-dominated set unchanged (a converged front keeps
    paying full scorings for nothing). Returns pymoo's result object.
    """
    if (evaluate is None) == (objectives is None):
        raise ValueError("give exactly one of evaluate= and objectives=")
    limit = problem.max_loss if max_al is None else max_al
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem as PymooProblem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.optimize import minimize

    names = list(choices)
    opts = [list(choices[n]) for n in names]
    upper = np.array([len(o) - 1 for o in opts], dtype=float)

    def decode(row) -> dict:
        return {n: opts[i][int(round(x))] for i, (n, x) in enumerate(zip(names, row))}

    class Combination(PymooProblem):
        def __init__(self):
            super().__init__(n_var=len(names), n_obj=2, n_ieq_constr=1 if constrained else 0,
                             xl=np.zeros(len(names)), xu=np.maximum(upper, 1e-9), vtype=int)
            self.generation = 0

        def _evaluate(self, X, out, *args, **kwargs):
            check_time(problem)
            self.generation += 1  # pymoo evaluates once per generation (the first: the initial population)
            if problem.progress is not None:
                problem.progress.note(f"generation {self.generation}/{generations}")
            X = np.clip(np.round(X), 0, upper).astype(int)
            if objectives is not None:
                al, cr = (np.asarray(v, dtype=float) for v in objectives(X))
            else:
                cands = evaluate([decode(row) for row in X])
                al = np.array([c.accuracy_loss for c in cands])
                cr = np.array([c.compression_rate for c in cands])
                rejected = np.array([c.rejected for c in cands], dtype=bool)
            out["F"] = np.column_stack([al, -cr])
            if constrained:
                g = al - limit
                if objectives is None:  # a rejected candidate fails, whatever its partial loss says
                    g = np.where(rejected, np.maximum(g, 1e-9), g)
                out["G"] = g.reshape(-1, 1)

    sampling = IntegerRandomSampling()
    if initial:
        rng = np.random.default_rng(seed)
        idx = [[opts[i].index(kn[n]) for i, n in enumerate(names)] for kn in initial][:pop_size]
        rest = pop_size - len(idx)
        rand = rng.integers(0, upper + 1, size=(rest, len(names))) if rest > 0 else np.zeros((0, len(names)))
        sampling = np.vstack([np.array(idx, dtype=float).reshape(-1, len(names)), rand])
    algorithm = NSGA2(pop_size=pop_size, sampling=sampling,
                      crossover=SBX(prob=crossover, eta=15, vtype=float, repair=RoundingRepair()),
                      mutation=PM(prob=mutation, eta=20, vtype=float, repair=RoundingRepair()),
                      eliminate_duplicates=True)
    return minimize(Combination(), algorithm, _stall_termination(generations, patience), seed=seed, verbose=False)


def _stall_termination(generations: int, patience: int | None):
    """At most ``generations``; earlier once the non-dominated set stayed the same for ``patience``
    generations in a row. The class is built here so that pymoo is imported only when used."""
    from pymoo.core.termination import Termination

    class Stalled(Termination):
        def __init__(self):
            super().__init__()
            self.front, self.still = None, 0

        def _update(self, algorithm):
            front = frozenset(map(tuple, np.round(algorithm.opt.get("F"), 9)))
            self.still = self.still + 1 if front == self.front else 0
            self.front = front
            done = algorithm.n_gen / generations
            if patience:
                done = max(done, self.still / patience)
            return min(done, 1.0)

    return Stalled()


def check_settings(pop_size: int, generations: int, patience: int | None) -> None:
    """The NSGA-II settings every strategy running it takes."""
    if pop_size < 2 or generations < 1 or (patience is not None and patience < 1):
        raise InvalidSettingError("pop_size must be >= 2, generations >= 1 and patience >= 1 or None")


class NSGA2(Strategy):
    """Pure NSGA-II over every layer's full knob range, every candidate scored (thesis §6.1, V).

    No search-space reduction and no surrogate: the baseline the reducing strategies must beat.
    ``pop_size`` x ``generations`` bounds the scorings (the budget usually stops it first; repeated
    candidates are free); ``patience`` generations without a change of the front end it early
    (``None``: never). ``seed=None`` takes the exploration's seed.
    """

    name = "nsga2"

    def __init__(self, *, pop_size: int = 100, generations: int = 100, crossover: float = 0.9,
                 mutation: float = 0.2, seed: int | None = None, patience: int | None = 10):
        self.pop_size = pop_size
        self.patience = patience
        self.generations = generations
        self.crossover = crossover
        self.mutation = mutation
        self.seed = seed

    def _run(self, problem) -> None:
        check_settings(self.pop_size, self.generations, self.patience)
        with problem.stage("nsga2", None):  # patience and repeated candidates end it at an unknown count
            self.nsga_ = run_nsga2(problem, problem.knob_values, evaluate=lambda pop: problem.evaluate(pop, origin="nsga2"),
                                   pop_size=self.pop_size, generations=self.generations,
                                   crossover=self.crossover, mutation=self.mutation, seed=seed_of(self, problem),
                                   patience=self.patience)


@hookimpl
def wsx_strategies():
    return [NSGA2]
