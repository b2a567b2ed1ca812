"""ONNX export of cnnkit models (``export``) and import of ONNX graphs as trainable modules (``load``)."""
from .errors import OnnxError
from .export import build_graph, export
from .load import OnnxModule, load
from .ops import SUPPORTED_OPS

__all__ = ["export", "build_graph", "load", "OnnxModule", "OnnxError", "SUPPORTED_OPS"]
