"""``cnnkit viz``: draw filters, feature maps, training curves, receptive fields, im2col, the convolution demo
and class evidence (CAM, Grad-CAM, saliency, occlusion) to image files."""
from __future__ import annotations

import argparse
import os
import sys

from ..io import CheckpointError, load_model, read_metadata, resolve_checkpoint
from ..models import create, list_models
from . import numbers

# cnnkit.viz (matplotlib, Pillow) is imported when the command runs, so 'cnnkit' works without the extras.

EXAMPLES = """\
examples:
  cnnkit viz filters runs/latest                 the first conv layer's kernels -> filters.png
  cnnkit viz features runs/latest digit.png      every conv/pool layer's maps for one image -> features.png
  cnnkit viz curves runs/latest --out curves.svg loss, top-1 and learning rate per epoch
  cnnkit viz rf lenet5 --layer features.3 --unit 4,4
                                                 a unit's receptive field (model name or checkpoint)
  cnnkit viz im2col --size 4 --kernel 3          how a convolution becomes one matrix product
  cnnkit viz conv-demo --out demo.gif            the notes' convolution demo, one frame per output number
                                                 (.gif, .png frames demo_000.png ... or a standalone .html)
  cnnkit viz cam runs/latest mark.png --method gradcam
                                                 where the evidence for the top class lies (cam, gradcam,
                                                 saliency, occlusion)
The format follows --out's extension: .png, .svg or .pdf (conv-demo: .gif, .png or .html).
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "viz", help="draw filters, feature maps, curves, receptive fields, im2col, the conv demo or class "
                    "evidence to an image file",
        description="Draw a picture of what a network computes and print the file's path.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    filters = kinds.add_parser("filters", help="the first conv layer's filters as an image grid")
    filters.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory or runs/latest")
    filters.add_argument("--max-filters", type=numbers.positive_int, default=64,
                         help="draw at most this many filters (default 64)")

    features = kinds.add_parser("features", help="every conv and pool layer's feature maps for one image")
    features.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory or runs/latest")
    features.add_argument("image", help="an image file (PNG, JPEG, ...)")
    features.add_argument("--max-maps", type=numbers.positive_int, default=32,
                          help="channels drawn per layer (default 32)")
    features.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                          help="invert brightness: auto inverts pictures with a light background (default)")
    features.add_argument("--fit", choices=("stretch", "center"), default="stretch",
                          help="resize the whole picture (stretch, default) or centre its ink as MNIST does")

    curves = kinds.add_parser("curves", help="loss, top-1 and learning rate per epoch of a training run")
    curves.add_argument("run", help="a run directory, runs/latest or a metrics.jsonl file")

    field = kinds.add_parser("rf", help="one unit's receptive field drawn over the input")
    field.add_argument("model", help="a model name (see 'cnnkit models') or a checkpoint / run directory")
    field.add_argument("--layer", help="a conv or pool layer's dotted name (default: the last one)")
    field.add_argument("--unit", help="ROW,COL of the unit in the layer's output (default: the centre)")
    field.add_argument("--channel", type=numbers.non_negative_int,
                       help="output channel (default: the most active at the unit)")
    field.add_argument("--image", help="draw over this image file (default: random pixels)")
    field.add_argument("--size", type=numbers.image_side, help="input side in pixels when no image is given "
                                                "(default: the model's, 28 for lenet5, else 224)")
    field.add_argument("--in-channels", type=numbers.int_range(1, numbers.MAX_CHANNELS),
                       help="input channels of a model built by name (default 3)")

    im2col = kinds.add_parser("im2col", help="how a convolution becomes im2col columns and one GEMM")
    im2col.add_argument("--channels", type=numbers.int_range(1, 16), default=1, help="input channels (default 1)")
    im2col.add_argument("--size", type=numbers.int_range(1, 64), default=4, help="input side (default 4)")
    im2col.add_argument("--kernel", type=numbers.positive_int, default=3, help="kernel side (default 3)")
    im2col.add_argument("--stride", type=numbers.positive_int, default=1, help="stride (default 1)")
    im2col.add_argument("--padding", type=numbers.non_negative_int, default=0,
                        help="zero padding on every side (default 0)")

    demo = kinds.add_parser("conv-demo", help="the step-by-step convolution demo as a GIF, PNG frames or HTML")
    for name, symbol, default in (("width", "W", 5), ("height", "H", 5), ("depth", "D", 3), ("filters", "K", 2),
                                  ("kernel", "F", 3), ("stride", "S", 2), ("padding", "P", 1),
                                  ("dilation", "dilation", 1), ("seed", "seed", 0)):
        demo.add_argument(f"--{name}", type=int, default=default, help=f"{symbol} (default {default})")

    cam = kinds.add_parser("cam", help="a heat map of where the evidence for a class lies in an image")
    cam.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory or runs/latest")
    cam.add_argument("image", help="an image file (PNG, JPEG, ...)")
    cam.add_argument("--method", choices=("cam", "gradcam", "saliency", "occlusion"), default="gradcam",
                     help="CAM (global-average-pooling networks), Grad-CAM (default), gradient saliency or "
                          "occlusion sensitivity")
    cam.add_argument("--layer", help="Grad-CAM's layer, a named_modules() name (default: the last conv layer)")
    cam.add_argument("--target", type=int, help="class index to explain (default: the top class)")
    cam.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                     help="invert brightness: auto inverts pictures with a light background (default)")
    cam.add_argument("--fit", choices=("stretch", "center"), default="stretch",
                     help="resize the whole picture (stretch, default) or centre its ink as MNIST does")

    for sub in (filters, features, curves, field, im2col, cam):
        sub.add_argument("--out", help="output file; .png, .svg or .pdf (default <kind>.png)")
    demo.add_argument("--out", help="output file; .gif, .png (one file per frame) or .html (default conv-demo.gif)")
    parser.set_defaults(func=run_command)
    return parser


def _load(checkpoint):
    """``(model, data description)`` of a checkpoint, run directory or runs/latest."""
    path = resolve_checkpoint(checkpoint)
    return load_model(path), (read_metadata(path)["extra"].get("data") or {})


def _input_spec(model, description):
    from ..viz.features import model_input_spec

    channels, size = model_input_spec(model)
    side = description.get("image_size")
    if side:
        size = tuple(side) if isinstance(side, (list, tuple)) else (int(side), int(side))
    return int(description.get("in_channels") or channels), size


def _model_for_rf(args):
    if os.path.exists(args.model):
        return _load(args.model)
    if args.model not in list_models():
        raise ValueError(f"{args.model!r} is neither a file nor a model name; see 'cnnkit models'")
    options = {"in_channels": args.in_channels} if args.in_channels else {}
    return create(args.model, **options).eval(), {}


def _rf(args, out):
    from ..viz import plot_receptive_field, prepare_image, spatial_layers

    model, description = _model_for_rf(args)
    layers = [name for name, _ in spatial_layers(model)]
    layer = args.layer or (layers[-1] if layers else None)
    if layer not in layers:
        raise ValueError(f"no conv or pool layer named {layer!r}; the layers are: {', '.join(layers)}")
    unit = None
    if args.unit:
        try:
            unit = tuple(int(v) for v in args.unit.split(","))
        except ValueError:
            unit = ()
        if len(unit) != 2:
            raise ValueError(f"--unit expects ROW,COL such as 4,4; got {args.unit!r}")
    channels, size = _input_spec(model, description)
    if args.image:
        prepared = prepare_image(args.image, size, channels, mean=description.get("mean"),
                                 std=description.get("std"))
        source = prepared.array
    else:
        source = (channels, args.size, args.size) if args.size else (channels, *size)
    return plot_receptive_field(model, layer, source, out, unit=unit, channel=args.channel)


def _features(args, out):
    from ..viz import plot_feature_maps, prepare_image

    model, description = _load(args.checkpoint)
    channels, size = _input_spec(model, description)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    prepared = prepare_image(args.image, size, channels, invert=invert, fit=args.fit,
                             mean=description.get("mean"), std=description.get("std"))
    return plot_feature_maps(model, prepared.array, out, max_maps=args.max_maps)


def _cam(args, out):
    from ..viz import prepare_image
    from ..viz.evidence_plots import plot_evidence

    model, description = _load(args.checkpoint)
    channels, size = _input_spec(model, description)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    mean, std = description.get("mean"), description.get("std")
    prepared = prepare_image(args.image, size, channels, invert=invert, fit=args.fit, mean=mean, std=std)
    if args.layer and args.method != "gradcam":
        raise ValueError(f"--layer applies to --method gradcam only, not {args.method}")
    options = {}
    if args.method == "occlusion":  # patches are filled with the normalised value of a black pixel
        options["fill"] = -float((mean or [0.0])[0]) / float((std or [1.0])[0])
    return plot_evidence(model, prepared.array, out, args.method, args.target, args.layer,
                         class_names=description.get("classes"), pixels=prepared.pixels, **options)


def _conv_demo(args, out):
    from ..viz.conv_demo_files import write_conv_demo

    files = write_conv_demo(out, width=args.width, height=args.height, depth=args.depth, filters=args.filters,
                            kernel=args.kernel, stride=args.stride, padding=args.padding, dilation=args.dilation,
                            seed=args.seed)
    return files[0] if len(files) == 1 else f"{files[0]} ... {files[-1]} ({len(files)} frames)"


def run_command(args):
    out = args.out or (f"{args.kind}.gif" if args.kind == "conv-demo" else f"{args.kind}.png")
    try:
        from ..viz import ImageInputError, plot_curves, plot_filters, plot_im2col
    except ImportError as error:
        print(f"cnnkit viz: error: {error.name or error} is not installed; pip install 'cnnkit[viz]' "
              "(matplotlib and Pillow)", file=sys.stderr)
        return 2
    try:
        if args.kind == "filters":
            path = plot_filters(_load(args.checkpoint)[0], out, max_filters=args.max_filters)
        elif args.kind == "features":
            path = _features(args, out)
        elif args.kind == "curves":
            path = plot_curves(args.run, out)
        elif args.kind == "rf":
            path = _rf(args, out)
        elif args.kind == "cam":
            path = _cam(args, out)
        elif args.kind == "conv-demo":
            path = _conv_demo(args, out)
        else:
            path = plot_im2col(out, (args.channels, args.size, args.size), args.kernel, args.stride, args.padding)
    except (ValueError, FileNotFoundError, CheckpointError, ImageInputError) as error:
        print(f"cnnkit viz {args.kind}: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0
