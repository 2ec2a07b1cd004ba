"""``wsx export RESULTS_DIR --candidate N --out FILE``: write a candidate as a compressed artifact."""
from __future__ import annotations

import json

ZOO_FRAMEWORK = {"torch": "torch", "tensorflow": "keras", "jax": "jax"}


def add_parser(sub):
    p = sub.add_parser(
        "export", help="write a front candidate as a compressed artifact (bit-packed indices + codebooks)",
        description="Write candidate N of the front in RESULTS_DIR (as numbered by the exploration's table) "
        "as a safetensors artifact: bit-packed indices and codebooks per layer, every other tensor as is. "
        "--model MODULE:ATTR imports MODULE and so runs its code: only name modules you trust. Without "
        "--model the embedded zoo model the results were explored on is used (found by fingerprint).")
    p.add_argument("results", metavar="RESULTS_DIR", help="directory an exploration wrote with --out")
    p.add_argument("--candidate", default="best",
                   help="front index N, or 'best' (highest CR meeting the target; default)")
    p.add_argument("--out", required=True, help="artifact file to write (e.g. model.wsx.safetensors)")
    p.add_argument("--model", default=None, help="MODULE:ATTR of the model explored (runs that module's code)")
    p.add_argument("--backend", default=None, help="backend name; default: detected from the model")
    p.add_argument("--json", action="store_true", help="print the artifact's summary as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def pick(result, text: str):
    """The candidate ``--candidate`` names."""
    from wsx.errors import InvalidSettingError

    if text == "best":
        best = result.best()
        if best is None:
            raise InvalidSettingError("no front candidate meets the target; pass --candidate N (see the front "
                                      "table in results.json or report.html)")
        return best
    if not text.isdigit() or int(text) >= len(result.front):
        raise InvalidSettingError(f"--candidate {text!r}: give 'best' or an index 0..{len(result.front) - 1} "
                                  "of the front")
    return result.front[int(text)]


def zoo_model(result):
    """The zoo model whose fingerprint matches the one the result records, or None."""
    import wsx
    from wsx.engine import make_backend

    explored = (result.settings.get("fingerprint") or {}).get("model")
    framework = ZOO_FRAMEWORK.get(result.backend)
    if framework is None:
        return None
    for name in wsx.zoo.names():
        try:
            model, _ = wsx.zoo.load(name, framework=framework)
        except wsx.WsxError:
            continue
        be = make_backend(model, None, result.backend)
        if explored:
            if be.fingerprint()["model"] == explored:
                return model
        elif [layer.to_dict() for layer in be.layers()] == result.layers:  # results without a fingerprint
            return model
    return None


def run(args) -> int:
    import wsx
    from wsx.errors import InvalidSettingError

    from .explore import load_object
    from .inspect import print_inspection

    result = wsx.Result.load(args.results)
    candidate = pick(result, args.candidate)
    model = load_object(args.model) if args.model else zoo_model(result)
    if model is None:
        raise InvalidSettingError(f"{args.results} was not explored on an embedded zoo model; pass --model "
                                  "MODULE:ATTR naming the model it was explored on")
    info = wsx.export(model, candidate, args.out, result=result, backend=args.backend)
    if args.json:
        print(json.dumps(info, indent=1))
    elif not args.quiet:
        print_inspection(info)
    return 0
