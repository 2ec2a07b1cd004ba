"""Any model, any metric, end to end (issue 13's "done when"), on random-init models (no download).

* ``bert``: a 4-layer BERT from ``transformers`` (torch), tokenizer-style dict inputs with padding, no
  labels, ``metric="cosine"``, target 0.99; its best candidate applied with ``wsx.apply`` and the
  cosine recomputed from the model's own outputs;
* ``keras`` / ``flax``: the 4-layer BERT-style encoders of ``wsx.testing.models`` (transformers has no
  Keras 3 or Flax BERT in its current release), the same run;
* ``regression``: an MLP fitted to a smooth function, ``metric="mse"``, ``max_increase=``; its
  results.json, front.png and report.html are written to ``--out``/regression.

    python benchmarks/any_model/run.py --out /tmp/any-model [bert keras flax regression]

Prints one line per run: reported best (metric, CR) and the metric recomputed after ``wsx.apply``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

import wsx
from wsx.testing import models

KNOBS = [2, 4, 8, 16, 32, 64, 128, 256]
# the end-to-end tests' helpers: an independent cosine and the fitted regression MLP
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from test_any_model import cosine, regression  # noqa: E402


def strategy():
    return wsx.plugins.strategies()["divide-and-conquer"](pop_size=24, generations=20)


def explore(model, data, out: Path, **kwargs):
    t0 = time.perf_counter()
    result = wsx.explore(model, data, metric="cosine", target=0.99, strategy=strategy(), knobs=KNOBS,
                         progress=False, out=out, **kwargs)
    return result, time.perf_counter() - t0


def run_bert(out: Path, n: int) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=512, max_position_embeddings=64)
    model = BertModel(config).eval()
    inputs = models.tokens(n, seed=0, vocab=1000, seq=32)
    result, seconds = explore(model, inputs, out)
    best = result.best()
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        reference = model(**t).last_hidden_state.numpy()
        applied = copy.deepcopy(model)
        wsx.apply(applied, best, result=result)
        again = cosine(applied(**t).last_hidden_state.numpy(), reference)
    return report("bert (torch, transformers)", result, best, again, seconds)


def run_keras(out: Path, n: int) -> dict:
    ex = models.keras_encoder(layers=4, n=n)
    reference = np.asarray(ex.model(ex.data, training=False)["last_hidden_state"])
    result, seconds = explore(ex.model, ex.data, out)
    best = result.best()
    wsx.apply(ex.model, best, result=result)
    again = cosine(np.asarray(ex.model(ex.data, training=False)["last_hidden_state"]), reference)
    return report("encoder (keras)", result, best, again, seconds)


def run_flax(out: Path, n: int) -> dict:
    ex = models.flax_encoder(layers=4, n=n)
    apply_fn, variables = ex.model
    reference = np.asarray(apply_fn(variables, ex.data)["last_hidden_state"])
    result, seconds = explore(ex.model, ex.data, out)
    best = result.best()
    new = wsx.apply(ex.model, best, result=result)
    again = cosine(np.asarray(apply_fn(new, ex.data)["last_hidden_state"]), reference)
    return report("encoder (flax)", result, best, again, seconds)


def run_regression(out: Path, n: int) -> dict:
    import torch

    model, (x, y) = regression()
    t0 = time.perf_counter()
    result = wsx.explore(model, (x, y), metric="mse", max_increase=0.01, strategy=strategy(), knobs=KNOBS,
                         progress=False, out=out)
    seconds = time.perf_counter() - t0
    best = result.best()
    applied = copy.deepcopy(model)
    wsx.apply(applied, best, result=result)
    with torch.no_grad():
        again = float(((applied(torch.from_numpy(x)).numpy() - y) ** 2).mean())
    return report("regression MLP (torch)", result, best, again, seconds)


def report(name: str, result, best, again: float, seconds: float) -> dict:
    row = {"run": name, "metric": result.metric_name, "direction": result.direction, "target": result.settings["target"],
           "layers": len(result.layers), "unused": result.unused_layers, "scorings": result.scorings,
           "seconds": round(seconds, 1), "baseline": result.baseline.accuracy, "best_value": best.accuracy,
           "best_loss": best.accuracy_loss, "best_cr": best.compression_rate, "after_apply": again,
           "difference": again - best.accuracy}
    print(f"{name}: {result.metric_name} ({result.direction}), target {row['target']}, {row['layers']} layers "
          f"(left out: {', '.join(result.unused_layers) or 'none'}), {result.scorings} scorings, {seconds:.0f} s; "
          f"best CR {best.compression_rate:.2f} at {result.metric_name} {best.accuracy:.6f} "
          f"({result.loss_label} {best.accuracy_loss:.4g}); after wsx.apply {again:.6f} "
          f"(difference {again - best.accuracy:.2e})", flush=True)
    return row


RUNS = {"bert": run_bert, "keras": run_keras, "flax": run_flax, "regression": run_regression}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--samples", type=int, default=128)
    args = p.parse_args(argv)
    rows = [RUNS[name](args.out / name, args.samples) for name in args.runs]
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
