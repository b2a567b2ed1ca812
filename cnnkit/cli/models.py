"""``cnnkit models [PATTERN]``: the registered architectures, with a one-line description (and sizes)."""
from __future__ import annotations

import json

from ..models import create, list_models, model_entrypoint
from . import numbers


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "models", help="list the model zoo's architectures",
        description="List registered models whose name matches a shell-style PATTERN ('resnet*'), with a "
                    "one-line description. --params builds each model to count its parameters (slower).")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*' (default all)")
    parser.add_argument("--params", action="store_true", help="build each model and show its parameter count")
    parser.add_argument("--num-classes", type=numbers.positive_int, default=None,
                        help="classes used with --params (default: each model's own)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def describe(name):
    """The first line of the model's entry-point docstring."""
    doc = (model_entrypoint(name).__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def run(args):
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}; 'cnnkit models' lists them all")
        return 1
    rows = []
    for name in names:
        row = {"name": name, "description": describe(name)}
        if args.params:
            model = create(name, num_classes=args.num_classes)
            row["params"] = sum(int(p.data.size) for p in model.parameters())
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        size = f"{row['params']:>13,}  " if "params" in row else ""
        print(f"{row['name'].ljust(width)}  {size}{row['description']}".rstrip())
    print(f"{len(rows)} model(s)")
    return 0
