"""``cnnkit export CHECKPOINT model.onnx``: write a trained model as ONNX (opset 17, dynamic batch)."""
from __future__ import annotations

import argparse
import json
import sys

from ..io import resolve_checkpoint
from ..onnx import export
from . import numbers
from .predict import load_checkpoint_model
from .summary import parse_input_size

EXAMPLES = """\
examples:
  cnnkit export runs/latest model.onnx
  cnnkit export runs/latest/best.safetensors digits.onnx --input 1x28x28 --opset 18
  cnnkit predict model.onnx my_digit.png
      the file runs in onnxruntime or anything else that reads ONNX, and in cnnkit itself
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as an ONNX model",
        description="Trace a checkpoint's model on a dummy input and write it as an ONNX graph with a dynamic "
                    "batch dimension; the data description (classes, normalization) travels in its metadata.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory, or runs/latest")
    parser.add_argument("output", help="the .onnx file to write")
    parser.add_argument("--input", metavar="CxHxW",
                        help="input size without the batch (default: the size the checkpoint was trained on)")
    parser.add_argument("--opset", type=numbers.int_range(7, 25), default=17, help="ONNX opset version (default 17)")
    parser.set_defaults(func=run_command)
    return parser


def run_command(args):
    try:
        path = resolve_checkpoint(args.checkpoint)
        if args.input:
            input_size = parse_input_size(args.input)
            model, description, _, _ = load_checkpoint_model(path, image_size=input_size[1:])
        else:
            model, description, channels, size = load_checkpoint_model(path)
            input_size = (channels, *size)
        metadata = {"cnnkit.data": json.dumps(description), "cnnkit.model_name": getattr(model, "model_name", "")}
        export(model, input_size, args.output, opset=args.opset, metadata=metadata)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"cnnkit export: error: {error}", file=sys.stderr)
        return 2
    shape = "x".join(str(s) for s in input_size)
    print(f"wrote {args.output}: {type(model).__name__}, input batch x {shape}, opset {args.opset}")
    return 0
