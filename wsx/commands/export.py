"""``wsx export RESULTS_DIR --candidate N --out FILE [--format F]``: write a candidate as the wsx
artifact, a Core ML package with lookup-table weights, or a dense ONNX / Keras file."""
from __future__ import annotations

import json

ZOO_FRAMEWORK = {"torch": "torch", "tensorflow": "keras", "jax": "jax"}


def add_parser(sub):
    p = sub.add_parser(
        "export", help="write a front candidate: wsx artifact, Core ML lookup tables, or dense ONNX / Keras",
        description="Write candidate N of the front in RESULTS_DIR (as numbered by the exploration's table). "
        "--format wsx (default): a safetensors artifact, bit-packed indices and codebooks per layer, every "
        "other tensor as is. coreml: an .mlpackage whose layers of interest are lookup tables (torch or Keras; "
        "pip install 'wsx[coreml]'). onnx (torch) and keras: dense files with the shared weights written in, "
        "for runtimes without lookup tables (pip install 'wsx[onnx]' for onnx). The format follows --out's "
        "suffix (.mlpackage, .onnx, .keras) unless given. --model MODULE:ATTR imports MODULE and so runs its "
        "code: only name modules you trust. Without --model the embedded zoo model the results were explored "
        "on is used (found by fingerprint), with its data as example inputs.")
    p.add_argument("results", metavar="RESULTS_DIR", help="directory an exploration wrote with --out")
    p.add_argument("--candidate", default="best",
                   help="front index N, or 'best' (highest CR meeting the target on all the search data and, "
                   "when the exploration had test data, on it too; default)")
    p.add_argument("--out", required=True, help="file to write (e.g. model.wsx, model.mlpackage, model.onnx)")
    p.add_argument("--format", default=None, choices=["wsx", "coreml", "onnx", "keras"],
                   help="default: from --out's suffix, else wsx")
    p.add_argument("--precision", default="float32", choices=["float32", "float16"],
                   help="coreml: float type of every weight and of the computation (LUT values included)")
    p.add_argument("--target", default="iOS18",
                   help="coreml: deployment target; iOS18 (default) allows 3-bit indices and per-channel LUTs, "
                   "iOS16 runs on older devices")
    p.add_argument("--model", default=None, help="MODULE:ATTR of the model explored (runs that module's code)")
    p.add_argument("--data", default=None, help="MODULE:ATTR of data whose first input sample fixes the "
                   "input shape (coreml, onnx; runs that module's code); default with the zoo: its data")
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
            raise InvalidSettingError(f"no front candidate meets the target on {result.best_basis()}; pass "
                                      "--candidate N (see the front table in results.json or report.html)")
        return best
    if not text.isdigit() or int(text) >= len(result.front):
        raise InvalidSettingError(f"--candidate {text!r}: give 'best' or an index 0..{len(result.front) - 1} "
                                  "of the front")
    return result.front[int(text)]


def zoo_model(result):
    """(model, data) of the zoo model whose fingerprint matches the one the result records, or None."""
    import wsx
    from wsx.engine import make_backend

    explored = (result.settings.get("fingerprint") or {}).get("model")
    framework = ZOO_FRAMEWORK.get(result.backend)
    if framework is None:
        return None
    for name in wsx.zoo.names():
        try:
            model, data = wsx.zoo.load(name, framework=framework)
        except wsx.WsxError:
            continue
        be = make_backend(model, None, result.backend)
        if explored:
            if be.fingerprint()["model"] == explored:
                return model, data
        elif [layer.to_dict() for layer in be.layers()] == result.layers:  # results without a fingerprint
            return model, data
    return None


def run(args) -> int:
    import wsx
    from wsx.errors import InvalidSettingError

    from wsx.exporting import format_for

    from .explore import load_object
    from .inspect import print_dense, print_inspection, print_package

    result = wsx.Result.load(args.results)
    candidate = pick(result, args.candidate)
    found = (load_object(args.model), None) if args.model else zoo_model(result)
    if found is None:
        raise InvalidSettingError(f"{args.results} was not explored on an embedded zoo model; pass --model "
                                  "MODULE:ATTR naming the model it was explored on")
    model, data = found
    if args.data:
        data = load_object(args.data, "--data")
    fmt = format_for(args.out, args.format)
    kwargs = {}
    if fmt != "wsx":
        kwargs["example_inputs"] = first_sample(data)
    if fmt == "coreml":
        kwargs.update(precision=args.precision, target=args.target)
    info = wsx.export(model, candidate, args.out, format=fmt, result=result, backend=args.backend, **kwargs)
    if args.json:
        print(json.dumps(info, indent=1))
    elif not args.quiet:
        {"wsx": print_inspection, "coreml": print_package}.get(fmt, print_dense)(info)
    return 0


def first_sample(data):
    """A batch holding the first input sample of ``data`` ((inputs, labels) or inputs), or None."""
    if data is None:
        return None
    inputs = data[0] if isinstance(data, (tuple, list)) and len(data) == 2 else data
    if isinstance(inputs, (tuple, list)):
        return tuple(part[:1] for part in inputs)
    return inputs[:1]
