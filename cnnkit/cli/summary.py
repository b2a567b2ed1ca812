"""``cnnkit summary MODEL``: layers, output shapes, parameters, MACs and receptive fields of a zoo model."""
from __future__ import annotations

import json
import sys

from ..analysis import summary
from ..models import create
from . import numbers


def parse_input_size(text):
    """'3x224x224' -> (3, 224, 224): channels x height x width, without the batch."""
    try:
        sizes = tuple(int(part) for part in text.lower().replace(",", "x").split("x") if part)
    except ValueError:
        raise ValueError(f"--input must look like 3x224x224 (C x H x W), got {text!r}") from None
    if len(sizes) != 3 or min(sizes) <= 0:
        raise ValueError(f"--input must look like 3x224x224 (C x H x W), got {text!r}")
    if max(sizes[1:]) > numbers.MAX_IMAGE_SIDE or sizes[0] > numbers.MAX_CHANNELS:
        raise ValueError(f"--input {text}: at most {numbers.MAX_CHANNELS} channels and "
                         f"{numbers.MAX_IMAGE_SIDE} pixels a side")
    return sizes


def add_model_arguments(parser):
    parser.add_argument("model", help="model name (see 'cnnkit models')")
    parser.add_argument("--input", default="3x224x224", metavar="CxHxW",
                        help="input size without the batch, e.g. 3x224x224 or 1x28x28 (default 3x224x224)")
    parser.add_argument("--num-classes", type=numbers.positive_int, default=None,
                        help="classes of the head (default: the model's own)")
    parser.add_argument("--small-input", action="store_true",
                        help="build the model's small-input variant (for 28x28/32x32 images)")
    parser.add_argument("--option", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="a model option such as width_mult=0.5 (repeatable; values parsed as JSON if possible)")


def build_model(args):
    """Create the model named on the command line with its input channels, classes and options."""
    channels = parse_input_size(args.input)[0]
    options = {}
    for item in args.options:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option must be KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if args.small_input:
        options["small_input"] = True
    return create(args.model, num_classes=args.num_classes, in_channels=channels, **options)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "summary", help="print a model's layers, shapes, params, MACs and receptive fields",
        description="Run one forward pass of a zoo model on a random input and print a table of every layer: "
                    "output shape, parameters, multiply-accumulates, receptive field and jump, with totals.")
    add_model_arguments(parser)
    parser.add_argument("--batch-size", type=numbers.int_range(1, 4096), default=1,
                        help="batch size of the dummy input (default 1)")
    parser.add_argument("--containers", action="store_true", help="also list containers (blocks, Sequentials)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args):
    try:
        input_size = parse_input_size(args.input)
        model = build_model(args)
        result = summary(model, input_size, batch_size=args.batch_size, containers=args.containers)
    except (ValueError, TypeError) as error:
        print(f"cnnkit summary: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.json else result)
    return 0
