"""``cnnkit rf MODEL``: the receptive field and jump of every layer of a zoo model, following the data flow."""
from __future__ import annotations

import json
import sys

from ..analysis import summary
from .summary import add_model_arguments, build_model, parse_input_size


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "rf", help="print the receptive field and jump after every layer of a model",
        description="Receptive field (input pixels one unit sees, h x w) and jump (input pixels between "
                    "neighbouring units) after every layer, taking the largest over parallel branches. "
                    "'*' marks layers whose windows leave the last pixels of their input unused.")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def table(result):
    """Name, type, output shape, rf, jump and unused-pixel flag per layer."""
    header = ("layer", "type", "output", "rf (h x w)", "jump (h x w)", "")
    rows = [header]
    for layer in result.layers:
        info = layer.to_dict()
        rf = "all" if layer.rf_global else f"{info['rf_h']}x{info['rf_w']}"
        jump = "-" if layer.rf_global else f"{info['jump_h']}x{info['jump_w']}"
        shape = "x".join(str(s) for s in layer.output_shape[0][1:]) if layer.output_shape else ""
        flag = f"* {layer.unused_detail}" if layer.unused_pixels else ""
        rows.append((layer.name, layer.type, shape, rf, jump, flag))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    final = result.layers[-1] if result.layers else None
    if final is not None:
        lines.append(f"input {list(result.input_shape)}; last layer: rf {_rf(final)}; 'all' = sees the whole input")
    lines += [f"Note: {note}" for note in result.notes]
    return "\n".join(lines)


def _rf(layer):
    info = layer.to_dict()
    return "all" if layer.rf_global else f"{info['rf_h']}x{info['rf_w']}, jump {info['jump_h']}x{info['jump_w']}"


def run(args):
    try:
        result = summary(build_model(args), parse_input_size(args.input))
    except (ValueError, TypeError) as error:
        print(f"cnnkit rf: error: {error}", file=sys.stderr)
        return 2
    if args.json:
        keys = ("name", "type", "output_shape", "rf_h", "rf_w", "jump_h", "jump_w", "rf_global", "unused_pixels")
        print(json.dumps([{key: layer.to_dict()[key] for key in keys} for layer in result.layers], indent=2))
    else:
        print(table(result))
    return 0
