"""``cnnkit serve``: a local web page to draw on, with live predictions, feature maps and receptive fields."""
from __future__ import annotations

import argparse
import os
import sys

from ..io import CheckpointError, resolve_checkpoint, write_latest
from . import numbers

# cnnkit.web (Flask, Pillow, matplotlib) and the trainer are imported when the command runs, so 'cnnkit'
# works without the extras.

LATEST = os.path.join("runs", "latest")
QUICK_TRAIN_EPOCHS = 3

EXAMPLES = """\
examples:
  cnnkit serve                      the latest 'cnnkit train' run (trains LeNet-5 on shapes first if none)
  cnnkit serve runs/latest --port 8080
  cnnkit serve runs/lenet5-mnist-20250101-120000/best.safetensors --host 0.0.0.0
      listen on every interface (anyone on the network can reach it)
Then open the printed URL, draw, and hover the feature maps; choose an evidence method (Grad-CAM, CAM,
saliency, occlusion) to see where the top class's evidence lies. /conv steps through a convolution.
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "serve", help="a local web page: draw, see predictions, feature maps and receptive fields",
        description="Serve a web page on which you draw a digit or a mark: the model's top-5 predictions "
                    "update as you draw, every conv and pool layer's feature maps are shown, and hovering a "
                    "feature-map pixel highlights its receptive field on the drawing. JSON API: "
                    "GET /api/model, POST /api/predict {\"image\": \"data:image/png;base64,...\"}.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?",
                        help="a .safetensors checkpoint, a run directory or runs/latest (default runs/latest; "
                             "when it does not exist LeNet-5 is trained on the built-in shapes data first)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=numbers.int_range(0, 65535), default=8000,
                        help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--threads", type=numbers.int_range(1, 256), default=8,
                        help="requests served at once (default 8)")
    parser.add_argument("--fit", choices=("center", "stretch"), default="center",
                        help="centre and scale the drawing's ink like MNIST digits (default) or resize the "
                             "whole canvas")
    parser.add_argument("--train-epochs", type=numbers.epochs, default=QUICK_TRAIN_EPOCHS,
                        help=f"epochs of the quick training run when there is no checkpoint "
                             f"(default {QUICK_TRAIN_EPOCHS})")
    parser.set_defaults(func=run_command)
    return parser


def quick_train(epochs):
    """Train the ``cnnkit train`` defaults (LeNet-5 on shapes) for ``epochs``; returns the best checkpoint."""
    from . import train as train_command

    defaults = argparse.Namespace(**{key: None for key in train_command.DEFAULTS})
    config = train_command.resolve_config(defaults)
    config["epochs"] = epochs
    out = train_command._default_out(config)
    print(f"no checkpoint given and {LATEST} does not exist: training {config['model']} on the built-in "
          f"{config['dataset']} data for {epochs} epoch(s) first", flush=True)
    trainer = train_command.train(config, out=out, progress=True)
    write_latest(out)
    return trainer.best_checkpoint


def _checkpoint(args):
    if args.checkpoint:
        return resolve_checkpoint(args.checkpoint)
    if os.path.exists(LATEST):
        try:
            return resolve_checkpoint(LATEST)
        except FileNotFoundError as error:  # a 'cnnkit train' run stopped before its first checkpoint
            raise FileNotFoundError(f"{error}. Finish that run with 'cnnkit train --resume {LATEST}' or "
                                    "give 'cnnkit serve' a checkpoint") from None
    return quick_train(args.train_epochs)


def run_command(args):
    try:
        from ..web import Predictor, Server, create_app
    except ImportError as error:
        print(f"cnnkit serve: error: {error.name or error} is not installed; pip install 'cnnkit[web]' "
              "(Flask, Pillow and matplotlib)", file=sys.stderr)
        return 2
    try:
        path = _checkpoint(args)
        predictor = Predictor.from_checkpoint(path, fit=args.fit)
    except (ValueError, OSError, CheckpointError) as error:
        print(f"cnnkit serve: error: {error}", file=sys.stderr)
        return 2
    try:
        server = Server(create_app(predictor), host=args.host, port=args.port, threads=args.threads)
    except OSError as error:  # the port is taken, or the address is not this machine's
        print(f"cnnkit serve: error: cannot listen on {args.host}:{args.port} ({error}); "
              "choose another --port", file=sys.stderr)
        return 2
    print(f"serving {predictor.name} from {path} with {server.kind} "
          f"({len(predictor.class_names)} classes: {', '.join(predictor.class_names)})")
    print(f"convolution demo: {server.url}conv")
    print(f"open {server.url}   (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("stopped")
    return 0
