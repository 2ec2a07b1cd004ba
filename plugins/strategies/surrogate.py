"""Additive surrogate of the accuracy loss: AL ≈ c + Σ_i α_i · f_i(k_i) (thesis §5.3.2).

f_i is a per-layer feature table over layer i's knob values: the k-means inertia (thesis default),
the layer's local AL measured by the layer-wise scan (Table 5.3), or k itself (Table 5.3's weak
baseline). The model is scikit-learn's LinearRegression; inertia and local-AL coefficients are kept
non-negative (more error never helps), which also keeps the knapsack's item values meaningful.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from wsx.problem import UNCOMPRESSED

FEATURES = ("inertia", "local-al", "k")


def feature_tables(problem, choices: Mapping[str, Sequence], feature: str,
                   layerwise: Mapping[str, Sequence] | None = None) -> dict[str, np.ndarray]:
    """{layer: feature value per choice} for ``feature``; "local-al" needs the layer-wise scan."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; use one of {list(FEATURES)}")
    out = {}
    for name, ks in choices.items():
        if feature == "inertia":
            out[name] = np.asarray(problem.proxies(name, ks), dtype=float)
        elif feature == "k":  # leaving the layer as it is: as if k were its weight count
            out[name] = np.asarray([problem.layer(name).size if k is UNCOMPRESSED else k for k in ks], dtype=float)
        else:
            if layerwise is None:
                raise ValueError("feature 'local-al' needs the layer-wise scan")
            by_knob = {c.knobs[name]: c.accuracy_loss for c in layerwise[name] if not c.rejected}
            missing = [k for k in ks if k is not UNCOMPRESSED and k not in by_knob]
            if missing:
                raise ValueError(f"feature 'local-al' needs full scores of layer {name!r} at {missing}")
            out[name] = np.asarray([0.0 if k is UNCOMPRESSED else by_knob[k] for k in ks], dtype=float)
    return out


def holdout_metrics(al, pred) -> dict:
    """R², RMSE and MAE of predictions ``pred`` of the measured ``al``."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"r2": float(r2_score(al, pred)), "rmse": float(np.sqrt(mean_squared_error(al, pred))),
            "mae": float(mean_absolute_error(al, pred))}


class AdditiveSurrogate:
    """Linear model over per-layer feature tables, indexed by choice (position in ``choices[layer]``)."""

    def __init__(self, choices: Mapping[str, Sequence], tables: Mapping[str, np.ndarray], *,
                 positive: bool = True):
        self.names = list(choices)
        self.position = {n: {k: i for i, k in enumerate(choices[n])} for n in self.names}
        self.tables = [np.asarray(tables[n], dtype=float) for n in self.names]
        self.positive = positive
        self.coef_ = np.ones(len(self.names))
        self.intercept_ = 0.0

    # -- encoding ----------------------------------------------------------------------------------
    def features(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=int).reshape(-1, len(self.names))
        return np.column_stack([t[idx[:, j]] for j, t in enumerate(self.tables)])

    # -- model -----------------------------------------------------------------------------------
    def _model(self):
        from sklearn.linear_model import LinearRegression

        return LinearRegression(positive=self.positive)

    def fit(self, idx: np.ndarray, al: np.ndarray) -> "AdditiveSurrogate":
        return self.fit_features(self.features(idx), al)

    def fit_features(self, X: np.ndarray, al: np.ndarray) -> "AdditiveSurrogate":
        """Fit on a feature matrix directly (rows may leave layers unapproximated: feature 0)."""
        m = self._model().fit(np.asarray(X, dtype=float), np.asarray(al, dtype=float))
        self.coef_, self.intercept_ = np.asarray(m.coef_, dtype=float), float(m.intercept_)
        return self

    def rows(self, candidates) -> tuple[np.ndarray, list]:
        """The feature rows of the candidates whose knobs are all among the choices (a layer a candidate
        leaves as it is: 0), and those candidates."""
        rows, kept = [], []
        for c in candidates:
            if all(n in self.position and k in self.position[n] for n, k in c.knobs.items()):
                rows.append([t[self.position[n][c.knobs[n]]] if n in c.knobs else 0.0
                             for n, t in zip(self.names, self.tables)])
                kept.append(c)
        return np.asarray(rows, dtype=float).reshape(len(rows), len(self.names)), kept

    def predict(self, idx: np.ndarray) -> np.ndarray:
        return self.predict_features(self.features(idx))

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=float) @ self.coef_ + self.intercept_

    def contributions(self) -> list[np.ndarray]:
        """α_i · f_i per choice of each layer (the knapsack's item values); the intercept is apart."""
        return [c * t for c, t in zip(self.coef_, self.tables)]

    def holdout(self, idx: np.ndarray, al: np.ndarray, seed: int, test_size: float = 0.2) -> dict:
        """R², RMSE and MAE on a seeded ``test_size`` hold-out, then refit on everything."""
        from sklearn.model_selection import train_test_split

        idx = np.asarray(idx, dtype=int)
        al = np.asarray(al, dtype=float)
        scores = {"n_train": int(len(al)), "n_test": 0, "r2": float("nan"), "rmse": float("nan"),
                  "mae": float("nan")}
        if len(al) >= 5:
            tr, te = train_test_split(np.arange(len(al)), test_size=test_size, random_state=seed)
            self.fit(idx[tr], al[tr])
            scores.update(n_train=int(len(tr)), n_test=int(len(te)),
                          **holdout_metrics(al[te], self.predict(idx[te])))
        if len(al) >= 2:
            self.fit(idx, al)
        return scores

    def describe(self) -> dict:
        return {"coef": {n: float(c) for n, c in zip(self.names, self.coef_)},
                "intercept": float(self.intercept_)}
