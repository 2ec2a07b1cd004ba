"""``wsx demo``: explore the embedded LeNet-5 on scikit-learn's digits."""
from __future__ import annotations

from . import add_common, explore_kwargs, record_config, report

FRAMEWORK = {None: "torch", "torch": "torch", "keras": "keras", "tensorflow": "keras", "jax": "jax"}


def add_parser(sub):
    p = sub.add_parser("demo", help="explore the embedded LeNet-5 / digits model",
                       description="Explore the embedded LeNet-5 trained on scikit-learn's digits and print "
                       "the front. --backend torch|keras|jax picks the framework of the model.")
    add_common(p)
    return p


def run(args) -> int:
    import wsx

    if args.backend not in FRAMEWORK:
        raise wsx.InvalidSettingError(f"--backend {args.backend!r}: the demo model exists for torch, keras and jax")
    model, data = wsx.zoo.load("lenet5-digits", framework=FRAMEWORK[args.backend])
    result = wsx.explore(model, data, **explore_kwargs(args))
    record_config(result, args, backend=args.backend)
    report(result, args)
    return 0
