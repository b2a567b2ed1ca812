"""``cnnkit predict``: classify image files with a trained model and print the most likely classes."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ..data.image_file import ImageInputError, read_image
from ..inference import freeze
from ..io import load_model, read_metadata, resolve_checkpoint
from ..onnx import load as load_onnx
from ..train.pipeline import image_side, normalizing_transform
from . import numbers

EXAMPLES = """\
examples:
  cnnkit predict runs/latest my_digit.png
  cnnkit predict runs/latest/best.safetensors a.png b.jpg --top 3
  cnnkit predict model.onnx my_digit.png
      an ONNX model (from 'cnnkit export' or torch.onnx.export) runs with cnnkit ops
  cnnkit predict runs/latest photo_of_paper_digit.jpg --invert never
      use the image as it is (by default dark ink on white paper is inverted for a model trained on
      MNIST's white-on-black digits)
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "predict", help="classify image files with a trained model",
        description="Classify images with a checkpoint: each image is converted to the model's channels "
                    "(grayscale or RGB) and input size, normalized like the training data, and the most "
                    "likely classes are printed with their probabilities.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .safetensors checkpoint, a run directory, runs/latest, or a .onnx model")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--top", type=numbers.positive_int, default=5,
                        help="how many classes to show per image (default 5)")
    parser.add_argument("--invert", choices=("auto", "always", "never"), default="auto",
                        help="invert brightness first; auto (default) inverts light-background images for "
                             "models trained on dark-background data such as MNIST and shapes")
    parser.add_argument("--image-size", type=numbers.image_side,
                        help="input side in pixels, for checkpoints that do not record it")
    parser.set_defaults(func=run_command)
    return parser


def load_image(path, channels, size, invert=False):
    """An image file as a uint8 array (H, W) for one channel or (H, W, 3), resized to ``size`` (H, W).

    ``invert``: True, False or ``"auto"`` (invert when the image's border is mostly light).
    """
    try:
        image = read_image(path)  # without Pillow: an ImportError that says how to install it
    except ImageInputError as error:
        raise ValueError(str(error)) from None
    from PIL import Image, ImageOps

    with image:
        image = ImageOps.exif_transpose(image).convert("L" if channels == 1 else "RGB")
        if invert == "auto":
            invert = _border_mean(np.asarray(image)) > 127
        if invert:
            image = ImageOps.invert(image)
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def _border_mean(pixels):
    """Mean brightness of the outermost pixel ring: the background's, for a centred mark."""
    pixels = pixels.astype(np.float64)
    ring = [pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]]
    return float(np.mean(np.concatenate([part.reshape(-1) for part in ring])))


def softmax(logits):
    """Row-wise ``exp(z - max) / sum(exp(z - max))``."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def input_size(image_size, description, config):
    """(height, width) of a checkpoint's input: ``image_size`` when given, else the size it records."""
    size = image_size or description.get("image_size") or (config or {}).get("image_size")
    if size is None:
        raise ValueError("the checkpoint does not record its input size; pass --image-size")
    side = image_side(size)
    return side if isinstance(side, tuple) else (side, side)


def load_checkpoint_model(path, image_size=None):
    """``(model, data description, channels, (height, width))`` of a checkpoint file."""
    metadata = read_metadata(path)
    description = metadata["extra"].get("data") or {}
    config = metadata.get("model_config") or {}
    model = load_model(path)
    channels = config.get("in_channels") or description.get("in_channels", 3)
    return model, description, channels, input_size(image_size, description, config)


def _load_onnx_model(path, image_size=None):
    """The same for an ONNX file: sizes from its input shape, the description from ``cnnkit export``'s metadata."""
    model = load_onnx(path)
    description = json.loads(model.metadata.get("cnnkit.data", "{}"))
    shape = model.input_shapes[0] if model.input_shapes else ()
    if len(shape) != 4 or shape[1] is None:
        raise ValueError(f"{path}: the model's input has shape {shape}; predict needs an image input "
                         "(batch, channels, height, width)")
    if not image_size and not description.get("image_size") and None not in shape[2:]:
        image_size = tuple(shape[2:])
    return model, description, shape[1], input_size(image_size, description, {})


def run_command(args):
    try:
        if str(args.checkpoint).lower().endswith(".onnx"):
            model, description, channels, size = _load_onnx_model(args.checkpoint, args.image_size)
        else:
            path = resolve_checkpoint(args.checkpoint)
            model, description, channels, size = load_checkpoint_model(path, args.image_size)
        transform = normalizing_transform(description) if description.get("mean") else None
        invert = {"always": True, "never": False}.get(args.invert, "auto")
        if invert == "auto" and not np.mean(description.get("mean") or [1.0]) < 0.3:
            invert = False  # not mostly-dark training images (CIFAR photos, or unknown): leave them alone
        batch = []
        for image_path in args.images:
            image = load_image(image_path, channels, size, invert)
            tensor = transform(image) if transform else np.atleast_3d(image).transpose(2, 0, 1) / np.float32(255)
            batch.append(np.asarray(getattr(tensor, "data", tensor)))
        dtype = next(iter(model.parameters())).dtype
        images = np.stack(batch).astype(dtype)
        logits = freeze(model, images)(images)  # the eval-mode outputs, BN folded and ReLUs fused
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"cnnkit predict: error: {error}", file=sys.stderr)
        return 2
    probabilities = softmax(logits.astype(np.float64))
    classes = description.get("classes") or [str(index) for index in range(logits.shape[1])]
    top = min(args.top, logits.shape[1])
    width = max(len(str(name)) for name in classes)
    for image_path, row in zip(args.images, probabilities):
        print(image_path)
        for rank, index in enumerate(np.argsort(-row, kind="stable")[:top], start=1):
            print(f"  {rank}. {str(classes[index]).ljust(width)}  {100 * row[index]:6.2f}%")
    return 0
