"""The ``cnnkit`` command: one sub-command per module in ``COMMANDS``, each with ``add_parser(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module cnnkit.cli.<name> defines add_parser(subparsers) that sets defaults(func=run).
COMMANDS: list = ["train", "evaluate", "predict", "export", "models", "summary", "rf", "viz", "serve"]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cnnkit",
        description="cnnkit: train, inspect and run convolutional neural networks on NumPy.",
        epilog="Run 'cnnkit COMMAND --help' for the options of one command. With no command, "
               "'cnnkit train' trains LeNet-5 on the built-in shapes data set.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cnnkit.cli.{name}").add_parser(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from ..backend import tune_process

    tune_process()  # a cnnkit command owns its process: keep freed memory, BLAS on one thread (cnnkit's threads)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"cnnkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, MemoryError) as error:
        # a user's mistake that a command did not catch itself: one line on stderr, never a traceback
        print(f"cnnkit {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 2


def describe_error(error):
    """One line for an error; a MemoryError (often without a message) says what ran out."""
    if isinstance(error, MemoryError):
        return f"out of memory{f' ({error})' if str(error) else ''}; use smaller inputs or a smaller batch"
    return str(error) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
