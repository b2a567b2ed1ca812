"""Turn any picture (a drawing, a photo, a file) into the (C, H, W) float array a model expects.

Steps: transparent pixels are laid on white; the picture becomes grayscale or RGB as the model needs; when
its background (the median of its border pixels) is light it is inverted, so a dark stroke on a white canvas
looks like the white-on-black images of MNIST and the shapes data; with ``fit='center'`` the ink's bounding
box is scaled to fill ``ink_fraction`` of the input and centred (as MNIST digits are), else the whole picture
is resized; finally values are scaled to [0, 1] and normalised by ``mean``/``std`` when given.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from ..data.image_file import ImageInputError, read_image

INK_THRESHOLD = 0.2             # a pixel is ink when its (inverted) value exceeds this fraction of white
MAX_ZOOM = 4.0                  # ``fit='center'`` never magnifies a tiny mark more than this over 'stretch'


@dataclass
class Prepared:
    """A picture ready for a model.

    ``array`` is (C, H, W) float32 (normalised), ``pixels`` the same picture as uint8 (H, W) or (H, W, 3)
    before normalisation, ``inverted`` whether colours were flipped and ``view`` the rectangle of the source
    picture, in its pixels, that the model input covers: ``{left, top, width, height, source_width,
    source_height}`` (it may reach past the picture's edges, where ``fit='center'`` pads with background).
    """

    array: np.ndarray
    pixels: np.ndarray
    inverted: bool
    view: dict = field(default_factory=dict)


def open_image(source):
    """A PIL image from a path, bytes, a PIL image or an array (H, W), (H, W, C) or (C, H, W) in [0, 1] or 0-255."""
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, str, os.PathLike)):
        return read_image(source)
    array = np.asarray(getattr(source, "data", source))
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)  # (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ImageInputError(f"image array must be (H, W), (H, W, 3) or (C, H, W) with C 1 or 3, "
                              f"got shape {array.shape}")
    if array.dtype.kind == "f":
        array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def _flatten_alpha(image):
    """Lay a picture with transparency on white, so an ink-on-transparent canvas becomes ink-on-white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def _has_light_background(gray):
    """True when the median of the border pixels is above middle gray."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127.5


def _center_view(gray, size, ink_fraction):
    """The source rectangle (left, top, width, height) that puts the ink's box centred in ``ink_fraction``."""
    out_height, out_width = size
    source_height, source_width = gray.shape
    rows, cols = np.nonzero(gray > INK_THRESHOLD * 255)
    stretch = max(source_width / out_width, source_height / out_height)
    if rows.size == 0:
        scale = stretch
        center_x, center_y = source_width / 2, source_height / 2
    else:
        ink_width, ink_height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
        scale = max(ink_width / (out_width * ink_fraction), ink_height / (out_height * ink_fraction),
                    stretch / MAX_ZOOM)
        center_x, center_y = (cols.min() + cols.max() + 1) / 2, (rows.min() + rows.max() + 1) / 2
    width, height = out_width * scale, out_height * scale
    return center_x - width / 2, center_y - height / 2, width, height


def prepare_image(source, size, channels=1, invert="auto", fit="stretch", ink_fraction=20 / 28, mean=None,
                  std=None):
    """Convert ``source`` to a :class:`Prepared` (C, H, W) array of ``size`` (H, W) with ``channels`` 1 or 3.

    ``invert`` is True, False or 'auto' (invert when the border is light); ``fit`` is 'stretch' (resize the
    whole picture) or 'center' (scale and centre the ink's bounding box, as MNIST digits are).
    """
    if channels not in (1, 3):
        raise ValueError(f"prepare_image: channels must be 1 or 3, got {channels}")
    if fit not in ("stretch", "center"):
        raise ValueError(f"prepare_image: fit must be 'stretch' or 'center', got {fit!r}")
    size = (int(size[0]), int(size[1]))
    image = _flatten_alpha(open_image(source))
    image = image.convert("L" if channels == 1 else "RGB")
    gray = np.asarray(image.convert("L") if channels == 3 else image)
    inverted = _has_light_background(gray) if invert == "auto" else bool(invert)
    if inverted:
        image = ImageOps.invert(image)
        gray = 255 - gray
    source_width, source_height = image.size
    if fit == "center":
        left, top, width, height = _center_view(gray, size, ink_fraction)
    else:
        left, top, width, height = 0.0, 0.0, float(source_width), float(source_height)
    resized = _crop_resize(image, (left, top, width, height), size)
    pixels = np.asarray(resized, dtype=np.uint8)
    array = pixels.astype(np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    if mean is not None or std is not None:
        mean_array = np.asarray(0.0 if mean is None else mean, dtype=np.float32).reshape(-1, 1, 1)
        std_array = np.asarray(1.0 if std is None else std, dtype=np.float32).reshape(-1, 1, 1)
        array = (array - mean_array) / std_array
    view = {"left": float(left), "top": float(top), "width": float(width), "height": float(height),
            "source_width": source_width, "source_height": source_height}
    return Prepared(np.ascontiguousarray(array, dtype=np.float32), pixels, inverted, view)


def _crop_resize(image, rectangle, size):
    """Resize the ``(left, top, width, height)`` part of ``image`` (padded with black outside) to ``size``."""
    left, top, width, height = rectangle
    pad = int(np.ceil(max(0.0, -left, -top, left + width - image.size[0], top + height - image.size[1]))) + 1
    padded = ImageOps.expand(image, border=pad, fill=0)
    box = (left + pad, top + pad, left + width + pad, top + height + pad)
    # BOX averages every source pixel when shrinking (no aliasing); bilinear is smoother when enlarging.
    shrinking = width >= size[1] and height >= size[0]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return padded.resize((size[1], size[0]), resample, box=box)
