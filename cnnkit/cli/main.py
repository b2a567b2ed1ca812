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
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
