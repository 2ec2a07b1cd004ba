"""``python -m benchmarks.strategies --problem lenet5-digits|fashion-mnist [wsx bench options]`` from the
repository root: ``wsx bench`` on a benchmark problem, with its test split, subset and exhaustive front."""
import sys

from wsx.cli import main

from .problems import NAMES, exhaustive_front_path

PARTS = {"lenet5-digits": ("digits_model", "digits_data", None, "all"),
         "fashion-mnist": ("fashion_model", "fashion_val", "fashion_test", "0.5"),
         "fashion-resnet20": ("resnet20_model", "resnet20_val", "resnet20_test", "0.5")}


def translate(argv: list[str]) -> list[str]:
    """The wsx bench arguments for ``--problem NAME`` (other options pass as they are)."""
    args = list(argv)
    name = "lenet5-digits"
    if "--problem" in args:
        i = args.index("--problem")
        name = args[i + 1]
        del args[i:i + 2]
    if name not in PARTS:
        raise SystemExit(f"--problem {name!r}: use one of {', '.join(NAMES)}")
    model, data, test, subset = PARTS[name]
    mod = "benchmarks.strategies.problems"
    out = ["--model", f"{mod}:{model}", "--data", f"{mod}:{data}", "--name", name]
    if test:
        out += ["--test-data", f"{mod}:{test}"]
    if "--subset" not in args:
        out += ["--subset", subset]
    if "--exhaustive-front" not in args and exhaustive_front_path(name).exists():
        out += ["--exhaustive-front", str(exhaustive_front_path(name))]
    return out + args


if __name__ == "__main__":
    sys.exit(main(["bench", *translate(sys.argv[1:])]))
