"""``Shapes``: the built-in data set of hand-drawn-looking marks (X, O, +, triangle, square, ...), made on the fly.

Each image is one white mark on a black background, randomly placed, scaled, stretched, rotated (at most
15 degrees, so X and + or square and diamond stay distinct), with jittered corners, a random stroke width
and brightness, and Gaussian pixel noise. Pixels are anti-aliased analytically: a pixel's coverage is
``clip(width/2 - distance + 0.5, 0, 1)`` from its centre's distance to the stroke (a 1-pixel box filter).
The whole set is generated with vectorised NumPy from ``(seed, split)``, so it is identical on every run.
"""
from __future__ import annotations

import math

import numpy as np

from .dataset import InMemoryImages

# Each mark is a polyline drawing: vertices in a unit frame (y down) and the edges joining them.
_SQUARE = [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
_TRIANGLE = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (-90, 30, 150)]
_PENTAGON = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (-90, -18, 54, 126, 198)]
_HEXAGON = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in range(0, 360, 60)]
_CLOSED4 = [(0, 1), (1, 2), (2, 3), (3, 0)]
SHAPE_DRAWINGS = {
    "x": ([(-0.75, -0.75), (0.75, 0.75), (-0.75, 0.75), (0.75, -0.75)], [(0, 1), (2, 3)]),
    "plus": ([(-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0)], [(0, 1), (2, 3)]),
    "triangle": (_TRIANGLE, [(0, 1), (1, 2), (2, 0)]),
    "square": (_SQUARE, _CLOSED4),
    "diamond": ([(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)], _CLOSED4),
    "star": (_PENTAGON, [(0, 2), (2, 4), (4, 1), (1, 3), (3, 0)]),
    "hexagon": (_HEXAGON, [(i, (i + 1) % 6) for i in range(6)]),
    "line": ([(-1.0, 0.0), (1.0, 0.0)], [(0, 1)]),
}
CIRCLE = "o"  # drawn as an ellipse outline from its distance field, not from segments
AVAILABLE_SHAPES = ("x", "o", "plus", "triangle", "square", "diamond", "star", "hexagon", "line")
DEFAULT_CLASSES = ("x", "o", "plus", "triangle", "square", "diamond")
DEFAULT_TRAIN_SAMPLES = 6000
DEFAULT_TEST_SAMPLES = 1000
# Pixel mean and std of the default training set (28x28, 6 classes, seed 0), for Normalize.
SHAPES_MEAN = (0.1222,)
SHAPES_STD = (0.2311,)

_CIRCLE_RADIUS = 0.85
_MAX_ROTATION = math.radians(15.0)
_NOISE_CHUNK = 256  # images per noise draw: fixed, so images do not depend on memory-driven chunking
_WORK_ELEMENTS = 2_000_000  # float32 elements per temporary while measuring distances
_SPLIT_STREAMS = {"train": 0, "test": 1}


def _segment_distances(starts, ends, pixels):
    """Distance from every pixel to the nearest of each image's segments: (m, K, 2) x2, (P, 2) -> (m, P)."""
    direction = ends - starts                                               # (m, K, 2)
    length_sq = np.maximum((direction ** 2).sum(-1), 1e-12)[..., None]     # (m, K, 1)
    to_x = pixels[:, 0][None, None, :] - starts[..., 0:1]                  # (m, K, P)
    to_y = pixels[:, 1][None, None, :] - starts[..., 1:2]
    along = np.clip((to_x * direction[..., 0:1] + to_y * direction[..., 1:2]) / length_sq, 0.0, 1.0)
    off_x = to_x - along * direction[..., 0:1]
    off_y = to_y - along * direction[..., 1:2]
    return np.sqrt((off_x * off_x + off_y * off_y).min(axis=1))


def _ellipse_distances(centres, cos_t, sin_t, radius_x, radius_y, pixels):
    """Radial distance from every pixel to each image's rotated ellipse outline: -> (m, P)."""
    rel_x = pixels[:, 0][None, :] - centres[:, 0:1]
    rel_y = pixels[:, 1][None, :] - centres[:, 1:2]
    local_x = cos_t[:, None] * rel_x + sin_t[:, None] * rel_y
    local_y = -sin_t[:, None] * rel_x + cos_t[:, None] * rel_y
    norm = np.sqrt(local_x * local_x + local_y * local_y)
    scaled = np.sqrt((local_x / radius_x[:, None]) ** 2 + (local_y / radius_y[:, None]) ** 2)
    # the outline's radius in the pixel's direction (the minor radius at the exact centre)
    outline = np.where(scaled > 1e-6, norm / np.maximum(scaled, 1e-6), np.minimum(radius_x, radius_y)[:, None])
    return np.abs(norm - outline)


def generate_shapes(num_samples, image_size=28, classes=DEFAULT_CLASSES, seed=0, split="train"):
    """Return ``(images uint8 (N, S, S), labels int64 (N,))`` of random marks, deterministic in (seed, split)."""
    classes = tuple(classes)
    unknown = [name for name in classes if name not in AVAILABLE_SHAPES]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"Shapes: classes must be 2 or more distinct names from {AVAILABLE_SHAPES}, got {classes}")
    if int(image_size) < 8:
        raise ValueError(f"Shapes: image_size must be at least 8 pixels, got {image_size}")
    if split not in _SPLIT_STREAMS:
        raise ValueError(f"Shapes: split must be 'train' or 'test', got {split!r}")
    if int(seed) < 0 or int(num_samples) < 1:
        raise ValueError(f"Shapes: need seed >= 0 and num_samples >= 1, got seed={seed}, num_samples={num_samples}")
    size, count = int(image_size), int(num_samples)
    # train and test draw from different streams of the same seed
    rng = np.random.default_rng([int(seed), _SPLIT_STREAMS[split]])
    labels = rng.permutation(np.arange(count) % len(classes)).astype(np.int64)

    unit = size / 28.0  # sizes below are in pixels of a 28x28 image
    radius = rng.uniform(6.0, 12.0, count) * unit
    aspect = np.exp(rng.uniform(-0.25, 0.25, count))
    radius_x, radius_y = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION, count)
    width = rng.uniform(1.4, 3.0, count) * unit
    brightness = rng.uniform(0.5, 1.0, count)
    noise_std = rng.uniform(0.0, 0.15, count)
    max_vertices = max(len(vertices) for vertices, _ in SHAPE_DRAWINGS.values())
    jitter = rng.normal(0.0, 0.08, (count, max_vertices, 2))
    reach = np.maximum(radius_x, radius_y) * 1.05 + width / 2 + 0.5
    slack = np.maximum(size / 2 - reach, 0.0)
    centres = size / 2 + rng.uniform(-1.0, 1.0, (count, 2)) * slack[:, None]

    coords = (np.arange(size, dtype=np.float32) + 0.5)
    grid_y, grid_x = np.meshgrid(coords, coords, indexing="ij")
    pixels = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    distance = np.empty((count, size * size), dtype=np.float32)
    cos_t, sin_t = np.cos(angle), np.sin(angle)
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        if name == CIRCLE:
            for chunk in _chunks(members, size * size * 8):
                distance[chunk] = _ellipse_distances(centres[chunk], cos_t[chunk], sin_t[chunk],
                                                     radius_x[chunk] * _CIRCLE_RADIUS,
                                                     radius_y[chunk] * _CIRCLE_RADIUS, pixels)
            continue
        template, edges = SHAPE_DRAWINGS[name]
        template = np.asarray(template, dtype=np.float64)
        edges = np.asarray(edges)
        for chunk in _chunks(members, size * size * len(edges) * 6):
            local = template[None] + jitter[chunk, :len(template)]
            local = local * np.stack([radius_x[chunk], radius_y[chunk]], axis=1)[:, None, :]
            rotated_x = cos_t[chunk, None] * local[..., 0] - sin_t[chunk, None] * local[..., 1]
            rotated_y = sin_t[chunk, None] * local[..., 0] + cos_t[chunk, None] * local[..., 1]
            vertices = np.stack([rotated_x, rotated_y], axis=-1) + centres[chunk, None, :]
            vertices = vertices.astype(np.float32)
            distance[chunk] = _segment_distances(vertices[:, edges[:, 0]], vertices[:, edges[:, 1]], pixels)

    images = np.empty((count, size, size), dtype=np.uint8)
    for start in range(0, count, _NOISE_CHUNK):
        stop = min(start + _NOISE_CHUNK, count)
        noise_rng = np.random.default_rng([int(seed), _SPLIT_STREAMS[split], 1, start // _NOISE_CHUNK])
        coverage = np.clip(width[start:stop, None].astype(np.float32) / 2 - distance[start:stop] + 0.5, 0.0, 1.0)
        noise = noise_rng.standard_normal((stop - start, size * size), dtype=np.float32)
        value = coverage * brightness[start:stop, None].astype(np.float32)
        value += noise * noise_std[start:stop, None].astype(np.float32)
        images[start:stop] = np.rint(np.clip(value, 0.0, 1.0) * 255).astype(np.uint8).reshape(-1, size, size)
    return images, labels


def _chunks(indices, elements_per_image):
    step = max(1, _WORK_ELEMENTS // max(1, elements_per_image))
    for start in range(0, len(indices), step):
        yield indices[start:start + step]


class Shapes(InMemoryImages):
    """Built-in data set of procedurally drawn grayscale marks; samples are ``(uint8 HxW image, label)``.

    ``Shapes(num_samples=None, image_size=28, classes=('x','o','plus','triangle','square','diamond'), seed=0,
    train=True)``: 6000 training or 1000 test images by default; ``split='train'|'test'`` may replace ``train``.
    Also available: 'star', 'hexagon', 'line'.
    """

    in_channels = 1
    mean = SHAPES_MEAN
    std = SHAPES_STD

    def __init__(self, num_samples=None, image_size=28, classes=DEFAULT_CLASSES, seed=0, train=True, split=None,
                 transform=None, target_transform=None):
        if split is None:
            split = "train" if train else "test"
        self.split = split
        self.train = split == "train"
        if num_samples is None:
            num_samples = DEFAULT_TRAIN_SAMPLES if self.train else DEFAULT_TEST_SAMPLES
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.transform = transform
        self.target_transform = target_transform
        self.data, self.targets = generate_shapes(num_samples, image_size, self.classes, seed, split)

    def __repr__(self):
        return (f"Shapes(split={self.split!r}, num_samples={len(self)}, image_size={self.image_size}, "
                f"classes={tuple(self.classes)}, seed={self.seed})")
