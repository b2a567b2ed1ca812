"""The Flask application: the static page and the JSON API (``GET /api/model``, ``POST /api/predict``; the
convolution demo and ``POST /api/explain`` are in :mod:`cnnkit.web.demo_routes`).

``POST /api/predict`` takes ``{"image": "data:image/png;base64,..."}`` (any image type Pillow reads, or the
bare base64) and answers ``{"top5": [...], "layers": [...], "input": {...}}`` (see ``Predictor.predict``).
Bodies over ``MAX_BODY_BYTES`` get 413; a body that is not a JSON object with a string ``image`` holding
base64 of a picture gets 400, and so does a picture past the image reader's limits (a decompression bomb, a
huge declared size or text chunk, a damaged file). Every error is JSON: ``{"error": "...", "status": code}``;
a server-side failure says so without details (they go to the log).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re

from flask import Flask, abort, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from ..viz import ImageInputError
from .demo_routes import json_error, register_demo_routes

MAX_BODY_BYTES = 1024 * 1024
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                      re.ASCII)

log = logging.getLogger("cnnkit.web")


class BadRequestError(ValueError):
    """A request the API cannot use; the message is sent back with status 400."""


def decode_image_field(payload):
    """The picture bytes from a parsed request body ``{"image": "data:image/...;base64,..."}``."""
    if not isinstance(payload, dict):
        raise BadRequestError(f"the body must be a JSON object like {{\"image\": \"data:image/png;base64,...\"}}, "
                         f"got a JSON {type(payload).__name__}")
    if "image" not in payload:
        raise BadRequestError("the JSON object has no 'image' field; send {\"image\": \"data:image/png;base64,...\"}")
    text = payload["image"]
    if not isinstance(text, str):
        raise BadRequestError(f"'image' must be a string (a data URL or base64), got a JSON {type(text).__name__}")
    match = DATA_URL.match(text)
    if match:
        mime = match.group("mime") or "text/plain"
        if not mime.startswith("image/"):
            raise BadRequestError(f"'image' is a data URL of type {mime}; it must be an image "
                                  "(image/png, image/jpeg, ...)")
        if not match.group("b64"):
            raise BadRequestError("'image' is a data URL without ';base64'; encode the picture as base64")
        text = text[match.end():]
    elif text.startswith("data:"):
        raise BadRequestError("'image' is not a valid data URL; expected data:image/<type>;base64,<data>")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequestError(f"'image' is not valid base64 ({error})") from None
    if not data:
        raise BadRequestError("'image' is empty")
    return data


def read_image_request():
    """``(JSON object, picture bytes)`` of a request body ``{"image": ...}``: 413 past ``MAX_BODY_BYTES``,
    BadRequestError when it is not such a JSON object."""
    body = request.get_data(cache=False)  # raises 413 when the Content-Length is past MAX_CONTENT_LENGTH
    if len(body) > MAX_BODY_BYTES:
        abort(413)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:  # ValueError: also integers too long to convert
        raise BadRequestError(f"the body is not valid JSON ({error})") from None
    except RecursionError:  # deeply nested arrays or objects
        raise BadRequestError("the body's JSON is nested too deeply; send {\"image\": \"...\"}") from None
    return payload, decode_image_field(payload)


def create_app(predictor):
    """A Flask app serving ``predictor`` (a :class:`cnnkit.web.Predictor`) and the drawing page."""
    app = Flask("cnnkit.web", static_folder=STATIC_DIR, static_url_path="/static")
    # One byte over the cap: Werkzeug cuts a chunked body (no Content-Length) at MAX_CONTENT_LENGTH without an
    # error, so the cap itself is checked on what was read (a body of exactly MAX_BODY_BYTES is allowed).
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES + 1
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False
    model_json = json.dumps(predictor.description)  # the model never changes: encode its summary once

    @app.get("/")
    def index():
        return send_from_directory(STATIC_DIR, "index.html")

    @app.get("/api/model")
    def model_summary():
        return app.response_class(model_json, mimetype="application/json")

    @app.get("/api/health")
    def health():
        return jsonify(status="ok")

    @app.post("/api/predict")
    def predict():
        try:
            _, image = read_image_request()
            answer = predictor.predict(image)
        except (BadRequestError, ImageInputError) as error:
            return json_error(400, str(error))
        return jsonify(answer)

    register_demo_routes(app, predictor, read_image_request)

    @app.errorhandler(HTTPException)
    def http_error(error):
        messages = {413: f"the request body is larger than {MAX_BODY_BYTES} bytes; send a smaller image"}
        return json_error(error.code or 500, messages.get(error.code, error.description))

    @app.errorhandler(MemoryError)
    def out_of_memory(error):
        log.warning("cnnkit.web: out of memory while answering a request")
        return json_error(503, "the server ran out of memory for this request; try again or send a smaller image")

    @app.errorhandler(Exception)
    def unexpected_error(error):
        log.exception("cnnkit.web: unexpected error")
        # The details go to the server's log only: they may name files or objects of this machine.
        return json_error(500, "internal error; the server's log has the details")

    return app
