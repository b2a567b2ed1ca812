"""The model behind the web page: prepare a picture, classify it and return every conv/pool layer's maps.

Thread safety: the model is put in eval mode once and never changed afterwards; each request runs its own
forward pass under ``no_grad`` and collects its layers' outputs in storage local to its thread
(:class:`cnnkit.viz.LayerTap`), and everything else a request touches is created for that request. The
predictions come from the model frozen for inference (``cnnkit.inference.freeze``), whose calls take turns.
"""
from __future__ import annotations

import base64
import io
import threading

import numpy as np
from PIL import Image

from ..analysis import summary
from ..autograd import Tensor
from ..inference import freeze
from ..io import load_model, read_metadata
from ..viz import LayerTap, geometry_from_records, layer_geometry, prepare_image
from ..viz.evidence import class_activation_map, explain, last_conv_layer
from ..viz.evidence_plots import heatmap_rgba

MAX_MAPS_PER_LAYER = 64


def png_data_url(pixels):
    """A ``data:image/png;base64,...`` URL of a uint8 (H, W) or (H, W, 3) array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _layer_pixels(maps):
    """(C, H, W) maps to uint8 on one scale for the whole layer (its min..max), and that range."""
    low, high = float(maps.min()), float(maps.max())
    scaled = (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    return np.round(scaled * 255).astype(np.uint8), [low, high]


def softmax(logits):
    """``exp(z - max) / sum(exp(z - max))`` in float64."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class Predictor:
    """A model with what it needs to read pictures: class names, input channels and size, normalisation."""

    def __init__(self, model, class_names=None, input_size=(28, 28), channels=1, mean=None, std=None,
                 fit="center", invert="auto", name=None, source=None, max_maps=MAX_MAPS_PER_LAYER):
        self.model = model.eval()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.channels = int(channels)
        self.mean, self.std, self.fit, self.invert = mean, std, fit, invert
        self.name = name or getattr(model, "model_name", None) or type(model).__name__
        self.source = source
        self.max_maps = max_maps
        self.dtype = next(iter(model.parameters())).dtype
        self.tap = LayerTap(model)
        self.geometry = layer_geometry(model, (1, self.channels, *self.input_size), tap=self.tap)
        blank = np.zeros((1, self.channels, *self.input_size), dtype=self.dtype)
        logits, records = self.tap.run(Tensor(blank))
        self.frozen = freeze(self.model, blank)
        # the feature maps end at the last conv/pool layer called: a request's tapped pass stops there
        called = [record.name for record in records]
        self._last_layer = called[-1] if called and called.count(called[-1]) == 1 else None
        num_classes = int(np.asarray(logits.data).shape[-1])
        names = [str(name) for name in (class_names or [])]
        if len(names) != num_classes:
            names = [str(index) for index in range(num_classes)]
        self.class_names = names
        self.explain_methods = self._explain_methods()
        # Explanations switch the parameters' requires_grad off and on, so two must not overlap.
        self._explain_lock = threading.Lock()
        self.description = self._describe()  # computed once; requests only read it

    @classmethod
    def from_checkpoint(cls, path, **options):
        """A predictor for a checkpoint written by ``cnnkit train`` or ``cnnkit.io.save_checkpoint``."""
        model = load_model(path)
        metadata = read_metadata(path)
        extra = metadata.get("extra") or {}
        data = extra.get("data") or {}
        config = metadata.get("model_config") or {}
        side = data.get("image_size") or config.get("image_size") or 28
        size = tuple(side) if isinstance(side, (list, tuple)) else (int(side), int(side))
        channels = int(config.get("in_channels") or data.get("in_channels") or 1)
        classes = data.get("classes") or extra.get("class_names") or extra.get("classes")
        return cls(model, classes, size, channels, data.get("mean"), data.get("std"),
                   name=metadata.get("model_name"), source=str(path), **options)

    def prepare(self, image):
        return prepare_image(image, self.input_size, self.channels, invert=self.invert, fit=self.fit,
                             mean=self.mean, std=self.std)

    def predict(self, image, top=5):
        """Classify a picture; returns the JSON-ready answer of ``POST /api/predict``."""
        prepared = self.prepare(image)
        batch = prepared.array[None].astype(self.dtype)
        x = Tensor(batch)
        _, records = self.tap.run(x, stop_after=self._last_layer)
        probabilities = softmax(self.frozen(batch).astype(np.float64)[0])
        order = np.argsort(-probabilities, kind="stable")[:min(top, len(probabilities))]
        geometries = geometry_from_records(records, id(x), self.input_size)
        layers = []
        for record, geometry in zip(records, geometries):
            maps = record.array[0]
            pixels, value_range = _layer_pixels(maps[:self.max_maps].astype(np.float64))
            layers.append({"name": record.name, "type": geometry.type, "shape": list(maps.shape),
                           "maps": [png_data_url(channel) for channel in pixels], "range": value_range,
                           "rf": geometry.to_dict()})
        return {
            "top5": [{"label": self.class_names[index], "index": int(index), "prob": float(probabilities[index])}
                     for index in order],
            "layers": layers,
            "input": {"image": png_data_url(prepared.pixels), "inverted": prepared.inverted,
                      "view": prepared.view, "size": list(self.input_size)},
        }

    def _explain_methods(self):
        """The class-evidence methods this model supports: CAM only for global-average-pooling networks."""
        methods = ["gradcam", "saliency", "occlusion"]
        try:
            class_activation_map(self.model, np.zeros((1, self.channels, *self.input_size), dtype=self.dtype))
            methods.insert(0, "cam")
        except ValueError:
            pass
        return methods

    def _occlusion_fill(self):
        """The normalised value of a background (black) pixel, which occlusion patches are filled with."""
        mean = 0.0 if self.mean is None else float(np.ravel(self.mean)[0])
        std = 1.0 if self.std is None else float(np.ravel(self.std)[0])
        return -mean / std

    def explain(self, image, method="gradcam"):
        """The top class's heat map for a picture; the JSON-ready answer of ``POST /api/explain``."""
        if method not in self.explain_methods:
            raise ValueError(f"method {method!r} is not available for {self.name}; choose one of "
                             f"{', '.join(self.explain_methods)}")
        prepared = self.prepare(image)
        options = {"fill": self._occlusion_fill()} if method == "occlusion" else {}
        with self._explain_lock:
            evidence = explain(self.model, prepared.array[None].astype(self.dtype), method, **options)
        return {"method": evidence.method, "layer": evidence.layer, "target": evidence.target,
                "label": self.class_names[evidence.target], "score": evidence.score,
                "heatmap": png_data_url(heatmap_rgba(evidence.heatmap)), "view": prepared.view,
                "size": list(self.input_size)}

    def _describe(self):
        """The model's summary for ``GET /api/model``: name, classes, input, layers with shapes and fields."""
        report = summary(self.model, (self.channels, *self.input_size)).to_dict()
        return {
            "name": self.name,
            "source": self.source,
            "classes": self.class_names,
            "input": {"channels": self.channels, "size": list(self.input_size), "mean": self.mean,
                      "std": self.std, "fit": self.fit, "invert": self.invert},
            "summary": report,
            "feature_layers": [{"name": name, "type": geometry.type, "shape": list(geometry.output_shape),
                                "rf": geometry.to_dict()} for name, geometry in self.geometry.items()],
            "explain": {"methods": self.explain_methods, "layer": last_conv_layer(self.model)},
        }
