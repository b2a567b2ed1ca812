"""The error type of ``cnnkit.onnx`` and the guarded import of the ``onnx`` package."""
from __future__ import annotations


class OnnxError(ValueError):
    """An ONNX file or graph that cannot be exported, read or run: names the file, node and operator."""


def onnx_package():
    """The ``onnx`` module, or an ImportError that says how to install it."""
    try:
        import onnx
        import onnx.numpy_helper  # noqa: F401  (a submodule, not loaded by ``import onnx`` on every version)
    except ImportError:
        raise ImportError("ONNX export and import need the onnx package: pip install onnx "
                          "(or pip install 'cnnkit[onnx]')") from None
    return onnx
