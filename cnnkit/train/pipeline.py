"""Data set plumbing shared by ``cnnkit train/eval/predict``: the description saved with a model and its transform."""
from __future__ import annotations

import numpy as np

from .. import data
from ..autograd import Tensor, no_grad
from ..data import transforms


def _as_list(value):
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]


def image_side(image_size):
    """The side of a square image size given as ``28`` or ``(28, 28)``."""
    if isinstance(image_size, (list, tuple)):
        return int(image_size[0]) if len(set(image_size)) == 1 else tuple(int(v) for v in image_size)
    return int(image_size)


def describe_data(name, root=None, dataset=None, image_size=None):
    """What a model must know about its data: classes, channels, image size and normalization statistics.

    Class names come from the loaded ``dataset`` where it has them (``folder`` data sets). ``image_size``
    (an int) makes images that size (resized, then centre-cropped) instead of the data set's own.
    """
    info = dict(data.dataset_info(name, root=root))
    classes = list(getattr(dataset, "classes", None) or info.get("classes") or [])
    num_classes = len(classes) if classes else int(info["num_classes"])
    description = {"dataset": name, "num_classes": num_classes, "in_channels": int(info["in_channels"]),
                   "image_size": info["image_size"], "classes": [str(c) for c in classes] or None,
                   "mean": _as_list(info["mean"]), "std": _as_list(info["std"])}
    if image_size is not None:
        if int(image_size) < 1:
            raise ValueError(f"the image size must be a positive number of pixels, got {image_size}")
        description.update(image_size=int(image_size), resize=True)
    return description


def _fit_to_size(image_size):
    """Resize (the shorter side, keeping the aspect ratio) and centre-crop to ``image_size``."""
    side = image_side(image_size)
    if isinstance(side, tuple):
        return [transforms.Resize(side)]
    return [transforms.Resize(side), transforms.CenterCrop(side)]


def normalizing_transform(description):
    """uint8 image -> float32 CHW tensor in [0, 1] -> normalized with the data set's mean and std.

    Images are first brought to ``description['image_size']`` where it was chosen (``resize``) and for image
    folders, whose files may differ in size (images of that size already pass unchanged).
    """
    fit = description.get("resize") or description.get("dataset") == "folder"
    steps = _fit_to_size(description["image_size"]) if fit else []
    return transforms.Compose([*steps, transforms.ToTensor(),
                               transforms.Normalize(description["mean"], description["std"])])


def check_input_size(model, description, name):
    """Run one blank image through ``model`` so an input too small for it fails now, with a hint, not mid-epoch."""
    side = image_side(description["image_size"])
    height, width = side if isinstance(side, tuple) else (side, side)
    dtype = next(iter(model.parameters())).dtype
    was_training = model.training
    try:
        with no_grad():
            model.eval()(Tensor(np.zeros((1, description["in_channels"], height, width), dtype=dtype)))
    except ValueError as error:
        raise ValueError(f"{name} cannot take {description['in_channels']}x{height}x{width} images: {error}\n"
                         f"Try --small-input (where {name} has it), --image-size with more pixels, or a model "
                         "for small images such as lenet5 or simple_cnn.") from None
    finally:
        model.train(was_training)
