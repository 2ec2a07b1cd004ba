"""Train the embedded LeNet-5 on scikit-learn's digits and write its weights (safetensors).

    python -m wsx.zoo.train [--epochs 80] [--out wsx/zoo/lenet5_digits.safetensors]

Deterministic on CPU for a seed. Prints the test accuracy.
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> float:
    import torch
    from safetensors.numpy import save_file

    from . import WEIGHTS, digits_split
    from .lenet5 import torch_module

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(WEIGHTS["lenet5-digits"]))
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    x_tr, y_tr = (torch.from_numpy(a) for a in digits_split("train"))
    x_te, y_te = (torch.from_numpy(a) for a in digits_split("test"))
    model = torch_module()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), 64):
            sel = perm[i:i + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_tr[sel]), y_tr[sel])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x_te).argmax(1) == y_te).float().mean())
    save_file({k: np.ascontiguousarray(v.numpy()) for k, v in model.state_dict().items()}, args.out,
              metadata={"model": "lenet5-digits", "test_accuracy": f"{acc:.4f}", "epochs": str(args.epochs),
                        "seed": str(args.seed)})
    print(f"test accuracy {acc:.4f} on {len(y_te)} images; weights written to {args.out}")
    return acc


if __name__ == "__main__":
    main()
