"""``report.html``: one self-contained page (figures inlined as PNG) that explains a Result.

Sections: the front with the target line (an inline SVG: hovering a point shows its knobs); k per layer for the chosen candidates (thesis Fig. 5.15);
each layer's sensitivity, AL against k from the layer-wise step (Fig. 5.3 / 5.4); where the time
went; the front as a table; the settings. Nothing is fetched when the page is opened.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from .plot import loss_limits
from .report_svg import front_svg

MAX_CHOSEN = 6  # candidates in the per-layer k chart


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chosen_candidates(result) -> list:
    """The candidates the k chart shows: the front's target-meeting ones, highest CR first."""
    ok = [c for c in result.front if c.meets_target] or list(result.front)
    return sorted(ok, key=lambda c: -c.compression_rate)[:MAX_CHOSEN]


def k_figure(result) -> str | None:
    """Grouped bars: the knob (k) of every layer, one bar per chosen candidate."""
    chosen = chosen_candidates(result)
    layers = [layer["name"] for layer in result.layers] or sorted({n for c in chosen for n in c.knobs})
    if not chosen or not layers:
        return None
    if not all(isinstance(v, (int, float)) for c in chosen for v in c.knobs.values()):
        return None  # a knob that is not one number (weight-sharing+pruning's pair) has no bar height
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(layers) + 4), 4), dpi=110)
    width = 0.8 / len(chosen)
    for j, c in enumerate(chosen):
        ks = [c.knobs.get(name) for name in layers]
        xs = [i + (j - (len(chosen) - 1) / 2) * width for i in range(len(layers))]
        bars = ax.bar([x for x, k in zip(xs, ks) if k is not None], [k for k in ks if k is not None], width,
                      label=f"CR {c.compression_rate:.2f}, {result.metric.get('loss', 'AL')} "
                            f"{result.fmt_loss(c.accuracy_loss)} {result.metric.get('unit') or ''}".rstrip())
        for bar, k in zip(bars, [k for k in ks if k is not None]):
            ax.annotate(f"{k}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
    if all(v > 0 for c in chosen for v in c.knobs.values()):  # numbers already checked above
        ax.set_yscale("log", base=2)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=9)
    knob = _knob_name(result)
    ax.set_ylabel("k (shared values)" if knob == "k" else knob)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return _png(fig)


def _knob_name(result) -> str:
    return "k" if result.approximation in ("", "weight-sharing") else "knob"


def layer_curves(result) -> dict:
    """{layer: [(knob, AL, meets target, rejected early)]} in knob order: the layer-wise step's record,
    or else the history's single-layer candidates (any strategy that varied one layer at a time)."""
    curves = (result.extras or {}).get("layerwise")
    if curves:
        return {name: [tuple(p) + (False,) * (4 - len(p)) for p in points] for name, points in curves.items()}
    found: dict = {}
    for c in result.history:
        if len(c.knobs) == 1:
            (name, knob), = c.knobs.items()
            found.setdefault(name, {})[knob] = (knob, c.accuracy_loss, c.meets_target, c.rejected)
    order = (result.settings or {}).get("knob_values") or {}
    return {name: sorted(points.values(), key=lambda p: _position(order.get(name), p[0]))
            for name, points in found.items()}


def _position(values, knob) -> tuple:
    """Where ``knob`` sits in a layer's knob values (JSON gives lists for tuples), else by value."""
    if values:
        for i, v in enumerate(values):
            if v == knob or (isinstance(v, list) and tuple(v) == knob):
                return (0, i)
    return (1, repr(knob))


def sensitivity_figure(result) -> str | None:
    """One panel per layer: AL against the knob, target line, phi (kept knob values) ringed."""
    curves = layer_curves(result)
    if not curves:
        return None
    plt = _pyplot()
    phi = (result.extras or {}).get("phi") or {}
    names = list(curves)
    cols = min(3, len(names))  # the page is ~1000 px wide: three panels a row stay legible
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), dpi=100, squeeze=False)
    max_al = result.settings.get("max_accuracy_loss")
    for ax, name in zip(axes.ravel(), names):
        pts = sorted((p for p in curves[name] if isinstance(p[0], (int, float))), key=lambda p: p[0])
        if not pts:
            ax.set_visible(False)
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", c="#999999", lw=0.8)
        for meets, color in ((True, "#1f6fbf"), (False, "#d05050")):
            sel = [p for p in pts if bool(p[2]) == meets and not p[3]]
            ax.scatter([p[0] for p in sel], [p[1] for p in sel], s=10, c=color,
                       label="meets target" if meets else "misses target")
        stopped = [p for p in pts if p[3]]
        if stopped:  # their AL is over the samples seen before they were rejected
            ax.scatter([p[0] for p in stopped], [p[1] for p in stopped], s=14, c="#d05050", marker="x",
                       label="rejected early (partial)")
        kept_knobs = set(phi.get(name, []))
        kept = [p for p in pts if p[0] in kept_knobs]
        if kept:
            ax.scatter([p[0] for p in kept], [p[1] for p in kept], s=60, facecolors="none", edgecolors="k",
                       label="kept (phi)")
        if max_al is not None:
            ax.axhline(max_al, color="#c03030", ls="--", lw=1)
        if all(p[0] > 0 for p in pts):
            ax.set_xscale("log", base=2)
        if result.metric.get("unit") == "pp":
            top = max(2.0, (max_al or 0) * 3)
            ax.set_ylim(min(-0.5, min(p[1] for p in pts) - 0.2), min(max(p[1] for p in pts) + 1, top * 5))
        else:
            ax.set_ylim(*loss_limits([p[1] for p in pts], [p[1] for p in pts if p[2]], max_al))
        ax.set_title(name if len(name) <= 32 else "..." + name[-29:], fontsize=10)
        ax.set_xlabel(_knob_name(result), fontsize=9)
        ax.set_ylabel(f"{result.metric_name} {result.loss_label}", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    if axes.ravel()[0].get_legend_handles_labels()[0]:  # no phi marks when phi was not recorded
        axes.ravel()[0].legend(fontsize=8)
    for ax in axes.ravel()[len(names):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _png(fig)


TIMING_PARTS = ("clustering", "scoring", "final_scoring", "overhead")


def timing_figure(result) -> str | None:
    """One stacked bar: clustering, search scoring, final re-scoring and overhead seconds."""
    t = result.timings or {}
    parts = [(name, float(t.get(name, 0.0))) for name in TIMING_PARTS]
    if not any(v > 0 for _, v in parts):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 1.7), dpi=110)
    left = 0.0
    for (name, v), color in zip(parts, ("#6a9fd8", "#e0a040", "#60b070", "#b0b0b0")):
        ax.barh([0], [v], left=left, color=color, label=f"{name.replace('_', ' ')} {v:.1f} s")
        left += v
    ax.set_yticks([])
    ax.set_xlabel("seconds")
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout()
    return _png(fig)


def _img(b64: str | None, alt: str) -> str:
    if b64 is None:
        return f"<p class=muted>({html.escape(alt)}: nothing to show for this run)</p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(header: list | None, rows: list) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}img{max-width:100%}pre{background:#f7f7f7;padding:1em;font-size:.8em;overflow:auto}
.muted{color:#888}.legend span{margin-right:1.2em}.point{background:#f7f7f7;padding:.5em;min-height:2.6em;
font-size:.85em}svg{max-width:100%;height:auto}"""


def render(result) -> str:
    """The report page as one HTML string."""
    b = result.baseline
    best = result.best()
    s = result.settings or {}
    name, loss = result.metric_name, result.loss_label
    summary = [
        ("strategy", result.strategy), ("backend", result.backend), ("clusterer", result.clusterer or "-"),
        ("approximation", result.approximation), ("layers of interest", len(result.layers)),
        ("metric", f"{name}, {result.direction} (compared with "
                   f"{'the uncompressed model' if result.metric.get('needs_reference') else 'the labels'})"),
        (f"baseline {name}", result.fmt_value(b.accuracy)), ("baseline size", f"{b.bits} bits"),
        ("target", f"{s.get('target')} (max {loss} {result.fmt_loss(s.get('max_accuracy_loss'))})"),
        ("scorings", result.scorings), ("total time", f"{(result.timings or {}).get('total', 0):.1f} s"),
        ("best meeting the target", ("none" if best is None else
         f"CR {best.compression_rate:.2f}, {name} {result.fmt_value(best.accuracy)}, {loss} "
         f"{result.fmt_loss(best.accuracy_loss)}") + f" (decided on {result.best_basis()})"),
    ]
    if result.unused_layers:
        summary.append(("left out (cannot influence the output)", ", ".join(result.unused_layers)))
    test = any(c.test_accuracy is not None for c in result.front)
    front_head = ["#", "CR", name, loss, "target", "measured on"]
    front_head += [f"test {name}", f"test {loss}", "test target"] if test else []
    front_rows = []
    for i, c in enumerate(result.front):
        row = [i, f"{c.compression_rate:.2f}", result.fmt_value(c.accuracy), result.fmt_loss(c.accuracy_loss),
               "yes" if c.meets_target else "no", c.measured_on]
        if test:
            row += (["-", "-", "-"] if c.test_accuracy is None else
                    [result.fmt_value(c.test_accuracy), result.fmt_loss(c.test_accuracy_loss),
                     "yes" if c.test_meets_target else "no"])
        front_rows.append(row + [", ".join(f"{k}={v}" for k, v in c.knobs.items())])
    t = result.timings or {}
    timing_rows = [[k.replace("_", " "), f"{float(v):.2f}"] for k, v in t.items()]
    layer_rows = [[layer.get("name"), "x".join(map(str, layer.get("shape", []))), layer.get("size"),
                   layer.get("kind")] for layer in result.layers]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    settings = rounded({k: v for k, v in s.items() if k != "knob_values"})
    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>wsx report: {html.escape(result.strategy)} on {html.escape(result.backend)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>wsx exploration report</h1>{_table(None, summary)}",
        f"<ul>{notes}</ul>" if notes else "",
        f"<h2>Front: {html.escape(name)} {html.escape(loss)} ({html.escape(result.direction)}) against "
        "compression rate</h2>",
        front_svg(result, _knob_name(result)) or _img(None, "front"),
        _table(front_head + ["knobs"], front_rows),
        "<h2>Per-layer k of the chosen candidates</h2>",
        "<p>One bar per layer and chosen candidate (the front's target-meeting ones, highest CR first); "
        "layers a candidate leaves untouched have no bar.</p>", _img(k_figure(result), "per-layer k"),
        "<h2>Layer sensitivity (layer-wise step)</h2>",
        f"<p>The {html.escape(name)} {html.escape(result.metric.get('loss', 'AL'))} "
        f"({html.escape(result.direction)}) when only this layer is shared, per knob value (dashed: the "
        "target; ringed: the values kept for the combination step).</p>",
        _img(sensitivity_figure(result), "layer sensitivity"),
        "<h2>Where the time went</h2>", _img(timing_figure(result), "timing"),
        _table(["part", "seconds"], timing_rows),
        "<h2>Layers of interest</h2>", _table(["name", "shape", "weights", "kind"], layer_rows),
        "<h2>Settings</h2>", f"<pre>{html.escape(json.dumps(settings, indent=1, default=str))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def rounded(value, digits: int = 4):
    """``value`` with every float rounded to ``digits`` significant digits (for display)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def write_report(result, path: str | Path) -> Path:
    """Write ``report.html`` for ``result`` at ``path`` (atomically)."""
    from .files import write_text

    return write_text(path, render(result))
