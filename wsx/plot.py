"""Front plot: every scored candidate and the front, metric loss against CR, with the target line."""
from __future__ import annotations

from pathlib import Path


def plot_front(result, path: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.2), dpi=110)
    hist = result.history
    if hist:
        ok = [c for c in hist if c.meets_target]
        bad = [c for c in hist if not c.meets_target]
        ax.scatter([c.compression_rate for c in bad], [c.accuracy_loss for c in bad], s=8, c="#e8a0a0",
                   label=f"scored, misses target ({len(bad)})", alpha=0.6)
        ax.scatter([c.compression_rate for c in ok], [c.accuracy_loss for c in ok], s=8, c="#9ab8e0",
                   label=f"scored, meets target ({len(ok)})", alpha=0.6)
    front = sorted(result.front, key=lambda c: c.compression_rate)
    if front:
        ax.plot([c.compression_rate for c in front], [c.accuracy_loss for c in front], "o-", c="#1f3f8f",
                label=f"front ({front[0].measured_on} data)", ms=4)
        test = [c for c in front if c.test_accuracy_loss is not None]
        if test:
            ax.plot([c.compression_rate for c in test], [c.test_accuracy_loss for c in test], "s--",
                    c="#2a8f3f", ms=4, label="front on test data")
    max_al = result.settings.get("max_accuracy_loss")
    if max_al is not None:
        ax.axhline(max_al, color="#c03030", lw=1, ls="--", label=f"target ({result.settings.get('target')})")
    ax.set_xlabel("compression rate (x)")
    ax.set_ylabel(f"{result.metric_name} {result.loss_label}, {result.direction}")
    if hist or front:
        ax.set_ylim(*y_range(result, max_al))
    ax.set_title(title or f"{result.strategy} on {result.backend}: {result.metric_name} ({result.direction}), "
                 f"{result.scorings} scorings", fontsize=10)
    ax.grid(alpha=0.3)
    # Below the axes, never over the points.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def y_range(result, max_al: float | None) -> tuple[float, float]:
    """Loss axis limits showing every front point (search, full-data and test measurements) and the
    target; scored candidates far above the front and the target may fall off the top."""
    front_losses = [c.accuracy_loss for c in result.front]
    front_losses += [c.test_accuracy_loss for c in result.front if c.test_accuracy_loss is not None]
    lows = front_losses + [c.accuracy_loss for c in result.history] + [0.0]
    if result.metric.get("unit") != "pp":  # a loss of any scale (MSE, cosine): no fixed margins
        return loss_limits(lows, front_losses, max_al)
    worst = max(front_losses + [max_al or 0.0])
    low = min(lows)
    top = max(2.0, min(worst * 1.5 + 0.5, 20), worst + 0.5)
    margin = 0.05 * (top - low)
    return low - max(margin, 0.2), top


def loss_limits(losses, front_losses, max_loss) -> tuple[float, float]:
    """y range of a loss of any scale: the target and the front in view, far outliers cut off."""
    low = min(losses, default=0.0)
    worst = max(max_loss or 0.0, max(front_losses, default=0.0))
    top = worst if worst > 0 else max(max(losses, default=0.0), 1e-12)
    pad = 0.1 * top
    return min(0.0, low) - pad, top * 1.5 + pad
