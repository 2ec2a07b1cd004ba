"""The benchmark problems: a trained model, the data a search scores on, and the test data the
final front is measured on.

- ``lenet5-digits``: the embedded LeNet-5 on scikit-learn's digits. Only 540 held-out images exist,
  so the search and the final measurement both use them (the search scores all 540: below the
  engine's 1000-sample minimum subset).
- ``fashion-mnist``: LeNet-5 trained by ``benchmarks/fashion_mnist.py``; the search scores a seeded
  half (5 000 images, the count the thesis' 10 % of ImageNet's validation set gives) of the
  10 000-image validation split (held out of the training file) and the front is measured on the
  untouched 10 000 test images. With 1 000 images (10 %) top-1's standard error (~1 pp) exceeds
  the whole allowed loss (0.88 pp) and the search is mostly noise.
- ``fashion-resnet20``: the same data with the ResNet-20 of ``benchmarks/resnet20_fashion.py``
  (21 convolutions and a linear layer, ~270 k weights): a non-toy model with real accuracy.

Each problem may have an exhaustive front (``data/<name>-exhaustive-front.csv``, written by
``exhaustive.py``) against which IGD is computed.

The zero-argument functions at the end name the problems' parts for ``wsx bench --model
benchmarks.strategies.problems:fashion_model --data ...:fashion_val --test-data ...:fashion_test``
(run from the repository root); ``bench_arguments(name)`` gives each problem's ``wsx.bench`` arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"


@dataclass
class BenchProblem:
    name: str
    model: Any
    data: tuple            # what the search scores (a seeded subset of it)
    test_data: tuple       # what the final front is measured on
    subset: Any            # explore(subset=...)
    note: str = ""

    @property
    def exhaustive_front(self) -> Path:
        return exhaustive_front_path(self.name)


def exhaustive_front_path(name: str) -> Path:
    return DATA / f"{name}-exhaustive-front.csv"


def _fashion_module():
    from benchmarks import fashion_mnist

    return fashion_mnist


def load(name: str) -> BenchProblem:
    if name == "lenet5-digits":
        import wsx

        model, data = wsx.zoo.load("lenet5-digits", framework="torch", split="test")
        return BenchProblem(name, model, data, data, subset=None,
                            note="search and final measurement on the same 540 held-out digits")
    if name == "fashion-mnist":
        fm = _fashion_module()
        model, val = fm.load("torch", split="val")
        _, test = fm.load("torch", split="test")
        return BenchProblem(name, model, val, test, subset=0.5,
                            note="search on a seeded 5000-image subset of the 10 000 validation images "
                                 "(unless --subset says otherwise); front measured on the 10 000 test images")
    if name == "fashion-resnet20":
        from benchmarks import resnet20_fashion

        model, val = resnet20_fashion.load("val")
        return BenchProblem(name, model, val, resnet20_fashion.fashion_mnist.split("test"), subset=0.5,
                            note="ResNet-20 trained by benchmarks/resnet20_fashion.py (~270 k weights); splits "
                                 "and subset as fashion-mnist")
    raise ValueError(f"unknown benchmark problem {name!r}; use one of {NAMES}")


NAMES = ("lenet5-digits", "fashion-mnist", "fashion-resnet20")


# -- for `wsx bench --model MODULE:ATTR` and wsx.bench ----------------------------------------------
@lru_cache(maxsize=None)
def _loaded(name: str) -> BenchProblem:
    return load(name)


def digits_model():
    return _loaded("lenet5-digits").model


def digits_data():
    return _loaded("lenet5-digits").data


def fashion_model():
    return _loaded("fashion-mnist").model


def fashion_val():
    return _loaded("fashion-mnist").data


def fashion_test():
    return _loaded("fashion-mnist").test_data


def resnet20_model():
    return _loaded("fashion-resnet20").model


def resnet20_val():
    return _loaded("fashion-resnet20").data


def resnet20_test():
    return _loaded("fashion-resnet20").test_data


def bench_arguments(name: str) -> dict:
    """(model, data) and the keyword arguments wsx.bench takes for problem ``name``."""
    p = _loaded(name)
    front = exhaustive_front_path(name)
    return {"model": p.model, "data": p.data, "test_data": None if p.test_data is p.data else p.test_data,
            "subset": p.subset, "exhaustive_front": str(front) if front.exists() else None, "name": name}
