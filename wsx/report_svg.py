"""The report's explorable front: an inline SVG (no script or file from elsewhere) where hovering a
point shows its knob per layer, metric value and CR (a ``<title>`` tooltip, and a panel beside the
chart filled by a few lines of inline JavaScript)."""
from __future__ import annotations

import html

MAX_HISTORY = 3000  # history points drawn (evenly thinned above this: the page stays light)
W, H = 760, 430
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 48

SCRIPT = """<script>
(function(){var p=document.getElementById('wsx-point');document.querySelectorAll('#wsx-front [data-i]')
.forEach(function(e){e.addEventListener('mouseenter',function(){p.textContent=e.getAttribute('data-i');
e.setAttribute('stroke','#000');});e.addEventListener('mouseleave',function(){e.removeAttribute('stroke');});});})();
</script>"""


def _ticks(lo: float, hi: float) -> list[float]:
    from matplotlib.ticker import MaxNLocator

    return [t for t in MaxNLocator(nbins=8).tick_values(lo, hi) if lo <= t <= hi]


def describe(c, knob: str = "k", result=None) -> str:
    """One candidate in words: CR, metric value and loss (search or full data, test when measured),
    and its knob per layer; ``result`` names the metric and its loss (top-1 / AL in pp without one)."""
    name = result.metric_name if result is not None else "top1"
    metric = result.metric if result is not None else {"loss": "AL", "unit": "pp"}

    def value(v):
        return result.fmt_value(v) if result is not None else f"{v:.4f}"

    def lost(v):  # "AL 0.25 pp", "increase 0.0031"
        text = result.fmt_loss(v) if result is not None else f"{v:.2f}"
        return f"{metric.get('loss', 'AL')} {text}" + (f" {metric['unit']}" if metric.get("unit") else "")

    parts = [f"CR {c.compression_rate:.2f}", f"{name} {value(c.accuracy)} ({lost(c.accuracy_loss)}, "
             f"{c.measured_on} data{', meets the target' if c.meets_target else ', misses the target'})"]
    if c.test_accuracy is not None:
        parts.append(f"test {name} {value(c.test_accuracy)} ({lost(c.test_accuracy_loss)}"
                     f"{', meets the target' if c.test_meets_target else ', misses the target'})")
    parts.append(", ".join(f"{name} {knob}={value}" for name, value in c.knobs.items()) or "no layer changed")
    return " | ".join(parts)


def front_svg(result, knob: str = "k") -> str | None:
    """The front, the test front, the scored candidates and the target as one interactive SVG."""
    from .plot import y_range

    hist, front = list(result.history), sorted(result.front, key=lambda c: c.compression_rate)
    if not hist and not front:
        return None
    if len(hist) > MAX_HISTORY:
        step = len(hist) / MAX_HISTORY
        hist = [hist[int(i * step)] for i in range(MAX_HISTORY)]
    max_al = (result.settings or {}).get("max_accuracy_loss")
    y0, y1 = y_range(result, max_al)
    crs = [c.compression_rate for c in hist + front]
    x0, x1 = min(crs + [1.0]), max(crs + [1.0])
    x0, x1 = x0 - 0.03 * (x1 - x0 or 1), x1 + 0.03 * (x1 - x0 or 1)

    def sx(v):
        return LEFT + (v - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    def sy(v):
        return TOP + (y1 - min(max(v, y0), y1)) / (y1 - y0) * (H - TOP - BOTTOM)

    out = [f'<svg id="wsx-front" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
           f'height="{H}" font-family="system-ui,sans-serif" font-size="11">']
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#eee"/>'
                   f'<text x="{sx(t):.1f}" y="{H - BOTTOM + 15}" text-anchor="middle">{t:g}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>'
                   f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="none" '
               'stroke="#999"/>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">compression rate (x)</text>'
               f'<text transform="translate(16,{(TOP + H - BOTTOM) / 2}) rotate(-90)" text-anchor="middle">'
               f'{html.escape(f"{result.metric_name} {result.loss_label}, {result.direction}")}</text>')
    if max_al is not None and y0 <= max_al <= y1:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(max_al):.1f}" y2="{sy(max_al):.1f}" '
                   f'stroke="#c03030" stroke-dasharray="5,4"><title>target: {html.escape(result.loss_label)} '
                   f'{result.fmt_loss(max_al)}</title></line>')

    def point(c, y, shape, color, size):
        info = html.escape(describe(c, knob, result), quote=True)
        x, y = sx(c.compression_rate), sy(y)
        if shape == "square":
            return (f'<rect data-i="{info}" x="{x - size:.1f}" y="{y - size:.1f}" width="{2 * size}" '
                    f'height="{2 * size}" fill="{color}"><title>{info}</title></rect>')
        return f'<circle data-i="{info}" cx="{x:.1f}" cy="{y:.1f}" r="{size}" fill="{color}"><title>{info}</title></circle>'

    for c in hist:
        out.append(point(c, c.accuracy_loss, "circle", "#9ab8e0" if c.meets_target else "#e8a0a0", 2.5))
    if front:
        line = " ".join(f"{sx(c.compression_rate):.1f},{sy(c.accuracy_loss):.1f}" for c in front)
        out.append(f'<polyline points="{line}" fill="none" stroke="#1f3f8f" stroke-width="1.5"/>')
        out += [point(c, c.accuracy_loss, "circle", "#1f3f8f", 4.5) for c in front]
        test = [c for c in front if c.test_accuracy_loss is not None]
        if test:
            line = " ".join(f"{sx(c.compression_rate):.1f},{sy(c.test_accuracy_loss):.1f}" for c in test)
            out.append(f'<polyline points="{line}" fill="none" stroke="#2a8f3f" stroke-dasharray="4,3"/>')
            out += [point(c, c.test_accuracy_loss, "square", "#2a8f3f", 4) for c in test]
    out.append("</svg>")
    measured = front[0].measured_on if front else "full"
    legend = ('<p class=legend><span style="color:#1f3f8f">&#9679; front (' + html.escape(measured) + ' data)</span> '
              + ('<span style="color:#2a8f3f">&#9632; front on test data</span> '
                 if any(c.test_accuracy_loss is not None for c in front) else '')
              + '<span style="color:#9ab8e0">&#9679; scored, meets target</span> '
              '<span style="color:#e8a0a0">&#9679; scored, misses target</span> '
              '<span style="color:#c03030">- - target</span>'
              + (f' <span class=muted>({len(result.history)} scored; {MAX_HISTORY} drawn)</span>'
                 if len(result.history) > MAX_HISTORY else '') + '</p>')
    panel = (f'<p id="wsx-point" class="point">Hover a point: its CR, {html.escape(result.metric_name)} and loss, and its '
             f'{html.escape(knob)} per layer.</p>')
    return "".join(out) + legend + panel + SCRIPT
