"""ResNet-20 on Fashion-MNIST: a non-toy CNN with real accuracy for the benchmarks (~270 k weights).

    python benchmarks/resnet20_fashion.py train [--epochs 4] [--threads 2]   # writes data/resnet20_fashion.safetensors
    python benchmarks/resnet20_fashion.py eval                                # accuracy on val and test

``load(split="test") -> (model, (x, y))``: the trained torch model (eval mode) and the arrays of a
split of ``fashion_mnist.split`` (x float32 N x 1 x 28 x 28 in [0, 1], y int64).

The network is He et al.'s CIFAR ResNet-20 (a 3x3 stem, three stages of three basic blocks with 16,
32 and 64 channels, stride 2 between stages, projection shortcuts by 1x1 convolution, global average
pooling, one linear layer) on 1-channel 28 x 28 images: 21 convolutions and one linear layer of
interest. The data come from the Debian package ``dataset-fashion-mnist``; nothing is downloaded.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if __package__:
    from . import fashion_mnist
else:  # run as a script
    sys.path.insert(0, str(HERE))
    import fashion_mnist

WEIGHTS = HERE / "data" / "resnet20_fashion.safetensors"
WIDTHS = (16, 32, 64)
BLOCKS = 3


def torch_module():
    """A freshly initialised ResNet-20 for 1 x 28 x 28 inputs and 10 classes."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet20(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, WIDTHS[0], 3, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(WIDTHS[0])
            layers, cin = [], WIDTHS[0]
            for stage, width in enumerate(WIDTHS):
                for i in range(BLOCKS):
                    layers.append(Block(cin, width, 2 if stage > 0 and i == 0 else 1))
                    cin = width
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(WIDTHS[-1], 10)

        def forward(self, x):
            x = self.layers(torch.relu(self.bn(self.conv(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return ResNet20()


def load(split: str = "test"):
    """The trained ResNet-20 (eval mode) and the (x, y) arrays of ``split``."""
    import torch
    from safetensors.torch import load_file

    if not WEIGHTS.exists():
        raise FileNotFoundError(f"{WEIGHTS} is missing: run `python benchmarks/resnet20_fashion.py train`")
    model = torch_module()
    model.load_state_dict(load_file(str(WEIGHTS)))
    return model.eval(), fashion_mnist.split(split)


def train(epochs: int = 4, seed: int = 0, threads: int = 2, out: Path = WEIGHTS) -> dict:
    """SGD with momentum and a one-cycle learning rate on the 50 000 training images (light
    augmentation: random shifts of up to 2 pixels and horizontal flips), deterministic for a seed."""
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x_tr, y_tr = (torch.from_numpy(a) for a in fashion_mnist.split("train"))
    model = torch_module()
    batch = 128
    steps = epochs * ((len(y_tr) + batch - 1) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=steps, pct_start=0.25)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_tr), generator=gen)
        for i in range(0, len(perm), batch):
            sel = perm[i:i + batch]
            xb = torch.nn.functional.pad(x_tr[sel], (2, 2, 2, 2))
            dx, dy = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
            xb = xb[:, :, dy:dy + 28, dx:dx + 28]
            if bool(torch.randint(0, 2, (1,), generator=gen)):
                xb = xb.flip(3)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), y_tr[sel]).backward()
            opt.step()
            sched.step()
        model.eval()
        val = fashion_mnist.accuracy(model, *fashion_mnist.split("val"))
        print(f"epoch {epoch + 1}/{epochs}: val accuracy {val:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
    accs = {s: fashion_mnist.accuracy(model, *fashion_mnist.split(s)) for s in ("val", "test")}
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out),
              metadata={"model": "resnet20-fashion-mnist", "epochs": str(epochs), "seed": str(seed),
                        "threads": str(threads), "train_seconds": f"{seconds:.0f}",
                        "conv_linear_weights": str(weights),
                        "val_accuracy": f"{accs['val']:.4f}", "test_accuracy": f"{accs['test']:.4f}"})
    print(f"val accuracy {accs['val']:.4f}, test accuracy {accs['test']:.4f}, {weights} conv/linear weights, "
          f"{seconds:.0f} s on {threads} threads; weights written to {out}")
    return accs


def main(argv=None) -> None:
    fashion_mnist.run_cli(argv, description=__doc__.splitlines()[0], name="ResNet-20", weights=WEIGHTS,
                          train=train, load=load, epochs=4, options=(("--threads", {"type": int, "default": 2}),))


if __name__ == "__main__":
    main()
