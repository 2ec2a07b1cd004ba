"""Weight sharing, pruning and quantization tuned by the same engine: the fronts divide-and-conquer
finds for each approximation at an equal scoring budget, on one plot.

    python benchmarks/approximations/bench_approximations.py               # LeNet-5 / Fashion-MNIST
    python benchmarks/approximations/bench_approximations.py --model digits --budget 600   # quick

The search scores on the validation split (a seeded subset of it), the front is re-scored on all of
it and then on the test split, which the search never saw; "best CR" is the highest compression rate
whose *test* accuracy keeps the target (MLPerf heavy: 99 % of the test baseline). Writes
``results.csv`` (every front candidate), ``results.md`` (table, settings and the command) and
``fronts.png`` next to this file (or under ``--out``).
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPROXIMATIONS = ("weight-sharing", "pruning", "quantization", "weight-sharing+pruning")
COLOURS = {"weight-sharing": "#1f3f8f", "pruning": "#c0392b", "quantization": "#2a8f3f",
           "weight-sharing+pruning": "#8e44ad"}


def load_model(name: str):
    """(model, search data, test data, description)."""
    import wsx

    if name == "fashion":
        sys.path.insert(0, str(HERE.parent))
        import fashion_mnist

        model, val = fashion_mnist.load("torch", "val")
        _, test = fashion_mnist.load("torch", "test")
        return model, val, test, (f"LeNet-5 / Fashion-MNIST (search on val, {len(val[1])} images; "
                                  f"test {len(test[1])} images)")
    model, train = wsx.zoo.load("lenet5-digits", framework="torch", split="train")
    _, test = wsx.zoo.load("lenet5-digits", framework="torch", split="test")
    return model, train, test, (f"embedded LeNet-5 / sklearn digits (search on its train split, "
                                f"{len(train[1])} images; test {len(test[1])} images)")


def run_one(name: str, model, val, test, args):
    import wsx

    strategy = wsx.plugins.strategies()["divide-and-conquer"](pop_size=args.pop_size,
                                                              generations=args.generations)
    t0 = time.perf_counter()
    result = wsx.explore(model, val, approximation=name, strategy=strategy, target=args.target,
                         budget=args.budget, subset=args.subset, seed=args.seed, test_data=test,
                         progress=False)
    return result, time.perf_counter() - t0


def best_on_test(result):
    legal = [c for c in result.front if c.test_meets_target]
    return max(legal, key=lambda c: c.compression_rate) if legal else None


def knob_text(knobs: dict) -> str:
    return ", ".join(f"{name.rsplit('.', 1)[0]}={value}" for name, value in knobs.items())


def write_csv(path: Path, results: dict) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["approximation", "compression_rate", "size_bits", "val_accuracy", "val_accuracy_loss_pp",
                    "val_meets_target", "test_accuracy", "test_accuracy_loss_pp", "test_meets_target", "knobs",
                    "scorings", "test_baseline"])
        for name, (r, _) in results.items():
            for c in r.front:
                w.writerow([name, f"{c.compression_rate:.4f}", c.size_bits, f"{c.accuracy:.4f}",
                            f"{c.accuracy_loss:.3f}", c.meets_target, f"{c.test_accuracy:.4f}",
                            f"{c.test_accuracy_loss:.3f}", c.test_meets_target,
                            json.dumps({k: v for k, v in c.knobs.items()}), r.scorings,
                            f"{r.baseline.test_accuracy:.4f}"])


def write_md(path: Path, results: dict, description: str, command: str, args) -> None:
    first = next(iter(results.values()))[0]
    lines = [
        "# Weight sharing, pruning and quantization by the same engine",
        "",
        f"{description}. Strategy divide-and-conquer (pop_size {args.pop_size}, generations "
        f"{args.generations}) with the same scoring budget ({args.budget}) for every approximation; "
        f"subset {args.subset}, seed {args.seed}, target {args.target}, B = 32 bits.",
        f"Baseline: val accuracy {first.baseline.accuracy:.4f}, test accuracy {first.baseline.test_accuracy:.4f}, "
        f"{first.baseline.bits} bits in the layers of interest.",
        "",
        "Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        "Best CR = the highest compression rate on the front whose **test** top-1 keeps the target.",
        "",
        "| approximation | scorings | time (s) | front size | best CR (test, " + args.target
        + ") | its test AL (pp) | its val AL (pp) | knobs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, (r, seconds) in results.items():
        b = best_on_test(r)
        if b is None:
            lines.append(f"| {name} | {r.scorings} | {seconds:.0f} | {len(r.front)} | none meets it | | | |")
        else:
            lines.append(f"| {name} | {r.scorings} | {seconds:.0f} | {len(r.front)} | **{b.compression_rate:.2f}** "
                         f"| {b.test_accuracy_loss:.2f} | {b.accuracy_loss:.2f} | {knob_text(b.knobs)} |")
    lines += [
        "",
        "Size accounting (per layer of W weights, B = 32): weight sharing W·ceil(log2 k) + k·B; pruning the "
        "cheapest of dense W·B, bitmap W + nnz·B, coordinate list nnz·(ceil(log2 W) + B); quantization "
        "W·b + 2·B (one scale and zero-point per tensor); weight sharing + pruning the cheapest of "
        "W·ceil(log2(k+1)), W + nnz·ceil(log2 k), nnz·(ceil(log2 W) + ceil(log2 k)), each + k·B. "
        "See the plugins' module docstrings.",
        "",
        f"Machine: {platform.machine()}, {platform.system()}, Python {platform.python_version()}; "
        "timings are wall-clock seconds on a shared machine.",
        "",
        "![fronts](fronts.png)",
        "",
    ]
    path.write_text("\n".join(lines))


def plot(path: Path, csv_path: Path, title: str, target_fraction: float) -> None:
    """fronts.png from results.csv: each front's test AL against CR, its best CR starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name in dict.fromkeys(r["approximation"] for r in rows):
        front = sorted((r for r in rows if r["approximation"] == name), key=lambda r: float(r["compression_rate"]))
        colour = COLOURS.get(name)
        ax.plot([float(r["compression_rate"]) for r in front], [float(r["test_accuracy_loss_pp"]) for r in front],
                "o-", ms=4, color=colour, label=f"{name} ({front[0]['scorings']} scorings)")
        legal = [r for r in front if r["test_meets_target"] == "True"]
        if legal:
            b = max(legal, key=lambda r: float(r["compression_rate"]))
            ax.plot([float(b["compression_rate"])], [float(b["test_accuracy_loss_pp"])], "*", ms=14, color=colour,
                    label=f"  best {name}: CR {float(b['compression_rate']):.2f}")
    max_al = 100.0 * (1 - target_fraction) * float(rows[0]["test_baseline"])
    ax.axhline(max_al, color="black", lw=1, ls="--", label=f"MLPerf heavy bound ({max_al:.2f} pp)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1, 1.5, 2, 3, 4, 6, 8, 10, 12, 15, 20, 30, 40]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("compression rate (x, log scale)")
    ax.set_ylabel("test accuracy loss (pp)")
    ax.set_ylim(-0.5, max(max_al * 4, 2.0))
    ax.set_title(f"divide-and-conquer fronts at equal budget\n{title}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["fashion", "digits"], default="fashion",
                    help="LeNet-5 on Fashion-MNIST (benchmarks/fashion_mnist.py) or the embedded digits one")
    ap.add_argument("--approximations", default=",".join(APPROXIMATIONS),
                    help="comma-separated registered approximation names")
    ap.add_argument("--budget", type=int, default=1500, help="scorings per approximation (equal for all)")
    ap.add_argument("--pop-size", type=int, default=50)
    ap.add_argument("--generations", type=int, default=100)
    ap.add_argument("--subset", type=float, default=0.1, help="fraction of the search split scored per candidate")
    ap.add_argument("--target", default="mlperf-heavy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--replot", action="store_true", help="only redraw fronts.png from --out's results.csv")
    args = ap.parse_args(argv)

    from wsx.metrics import resolve_target

    if args.replot:
        title = "LeNet-5 / Fashion-MNIST" if args.model == "fashion" else "embedded LeNet-5 / sklearn digits"
        plot(args.out / "fronts.png", args.out / "results.csv", title, resolve_target(args.target))
        return

    command = "python benchmarks/approximations/bench_approximations.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    model, val, test, description = load_model(args.model)
    results = {}
    for name in args.approximations.split(","):
        results[name] = run_one(name, model, val, test, args)
        b = best_on_test(results[name][0])
        print(f"{name}: {results[name][0].scorings} scorings, {results[name][1]:.0f} s, best CR on test "
              f"{b.compression_rate if b else float('nan'):.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "results.csv", results)
    write_md(args.out / "results.md", results, description, command.strip(), args)
    plot(args.out / "fronts.png", args.out / "results.csv", description, resolve_target(args.target))
    print(f"wrote {args.out / 'results.md'}, results.csv and fronts.png")


if __name__ == "__main__":
    main()
