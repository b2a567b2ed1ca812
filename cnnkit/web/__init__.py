"""``cnnkit serve``'s web page: draw a mark, watch the predictions, the feature maps and their receptive fields."""
from .app import MAX_BODY_BYTES, create_app, decode_image_field
from .predictor import Predictor
from .server import Server

__all__ = ["create_app", "Predictor", "Server", "decode_image_field", "MAX_BODY_BYTES"]
