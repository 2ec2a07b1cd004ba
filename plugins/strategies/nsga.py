"""NSGA-II (pymoo) over per-layer choice indices: minimise AL, maximise CR, subject to the target."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np


def run_nsga2(problem, choices: Mapping[str, Sequence], *, evaluate: Callable, pop_size: int,
              generations: int, crossover: float = 0.9, mutation: float = 0.2, seed: int = 0,
              constrained: bool = True, initial: Sequence[Mapping] | None = None):
    """Run NSGA-II where gene i indexes ``choices[layer_i]``.

    ``evaluate(population of knob dicts)`` returns Candidates (real scoring, or a surrogate's
    prediction wrapped as Candidates). ``initial`` knob dicts seed the first generation.
    Returns pymoo's result object.
    """
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

        def _evaluate(self, X, out, *args, **kwargs):
            X = np.clip(np.round(X), 0, upper).astype(int)
            cands = evaluate([decode(row) for row in X])
            out["F"] = np.array([[c.accuracy_loss, -c.compression_rate] for c in cands])
            if constrained:
                out["G"] = np.array([[c.accuracy_loss - problem.max_accuracy_loss] for c in cands])

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
    return minimize(Combination(), algorithm, ("n_gen", generations), seed=seed, verbose=False)
