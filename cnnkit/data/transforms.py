"""Image transforms (torchvision's names): ``Compose``, ``ToTensor``, ``Normalize``, crops, flips, ``Resize``.

Layout rule: uint8 arrays are raw images, ``(H, W)`` or ``(H, W, C)``; floating arrays are ``(C, H, W)``
(what ``ToTensor`` returns) or ``(H, W)``. Geometric transforms accept both and keep the layout and dtype.
Random transforms draw from ``generator`` if given, else from ``cnnkit.data.get_data_rng()`` (the
DataLoader's per-sample generator, or ``cnnkit.backend.get_rng()`` outside a loader).
"""
from __future__ import annotations

import numbers

import numpy as np

from .random import get_data_rng

__all__ = ["Compose", "ToTensor", "Normalize", "RandomCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "Resize",
           "CenterCrop", "Grayscale", "Lambda", "to_tensor", "resize", "pad"]


def _as_image(image, name):
    """Return ``image`` as an ndarray (PIL images and Tensors accepted) with 2 or 3 dimensions."""
    if hasattr(image, "data") and hasattr(image, "grad"):  # a cnnkit Tensor
        image = image.data
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{name}: expected an image of shape (H, W), (H, W, C) uint8 or (C, H, W) float, "
                         f"got shape {image.shape}")
    return image


def _spatial_axes(image):
    """(row axis, column axis): (0, 1) for HW/HWC uint8 or 2-D images, (1, 2) for CHW float images."""
    if image.ndim == 2 or image.dtype == np.uint8:
        return 0, 1
    return 1, 2


def _size_pair(size, name):
    if isinstance(size, numbers.Integral):
        size = (int(size), int(size))
    size = tuple(int(value) for value in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name}: size must be a positive int or (height, width), got {size}")
    return size


class Compose:
    """Apply transforms one after another: ``Compose([t1, t2])(x) == t2(t1(x))``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image):
        for transform in self.transforms:
            image = transform(image)
        return image

    def __repr__(self):
        body = "".join(f"\n    {transform}" for transform in self.transforms)
        return f"{type(self).__name__}({body}\n)"


def to_tensor(image):
    """uint8 ``(H, W)``/``(H, W, C)`` -> float32 ``(C, H, W)`` in [0, 1]; other dtypes are only transposed."""
    image = _as_image(image, "ToTensor")
    if image.ndim == 2:
        image = image[:, :, None]
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    if image.dtype == np.uint8:
        return chw.astype(np.float32) / np.float32(255)
    return chw.astype(np.float32)


class ToTensor:
    """Convert a raw image to a float32 ``(C, H, W)`` array in [0, 1] (``x / 255`` for uint8); NumPy output."""

    def __call__(self, image):
        return to_tensor(image)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """Per channel ``(x - mean[c]) / std[c]`` of a float ``(C, H, W)`` array (apply after ``ToTensor``)."""

    def __init__(self, mean, std):
        self.mean = tuple(float(value) for value in np.atleast_1d(mean))
        self.std = tuple(float(value) for value in np.atleast_1d(std))
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has {len(self.std)}")
        if any(value == 0 for value in self.std):
            raise ValueError(f"Normalize: std must not contain zeros, got {self.std}")

    def __call__(self, image):
        image = _as_image(image, "Normalize")
        if image.dtype.kind != "f":
            raise TypeError(f"Normalize: expected a float (C, H, W) array, got dtype {image.dtype}; "
                            "apply ToTensor() first")
        if image.ndim == 2:
            image = image[None]
        channels = image.shape[0]
        if len(self.mean) not in (1, channels):
            raise ValueError(f"Normalize: the image has {channels} channels (shape {image.shape}) but mean/std "
                             f"have {len(self.mean)} values; give 1 or {channels}")
        mean = np.asarray(self.mean, dtype=image.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=image.dtype).reshape(-1, 1, 1)
        return (image - mean) / std

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


def pad(image, padding, fill=0, padding_mode="constant"):
    """Pad the spatial axes by ``padding``: int, (left/right, top/bottom) or (left, top, right, bottom)."""
    image = _as_image(image, "pad")
    if isinstance(padding, numbers.Integral):
        left = top = right = bottom = int(padding)
    elif len(padding) == 2:
        left = right = int(padding[0])
        top = bottom = int(padding[1])
    elif len(padding) == 4:
        left, top, right, bottom = (int(value) for value in padding)
    else:
        raise ValueError(f"pad: padding must be an int or a sequence of 2 or 4 ints, got {padding}")
    if min(left, top, right, bottom) < 0:
        raise ValueError(f"pad: padding must be non-negative, got {padding}")
    modes = {"constant": "constant", "edge": "edge", "reflect": "reflect", "symmetric": "symmetric"}
    if padding_mode not in modes:
        raise ValueError(f"pad: padding_mode must be one of {sorted(modes)}, got {padding_mode!r}")
    row_axis, col_axis = _spatial_axes(image)
    widths = [(0, 0)] * image.ndim
    widths[row_axis], widths[col_axis] = (top, bottom), (left, right)
    if padding_mode == "constant":
        return np.pad(image, widths, mode="constant", constant_values=fill)
    return np.pad(image, widths, mode=modes[padding_mode])


def _crop(image, top, left, height, width):
    row_axis, col_axis = _spatial_axes(image)
    index = [slice(None)] * image.ndim
    index[row_axis], index[col_axis] = slice(top, top + height), slice(left, left + width)
    return np.ascontiguousarray(image[tuple(index)])


class RandomCrop:
    """Crop a random ``size`` window, after optional ``padding`` (e.g. ``RandomCrop(32, padding=4)``)."""

    def __init__(self, size, padding=None, pad_if_needed=False, fill=0, padding_mode="constant", generator=None):
        self.size = _size_pair(size, "RandomCrop")
        self.padding = padding
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode
        self.generator = generator

    def __call__(self, image):
        image = _as_image(image, "RandomCrop")
        if self.padding is not None:
            image = pad(image, self.padding, self.fill, self.padding_mode)
        row_axis, col_axis = _spatial_axes(image)
        height, width = image.shape[row_axis], image.shape[col_axis]
        crop_height, crop_width = self.size
        if self.pad_if_needed and (height < crop_height or width < crop_width):
            extra_width, extra_height = max(crop_width - width, 0), max(crop_height - height, 0)
            image = pad(image, (extra_width, extra_height), self.fill, self.padding_mode)
            height, width = image.shape[row_axis], image.shape[col_axis]
        if height < crop_height or width < crop_width:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the (padded) image {height}x{width}; "
                             "use pad_if_needed=True or a smaller size")
        rng = self.generator if self.generator is not None else get_data_rng()
        top = int(rng.integers(0, height - crop_height + 1))
        left = int(rng.integers(0, width - crop_width + 1))
        return _crop(image, top, left, crop_height, crop_width)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class CenterCrop:
    """Crop the central ``size`` window (zero-padding first if the image is smaller), as torchvision."""

    def __init__(self, size):
        self.size = _size_pair(size, "CenterCrop")

    def __call__(self, image):
        image = _as_image(image, "CenterCrop")
        row_axis, col_axis = _spatial_axes(image)
        height, width = image.shape[row_axis], image.shape[col_axis]
        crop_height, crop_width = self.size
        if crop_height > height or crop_width > width:
            extra_width, extra_height = max(crop_width - width, 0), max(crop_height - height, 0)
            # torchvision's split: the odd pixel goes right/bottom
            image = pad(image, (extra_width // 2, extra_height // 2, (extra_width + 1) // 2, (extra_height + 1) // 2))
            height, width = image.shape[row_axis], image.shape[col_axis]
        top = int(round((height - crop_height) / 2.0))
        left = int(round((width - crop_width) / 2.0))
        return _crop(image, top, left, crop_height, crop_width)

    def __repr__(self):
        return f"CenterCrop(size={self.size})"


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5, generator=None):
        self.p = p
        self.generator = generator

    def __call__(self, image):
        image = _as_image(image, "RandomHorizontalFlip")
        rng = self.generator if self.generator is not None else get_data_rng()
        if rng.random() < self.p:
            return np.ascontiguousarray(np.flip(image, axis=_spatial_axes(image)[1]))
        return image

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomVerticalFlip:
    """Mirror top-bottom with probability ``p``."""

    def __init__(self, p=0.5, generator=None):
        self.p = p
        self.generator = generator

    def __call__(self, image):
        image = _as_image(image, "RandomVerticalFlip")
        rng = self.generator if self.generator is not None else get_data_rng()
        if rng.random() < self.p:
            return np.ascontiguousarray(np.flip(image, axis=_spatial_axes(image)[0]))
        return image

    def __repr__(self):
        return f"RandomVerticalFlip(p={self.p})"


def _interpolation_weights(in_size, out_size):
    """Source rows and weights of half-pixel bilinear sampling (torch's align_corners=False, no antialias)."""
    scale = in_size / out_size
    source = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, source - low


def resize(image, size, interpolation="bilinear"):
    """Resize the spatial axes to ``size=(height, width)`` by bilinear (half-pixel) or nearest sampling."""
    image = _as_image(image, "Resize")
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"Resize: interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    row_axis, col_axis = _spatial_axes(image)
    out_height, out_width = size
    if (image.shape[row_axis], image.shape[col_axis]) == (out_height, out_width):
        return image.copy()
    if interpolation == "nearest":
        rows = np.minimum((np.arange(out_height) * image.shape[row_axis] / out_height).astype(np.int64),
                          image.shape[row_axis] - 1)
        cols = np.minimum((np.arange(out_width) * image.shape[col_axis] / out_width).astype(np.int64),
                          image.shape[col_axis] - 1)
        return np.ascontiguousarray(np.take(np.take(image, rows, axis=row_axis), cols, axis=col_axis))
    work_dtype = image.dtype if image.dtype.kind == "f" else np.float32
    result = image.astype(work_dtype, copy=False)
    for axis, out_size in ((row_axis, out_height), (col_axis, out_width)):
        low, high, weight = _interpolation_weights(result.shape[axis], out_size)
        shape = [1] * result.ndim
        shape[axis] = out_size
        weight = weight.astype(work_dtype).reshape(shape)
        low_values, high_values = np.take(result, low, axis=axis), np.take(result, high, axis=axis)
        result = low_values + (high_values - low_values) * weight
    if image.dtype.kind != "f":
        info = np.iinfo(image.dtype) if image.dtype.kind in "iu" else None
        result = np.rint(result)
        if info is not None:
            result = np.clip(result, info.min, info.max)
        return result.astype(image.dtype)
    return result


class Resize:
    """Resize to ``(height, width)``, or an int: the shorter side becomes ``size``, keeping the aspect ratio."""

    def __init__(self, size, interpolation="bilinear"):
        if isinstance(size, numbers.Integral):
            if size < 1:
                raise ValueError(f"Resize: size must be positive, got {size}")
            self.size = int(size)
        else:
            self.size = _size_pair(size, "Resize")
        self.interpolation = interpolation

    def output_size(self, height, width):
        """The (height, width) an input of this size is resized to (torchvision's rule for an int size)."""
        if not isinstance(self.size, int):
            return self.size
        if height <= width:
            return self.size, int(self.size * width / height)
        return int(self.size * height / width), self.size

    def __call__(self, image):
        image = _as_image(image, "Resize")
        row_axis, col_axis = _spatial_axes(image)
        return resize(image, self.output_size(image.shape[row_axis], image.shape[col_axis]), self.interpolation)

    def __repr__(self):
        return f"Resize(size={self.size}, interpolation={self.interpolation})"


class Grayscale:
    """RGB -> luma ``0.299 R + 0.587 G + 0.114 B`` (ITU-R 601-2, as Pillow); ``num_output_channels`` 1 or 3."""

    def __init__(self, num_output_channels=1):
        if num_output_channels not in (1, 3):
            raise ValueError(f"Grayscale: num_output_channels must be 1 or 3, got {num_output_channels}")
        self.num_output_channels = num_output_channels

    def __call__(self, image):
        image = _as_image(image, "Grayscale")
        channel_axis = 2 if image.dtype == np.uint8 else 0
        if image.ndim == 2:
            gray = image.astype(np.float32)
        elif image.shape[channel_axis] == 1:
            gray = np.take(image, 0, axis=channel_axis).astype(np.float32)
        elif image.shape[channel_axis] in (3, 4):
            weights = np.asarray([0.299, 0.587, 0.114], dtype=image.dtype if image.dtype.kind == "f" else np.float32)
            rgb = np.take(image, [0, 1, 2], axis=channel_axis).astype(weights.dtype)
            gray = np.tensordot(rgb, weights, axes=([channel_axis], [0]))
        else:
            raise ValueError(f"Grayscale: expected 1, 3 or 4 channels, got image shape {image.shape}")
        if image.dtype == np.uint8:
            gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
            return gray if self.num_output_channels == 1 else np.repeat(gray[:, :, None], 3, axis=2)
        gray = gray.astype(image.dtype)[None]
        return gray if self.num_output_channels == 1 else np.repeat(gray, 3, axis=0)

    def __repr__(self):
        return f"Grayscale(num_output_channels={self.num_output_channels})"


class Lambda:
    """Apply a user function: ``Lambda(fn)(x) == fn(x)``."""

    def __init__(self, function):
        if not callable(function):
            raise TypeError(f"Lambda: expected a callable, got {type(function).__name__}")
        self.function = function

    def __call__(self, image):
        return self.function(image)

    def __repr__(self):
        return "Lambda()"
