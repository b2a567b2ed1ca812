"""ONNX export of cnnkit models (``export``) and import of ONNX graphs as trainable modules (``load``)."""
from .errors import OnnxError
from .export import build_graph, export
from .load import OnnxModule, load

__all__ = ["export", "build_graph", "load", "OnnxModule", "OnnxError"]
