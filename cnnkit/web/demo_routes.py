"""Routes of the convolution demo (``/conv``, ``GET /api/conv``) and of class evidence (``POST /api/explain``).

``GET /api/conv?width=5&height=5&depth=3&filters=2&kernel=3&stride=2&padding=1&dilation=1&seed=0`` answers every
number of the demo (see :func:`cnnkit.viz.conv_demo.conv_demo`), computed with ``F.conv2d``; settings that do not
tile the input answer 400 with cnnkit's strict-mode message and the output-size formula.
``POST /api/explain`` takes ``{"image": "data:image/png;base64,...", "method": "gradcam"}`` and answers the top
class's heat map (see :meth:`cnnkit.web.Predictor.explain`).
"""
from __future__ import annotations

import json
import os

from flask import jsonify, request, send_from_directory

from ..viz import ImageInputError
from ..viz.conv_demo import DEFAULTS, conv_demo, demo_parameters, output_size_formula

DEMO_STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "viz", "static")


def json_error(status, message, **extra):
    """A JSON error answer ``{"error": message, "status": status, **extra}`` with that status code."""
    response = jsonify(error=message, status=status, **extra)
    response.status_code = status
    return response


def register_demo_routes(app, predictor, read_image):
    """Add the demo's and the evidence's routes to ``app``; ``read_image()`` returns the request's JSON object
    and picture bytes, raising ValueError for a bad request."""

    @app.get("/conv")
    def conv_page():
        return send_from_directory(DEMO_STATIC_DIR, "conv.html")

    @app.get("/static/conv/<path:name>")
    def conv_static(name):
        return send_from_directory(DEMO_STATIC_DIR, name)

    @app.get("/api/conv/defaults")
    def conv_defaults():
        return jsonify(DEFAULTS)

    @app.get("/api/conv")
    def conv_numbers():
        values = {name: request.args.get(name) or None for name in DEFAULTS}
        try:
            settings = demo_parameters(**values)
        except ValueError as error:
            return json_error(400, str(error))
        try:
            return app.response_class(json.dumps(conv_demo(**settings)), mimetype="application/json")
        except ValueError as error:  # cnnkit's own message: the sizes do not tile, or the kernel does not fit
            return json_error(400, str(error), formula=output_size_formula(settings))

    @app.post("/api/explain")
    def explain_top_class():
        try:
            payload, image = read_image()
            method = payload.get("method", "gradcam")
            if not isinstance(method, str):
                raise ValueError(f"'method' must be a string, one of {', '.join(predictor.explain_methods)}")
            answer = predictor.explain(image, method)
        except (ValueError, ImageInputError) as error:
            return json_error(400, str(error))
        return jsonify(answer)
