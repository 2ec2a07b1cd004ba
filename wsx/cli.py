"""The ``wsx`` command. Each subcommand lives in ``wsx/commands/<name>.py`` with ``add_parser`` and ``run``."""
from __future__ import annotations

import argparse
import sys
from importlib import import_module

from .errors import WsxError

# (name, module): one line per subcommand, in the order --help lists them.
COMMANDS = [
    ("demo", "wsx.commands.demo"),
    ("explore", "wsx.commands.explore"),
    ("plugins", "wsx.commands.plugins"),
    ("bench", "wsx.commands.bench"),
    ("export", "wsx.commands.export"),
    ("inspect", "wsx.commands.inspect"),
]


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in wsx's form: ``wsx: error: ...`` and exit status 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"wsx: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="wsx", description="Retraining-free weight-sharing exploration: find per-layer shared-value "
        "counts that maximise compression within an accuracy target.")
    parser.add_argument("--version", action="version", version=f"wsx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS:
        mod = import_module(module)
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "config", None):  # the file's settings become defaults: flags given override them
            from .commands.config import defaults_from

            args._parser.set_defaults(**defaults_from(args.config, args._parser))
            args = parser.parse_args(argv)
        if hasattr(args, "threads"):  # before any model loads: TensorFlow and XLA fix their pools on first use
            from .threads import auto_threads, set_process_threads

            set_process_threads(args.threads if args.threads is not None else auto_threads())
        return int(args._run(args) or 0)
    except WsxError as exc:
        print(f"wsx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_message(args), file=sys.stderr)
        return 130


def interrupted_message(args) -> str:
    """What Ctrl-C leaves: the model as it was, and (with --out) a journal the same command resumes from."""
    text = "wsx: interrupted; the model was restored"
    if getattr(args, "out", None) and hasattr(args, "restart"):
        return (f"{text}; every scoring made so far is kept in {args.out}/journal.jsonl: run the same command "
                "again to resume where it stopped")
    if hasattr(args, "restart"):
        return text + "; nothing was saved (with --out DIR a run can be resumed by running it again)"
    return text


if __name__ == "__main__":
    sys.exit(main())
