"""The GPU checks of wsx, in one run sized for under 8 minutes on one H100 (``check.sh`` runs this).

    python benchmarks/gpu/check.py [--images 5000] [--size 96] [--device cuda] [--sweep-seconds 200]

A ResNet-50-sized network (``transformers.ResNetConfig()``'s defaults: bottleneck blocks 3-4-6-3,
25.6 M weights, random init) on ``--images`` synthetic images, labels its own top-1 predictions, all
on the GPU. Sections, each printed as soon as it is done:

1. population against one-by-one scoring: 16 candidates of a middle layer (k = 2..17) through the
   folded population forward, whole-model ``torch.func.vmap`` and the default (``vmap="auto"``),
   each against one-by-one forwards: seconds per candidate and the largest score difference;
2. reduced precision: ``precision="bf16"`` and ``"fp16"`` against float32: the backend's agreement
   report (top-1 agreement, cosine, largest difference) and seconds per candidate;
3. clusterers: ``torch`` (on the GPU) and ``cupy`` against ``sorted1d`` (CPU) on the largest layer
   (2.36 M weights) and a 1.28 M-weight slice of it, k in 4, 16, 64, 256: seconds and inertia ratio;
4. the layer-wise step: every layer of interest at one k per index bit-width (2, 4, ..., 256), one
   ``score`` call per layer with the defaults (prefix cache, ``vmap="auto"``), until
   ``--sweep-seconds``; prints layers done, scorings, seconds per scoring and the projected time of
   all layers.

``--device cpu --images 64 --size 32 --sweep-seconds 20`` is a dry run of the same code on CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time

import numpy as np


def say(*parts) -> None:
    print(*parts, flush=True)


def build(images: int, size: int, device: str):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.ResNetForImageClassification(transformers.ResNetConfig(num_labels=1000)).eval().to(device)
    x = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        y = torch.cat([model(x[i:i + 250].to(device)).logits.argmax(-1).cpu() for i in range(0, images, 250)])
    return model, (x.numpy(), y.numpy())


def backend(model, data, device, **kw):
    import wsx

    return wsx.plugins.backends()["torch"](model, data, output="logits", device=device, batch_size=500, **kw)


def timed(be, pop) -> tuple[float, np.ndarray]:
    import torch

    be.score(pop)  # warm-up: traces, checks, vmap="auto"'s choice, cuDNN autotuning
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = be.score(pop)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / len(pop), np.asarray(out)


def population(be, layer: str, ks) -> list:
    from wsx.engine import resolve_clusterer
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    info = next(i for i in be.layers() if i.name == layer)
    parts = WeightSharing().apply_many(be.get_weights(layer), list(ks), layer=info, clusterer=resolve_clusterer(None, 0))
    return [{layer: p.weights} for p in parts]


def section_population(model, data, device) -> None:
    say("\n## 1. population against one-by-one scoring (16 candidates of a middle layer)")
    plain = backend(model, data, device, vmap=False, prefix_cache=False)
    layers = plain.layers()
    layer = layers[len(layers) // 2].name
    pop = population(plain, layer, range(2, 18))
    ref_s, ref = timed(plain, pop)
    say(f"layer {layer}; one-by-one: {ref_s:.4f} s per candidate")
    for label, kw in (("folded", dict(vmap=True, fold_population=True)), ("whole-model vmap", dict(vmap=True, fold_population=False)),
                      ("default (auto)", {})):
        be = backend(model, data, device, prefix_cache=False, **kw)
        s, got = timed(be, pop)
        say(f"{label}: {s:.4f} s per candidate ({ref_s / s:.2f}x one-by-one), largest score difference "
            f"{np.abs(got - ref).max():.2e}; stats {dict(be.stats_)}; fold_error_ {be.fold_error_}; "
            f"vmap_error_ {be.vmap_error_}; vmap_choice_ {be.vmap_choice_}")
        be.close()
    plain.close()


def section_precision(model, data, device) -> None:
    say("\n## 2. reduced precision against float32 (8 candidates of a middle layer, defaults otherwise)")
    ref_be = backend(model, data, device)
    layers = ref_be.layers()
    pop = population(ref_be, layers[len(layers) // 2].name, range(2, 10))
    ref_s, ref = timed(ref_be, pop)
    say(f"fp32: {ref_s:.4f} s per candidate")
    for precision in ("bf16", "fp16"):
        try:
            be = backend(model, data, device, precision=precision)
            s, got = timed(be, pop)
            say(f"{precision}: {s:.4f} s per candidate ({ref_s / s:.2f}x fp32), largest score difference from fp32 "
                f"{np.abs(got - ref).max():.4f}; {be.notes()}")
            be.close()
        except Exception as exc:  # noqa: BLE001 - e.g. fp16 on CPU: say so and go on
            say(f"{precision}: not run ({type(exc).__name__}: {exc})")
    ref_be.close()


def section_clusterers(model, device) -> None:
    import wsx

    say("\n## 3. clusterers against sorted1d (seconds, best of 3 after a warm-up; inertia / sorted1d's)")
    table = wsx.plugins.clusterers()
    w = max((p.detach().cpu().numpy().ravel() for p in model.parameters()), key=np.size).astype(np.float32)
    methods = {"sorted1d": table["sorted1d"](seed=0)}
    if table["torch"].available()[0]:
        methods["torch"] = table["torch"](seed=0, device=device)
    ok, why = table["cupy"].available()
    if ok:
        methods["cupy"] = table["cupy"](seed=0)
    else:
        say(f"cupy: not run ({why})")
    for n in (w.size, min(1_280_000, w.size)):
        for k in (4, 16, 64, 256):
            row, base = [], None
            for name, clus in methods.items():
                clus.cluster(w[:n], k)
                best = float("inf")
                for _ in range(3):
                    t = time.perf_counter()
                    c = clus.cluster(w[:n], k)
                    best = min(best, time.perf_counter() - t)
                base = c.inertia if base is None else base
                row.append(f"{name} {best:.4f} s (inertia x{c.inertia / base:.4f})")
            say(f"{n} weights, k={k}: " + "; ".join(row))


def section_sweep(model, data, device, seconds: float) -> None:
    say(f"\n## 4. layer-wise step, one k per bit-width, defaults, {len(data[0])} images (stops after {seconds:.0f} s)")
    be = backend(model, data, device)
    layers = be.layers()
    ks = [2 ** b for b in range(1, 9)]
    done = scorings = 0
    t0 = time.perf_counter()
    clustering = 0.0
    for info in layers:
        t = time.perf_counter()
        pop = population(be, info.name, [k for k in ks if k <= info.size])
        clustering += time.perf_counter() - t
        be.score(pop)
        done, scorings = done + 1, scorings + len(pop)
        if time.perf_counter() - t0 > seconds:
            break
    spent = time.perf_counter() - t0
    say(f"{done} of {len(layers)} layers, {scorings} scorings in {spent:.1f} s ({clustering:.1f} s clustering): "
        f"{spent / scorings:.4f} s per scoring; all layers ~{spent * len(layers) / done:.0f} s; stats {dict(be.stats_)}; "
        f"prefix paths {sorted(set(be.prefix_paths_.values()))}; vmap_choice_ {be.vmap_choice_}")
    be.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--device", default="cuda")
    p.add_argument("--sweep-seconds", type=float, default=200.0)
    args = p.parse_args(argv)
    import torch

    say(f"# wsx GPU check: torch {torch.__version__}, Python {platform.python_version()}, cupy "
        f"{'installed' if importlib.util.find_spec('cupy') else 'not installed'}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        say("no CUDA device is visible to torch (or torch is a CPU build): nothing to check")
        return 0
    if args.device.startswith("cuda"):
        say(f"device: {torch.cuda.get_device_name()}")
    t = time.perf_counter()
    model, data = build(args.images, args.size, args.device)
    say(f"ResNet-50-sized model, {sum(p.numel() for p in model.parameters())} weights, {args.images} images at "
        f"{args.size} px, built in {time.perf_counter() - t:.1f} s")
    section_population(model, data, args.device)
    section_precision(model, data, args.device)
    section_clusterers(model, args.device)
    section_sweep(model, data, args.device, args.sweep_seconds)
    say(f"\ndone in {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
