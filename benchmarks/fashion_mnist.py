"""LeNet-5 on Fashion-MNIST: the second benchmark problem (28x28 grey images, 10 classes).

    python benchmarks/fashion_mnist.py train [--epochs 6] [--seed 0]   # writes data/lenet5_fashion.safetensors
    python benchmarks/fashion_mnist.py eval                             # accuracy on val and test

``load(framework="torch", split="test") -> (model, (x, y))`` with x float32 NCHW in [0, 1] and y int64.
Splits: "train" (50 000 images), "val" (10 000 images held out of the training file, seeded: the
search scores on it) and "test" (the 10 000 official test images, kept for the final measurement).

The images come from the Debian package ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``; files under /usr/share/datasets/fashion-mnist, or $WSX_FASHION_MNIST).
Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import numpy as np

from wsx.zoo import lenet5

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "data" / "lenet5_fashion.safetensors"
DATA_DIR = Path(os.environ.get("WSX_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
VAL_SIZE = 10_000
SPLIT_SEED = 0
CONVS = ((5, 2), (5, 0), (5, 0))  # (kernel size, padding) of conv1, conv2, conv3


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared shape (unsigned bytes only)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (DATA_DIR / name).exists():
            return DATA_DIR / name
    raise FileNotFoundError(f"{DATA_DIR / stem}[.gz] is missing: apt-get install dataset-fashion-mnist, "
                            "or point WSX_FASHION_MNIST at a folder holding the IDX files")


def split(name: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(x float32 N x 1 x 28 x 28 in [0, 1], y int64) for "train", "val" or "test"."""
    if name not in ("train", "val", "test"):
        raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
    images, labels = (read_idx(_find(stem)) for stem in FILES["test" if name == "test" else "train"])
    if name != "test":
        perm = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
        idx = np.sort(perm[:VAL_SIZE] if name == "val" else perm[VAL_SIZE:])
        images, labels = images[idx], labels[idx]
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return np.ascontiguousarray(x), labels.astype(np.int64)


def torch_module():
    """LeNet-5: conv 6@5x5 pad 2 -> pool -> conv 16@5x5 -> pool -> conv 120@5x5 -> fc 84 -> fc 10 (ReLU).

    Weight counts 150 / 2 400 / 48 000 / 10 080 / 840.
    """
    return lenet5.torch_module(CONVS)


def load(framework: str = "torch", split: str = "test"):
    """The trained LeNet-5 (eval mode) and the (x, y) arrays of ``split``."""
    if framework != "torch":
        raise ValueError(f"framework={framework!r}: the Fashion-MNIST LeNet-5 exists for torch only")
    from safetensors.numpy import load_file

    if not WEIGHTS.exists():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run `python benchmarks/fashion_mnist.py train`")
    return lenet5.torch_model(load_file(str(WEIGHTS)), CONVS), globals()["split"](split)


def accuracy(model, x: np.ndarray, y: np.ndarray, batch: int = 2000) -> float:
    import torch

    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(x[i:i + batch])).argmax(1).numpy()
                               for i in range(0, len(x), batch)])
    return float((pred == y).mean())


def train(epochs: int = 6, seed: int = 0, out: Path = WEIGHTS) -> dict:
    """Train deterministically on CPU (Adam, batch 128, seed) and write safetensors. Returns accuracies."""
    import torch
    from safetensors.numpy import save_file

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr = (torch.from_numpy(a) for a in split("train"))
    model = torch_module()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_tr), generator=gen)
        for i in range(0, len(perm), 128):
            sel = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x_tr[sel]), y_tr[sel]).backward()
            opt.step()
        print(f"epoch {epoch + 1}/{epochs} done", flush=True)
    model.eval()
    accs = {s: accuracy(model, *split(s)) for s in ("val", "test")}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v.detach().numpy()) for k, v in model.state_dict().items()}, str(out),
              metadata={"model": "lenet5-fashion-mnist", "epochs": str(epochs), "seed": str(seed),
                        "val_accuracy": f"{accs['val']:.4f}", "test_accuracy": f"{accs['test']:.4f}"})
    print(f"val accuracy {accs['val']:.4f}, test accuracy {accs['test']:.4f}; weights written to {out}")
    return accs


def run_cli(argv, *, description: str, name: str, weights: Path, train, load, epochs: int, options=()) -> None:
    """The train / eval command line of a Fashion-MNIST benchmark model (``options``: extra
    (flag, argparse keywords) for train, passed to ``train`` by name)."""
    ap = argparse.ArgumentParser(description=description)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help=f"train {name} and write data/{weights.name}")
    t.add_argument("--epochs", type=int, default=epochs)
    t.add_argument("--seed", type=int, default=0)
    for flag, kwargs in options:
        t.add_argument(flag, **kwargs)
    t.add_argument("--out", type=Path, default=weights)
    sub.add_parser("eval", help="print the accuracy on val and test")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        train(**{k: v for k, v in vars(args).items() if k != "cmd"})
    else:
        model, _ = load()
        for s in ("val", "test"):
            print(f"{s}: {accuracy(model, *split(s)):.4f}")


def main(argv=None) -> None:
    run_cli(argv, description=__doc__.splitlines()[0], name="LeNet-5", weights=WEIGHTS, train=train, load=load,
            epochs=6)


if __name__ == "__main__":
    main()
