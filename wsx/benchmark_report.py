"""``report.html`` of a ``wsx.bench``: one self-contained page (figures inlined as PNG).

Sections: the summary table (mean and 95 % CI over seeds per strategy and budget), best CR against
the budget with its confidence interval, anytime curves (mean best CR against scorings at the
largest budget), the fronts of the first seed at the largest budget with the IGD reference, the
per-run table and the settings.
"""
from __future__ import annotations

import html
import json

import numpy as np

from .report import CSS, _img, _png, _pyplot, _table


def _figure(labels):
    """(figure, axes, {label: colour}) of one chart."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    return fig, ax, {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _finish(fig, ax, xlabel: str, ylabel: str) -> str:
    """Labels, grid, the legend right of the axes (never over the lines), as base64 PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


def budget_figure(bench) -> str | None:
    """Best CR (mean, 95 % CI) against the budget, one line per strategy."""
    s = bench.summary
    if s.empty:
        return None
    labels = list(dict.fromkeys(s.strategy))
    fig, ax, colors = _figure(labels)
    for label in labels:
        g = s[s.strategy == label].sort_values("budget")
        low = np.where(np.isnan(g.best_cr_low), g.best_cr, g.best_cr_low)
        high = np.where(np.isnan(g.best_cr_high), g.best_cr, g.best_cr_high)
        ax.errorbar(g.budget, g.best_cr, yerr=[g.best_cr - low, high - g.best_cr], marker="o", ms=4, capsize=3,
                    color=colors[label], label=label)
    return _finish(fig, ax, "budget (scorings)", "best CR meeting the target")


def anytime_figure(bench) -> str | None:
    """Mean best CR against scorings at each strategy's largest budget (band: min-max over seeds)."""
    c = bench.curves
    if c.empty:
        return None
    labels = list(dict.fromkeys(c.strategy))
    fig, ax, colors = _figure(labels)
    for label in labels:
        g = c[c.strategy == label]
        g = g[g.budget == g.budget.max()]
        grid = np.arange(0, int(g.scorings.max()) + 1)
        steps = []
        for _, run in g.groupby("seed"):
            run = run.sort_values("scorings")
            idx = np.searchsorted(run.scorings.to_numpy(), grid, side="right") - 1
            steps.append(run.best_cr.to_numpy()[np.clip(idx, 0, None)])
        steps = np.array(steps)
        ax.step(grid, steps.mean(axis=0), where="post", color=colors[label], lw=1.2,
                label=f"{label} (budget {int(g.budget.max())})")
        if len(steps) > 1:
            ax.fill_between(grid, steps.min(axis=0), steps.max(axis=0), step="post", color=colors[label], alpha=0.15)
    return _finish(fig, ax, "scorings", "best CR meeting the target so far\n(search-time measurement)")


def fronts_figure(bench) -> str | None:
    """Final fronts of the first seed at the largest budget, with the IGD reference and the target."""
    f = bench.fronts
    if f.empty:
        return None
    labels = list(dict.fromkeys(bench.runs.strategy))
    fig, ax, colors = _figure(labels)
    seed0, budget = min(bench.meta["seeds"]), max(bench.meta["budgets"])
    ref = bench.reference
    if len(ref):
        ref = ref[np.argsort(ref[:, 1])]
        ax.step(ref[:, 1], ref[:, 0], where="post", color="black", lw=1.2, label=f"reference ({bench.meta['reference']})")
    losses = [0.0]
    for label in labels:
        g = f[(f.strategy == label) & (f.seed == seed0) & (f.budget == budget)].sort_values("compression_rate")
        if len(g):
            ax.plot(g.compression_rate, g["loss"], marker="o", ms=3, lw=1, color=colors[label], label=label)
            losses += list(g["loss"])
    max_loss = bench.meta["max_loss"]
    ax.axhline(max_loss, color="#c03030", ls="--", lw=1, label=f"target ({bench.meta['target']})")
    lo = min(min(losses), 0.0)
    top = max(3 * max_loss, 0.5, min(max(losses), 10 * max_loss))  # fronts far past the target may leave
    ax.set_ylim(lo - 0.1 * (max_loss + abs(lo)) - 0.1, top + 0.1)
    ax.set_title(f"final fronts, seed {seed0}, budget {budget}", fontsize=9)
    return _finish(fig, ax, "compression rate",
                   "loss (pp)" + (" on test data" if bench.meta.get("test_data") else ""))


def _fmt(v, fmt: str) -> str:
    if isinstance(v, (float, np.floating)):
        return "-" if v != v else f"{v:{fmt}}"
    return str(v)


def render(bench) -> str:
    from .benchmark import MEASURES, format_ci

    m = bench.meta
    head = ["strategy", "budget", "seeds", "best CR", "HV", "IGD", "scorings", "wall [s]", "shared scores"]
    rows = []
    for _, r in bench.summary.iterrows():
        rows.append([r.strategy, r.budget, r.runs] + [format_ci(r[k], r[f"{k}_low"], r[f"{k}_high"], f) for k, f in
                     zip(MEASURES, (".2f", ".3f", ".3f", ".0f", ".1f"))] + [f"{r.shared_hits:.0f}"])
    run_cols = ["strategy", "budget", "seed", "best_cr", "hv", "igd", "scorings", "wall_s", "shared_hits",
                "front_size", "stop_reason"]
    run_rows = [[_fmt(r[c], ".3f") for c in run_cols] for _, r in bench.runs.iterrows()]
    basis = "the test data" if m.get("test_data") else "all search data"
    about = [("problem", m.get("name") or "-"), ("strategies", len(m["strategies"])),
             ("budgets", ", ".join(map(str, m["budgets"]))), ("seeds", ", ".join(map(str, m["seeds"]))),
             ("target", f"{m['target']} (max loss {m['max_loss']:.3f} pp on {basis})"),
             ("clusterer", f"{m['clusterer']} (seed 0 for every run)"), ("approximation", m["approximation"]),
             ("IGD reference", m["reference"]),
             ("shared scores", "on: runs take scores other runs made on the same samples (counted as scorings; "
              "wall times are lower than independent runs')" if m["share_scores"] else "off"),
             ("machine", f"{m['machine']}, {m['cpus']} CPUs, load {m['load_before'][0]:.1f} before, "
              f"{m['load_after'][0]:.1f} after"), ("date", m["date"])]
    if m.get("command"):
        about.insert(0, ("command", m["command"]))
    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>wsx bench: {html.escape(m.get('name') or 'strategies head to head')}</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>wsx strategy benchmark</h1>", _table(None, about),
        f"<h2>Summary: mean [{int(100 * m['confidence'])} % CI] over seeds</h2>",
        "<p>Best CR: the highest CR of the final front meeting the target on " + basis + " (1.0: none does). "
        "HV: hypervolume of (loss, CR) inside the target. IGD: distance from the reference front to the run's "
        "legal points (normalised; runs without a legal point are left out). CI: Student's t.</p>",
        _table(head, rows),
        "<h2>Best CR against the budget</h2>", _img(budget_figure(bench), "best CR against budget"),
        "<h2>Anytime: best CR against scorings</h2>", _img(anytime_figure(bench), "anytime curves"),
        "<h2>Fronts</h2>", _img(fronts_figure(bench), "fronts"),
        "<h2>Every run</h2>", _table(run_cols, run_rows),
        "<h2>Settings</h2>", f"<pre>{html.escape(json.dumps(m, indent=1, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(bench, path) -> None:
    from .files import write_text

    write_text(path, render(bench))
