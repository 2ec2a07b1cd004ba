"""LeNet-5 (or ResNet-20) / Fashion-MNIST: the default exploration's final test CR against the search subset's size.

    python benchmarks/scale/fashion_subset.py --subsets 0.1,0.3 --seeds 0,1,2 [--model resnet20] [--out FILE]

Each run is ``wsx.explore`` with its defaults (divide-and-conquer, knapsack combination) on the
trained LeNet-5 (``benchmarks/fashion_mnist.py``): search on a seeded ``--subsets`` fraction of the
10 000 validation images, the front re-scored on all of them and on the 10 000 test images, one torch
thread. Best CR: the highest CR on the final front meeting mlperf-heavy on all validation images and
on the test split. Sample-forwards: candidates x samples run, search, final re-scoring and test. CPU
seconds are this process's, so parallel runs on a busy machine compare fairly.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def run(subset: float | str, seed: int, name: str = "lenet5") -> dict:
    import wsx
    from benchmarks import fashion_mnist, resnet20_fashion

    model, val = (fashion_mnist if name == "lenet5" else resnet20_fashion).load(split="val")
    t = time.process_time()
    res = wsx.explore(model, val, test_data=fashion_mnist.split("test"), target="mlperf-heavy", seed=seed,
                      subset=subset, progress=False, threads=1)
    legal = [c.compression_rate for c in res.front if c.meets_target and c.test_meets_target]
    return {"subset": subset, "samples": res.settings["subset_samples"], "seed": seed,
            "scorings": len(res.history), "forwards": res.extras["sample_forwards"]["total"],
            "cpu_s": time.process_time() - t, "best_cr": max(legal, default=1.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subsets", default="0.1,0.3")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--model", choices=("lenet5", "resnet20"), default="lenet5",
                   help="the trained LeNet-5 or the ResNet-20 of benchmarks/resnet20_fashion.py")
    p.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = p.parse_args()
    rows = ["| subset | samples | seed | scorings | sample-forwards | CPU s | best test CR |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(rows), flush=True)
    for subset in [s if s == "auto" else float(s) for s in args.subsets.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = run(subset, seed, args.model)
            rows.append(f"| {r['subset']} | {r['samples']} | {r['seed']} | {r['scorings']} | {r['forwards']:,} "
                        f"| {r['cpu_s']:.0f} | {r['best_cr']:.2f} |".replace(",", " "))
            print(rows[-1], flush=True)
    if args.out:
        command = "python benchmarks/scale/fashion_subset.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"`{command}` ({time.strftime('%Y-%m-%d %H:%M')})\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
