"""The web API: predictions and feature maps, the model summary, errors as JSON, and many requests at once."""
import base64
import http.client
import io
import json
import re
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnkit.autograd import Tensor, no_grad
from cnnkit.io import save_checkpoint
from cnnkit.models import create
from cnnkit.web import MAX_BODY_BYTES, Predictor, Server, create_app

CLASSES = ["x", "o", "plus", "triangle", "square", "diamond"]
MEAN, STD = [0.0889], [0.2228]
# By hand for LeNet-5: conv5 pad 2 (rf 5, jump 1, offset -2), pool 2 (rf 6, jump 2), conv5 (rf 6 + 4*2 = 14),
# pool 2 (rf 14 + 1*2 = 16, jump 4); padding only in the first conv, so the offset stays -2.
LENET_LAYERS = [("features.0", "Conv2d", [6, 28, 28], 5, 1), ("features.2", "MaxPool2d", [6, 14, 14], 6, 2),
                ("features.3", "Conv2d", [16, 10, 10], 14, 2), ("features.5", "MaxPool2d", [16, 5, 5], 16, 4)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import cnnkit

    cnnkit.manual_seed(3)
    model = create("lenet5", num_classes=len(CLASSES), in_channels=1, image_size=28)
    path = tmp_path_factory.mktemp("web") / "best.safetensors"
    save_checkpoint(path, model, extra={"data": {"dataset": "shapes", "classes": CLASSES, "in_channels": 1,
                                                 "image_size": 28, "mean": MEAN, "std": STD}})
    return path


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def client(predictor):
    return create_app(predictor).test_client()


def drawing(kind="x", size=(280, 280), mode="RGB", background="white", ink="black", file_format="PNG"):
    """A data URL of a mark drawn like on the page's canvas."""
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    if kind == "x":
        draw.line([(0.2 * width, 0.2 * height), (0.8 * width, 0.8 * height)], fill=ink, width=18)
        draw.line([(0.8 * width, 0.2 * height), (0.2 * width, 0.8 * height)], fill=ink, width=18)
    elif kind == "o":
        draw.ellipse([0.25 * width, 0.2 * height, 0.75 * width, 0.8 * height], outline=ink, width=16)
    elif kind == "plus":
        draw.line([(0.5 * width, 0.15 * height), (0.5 * width, 0.85 * height)], fill=ink, width=18)
        draw.line([(0.15 * width, 0.5 * height), (0.85 * width, 0.5 * height)], fill=ink, width=18)
    else:
        draw.rectangle([0.25 * width, 0.25 * height, 0.75 * width, 0.75 * height], outline=ink, width=16)
    buffer = io.BytesIO()
    image.save(buffer, format=file_format)
    mime = "jpeg" if file_format == "JPEG" else file_format.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def _expected_probabilities(predictor, data_url):
    """Class probabilities computed directly with the model, outside the server."""
    prepared = predictor.prepare(base64.b64decode(data_url.split(",", 1)[1]))
    with no_grad():
        logits = np.asarray(predictor.model(Tensor(prepared.array[None])).data, dtype=np.float64)[0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def _check_answer(answer, expected_probs=None):
    top = answer["top5"]
    assert len(top) == 5
    probs = [entry["prob"] for entry in top]
    assert all(0.0 <= p <= 1.0 for p in probs) and sum(probs) <= 1.0 + 1e-9
    assert probs == sorted(probs, reverse=True)
    assert len({entry["label"] for entry in top}) == 5 and all(entry["label"] in CLASSES for entry in top)
    if expected_probs is not None:
        for entry in top:
            assert entry["prob"] == pytest.approx(expected_probs[CLASSES.index(entry["label"])], abs=1e-6)
    assert [(layer["name"], layer["type"], layer["shape"]) for layer in answer["layers"]] == \
        [(name, kind, shape) for name, kind, shape, _, _ in LENET_LAYERS]


# ------------------------------------------------------------------ the page and the model summary
def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and b'<canvas id="canvas"' in page.data
    for name, marker in (("app.js", b"/api/predict"), ("style.css", b".rf-box")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and marker in response.data
    for name in ("", "/static/app.js", "/static/style.css"):  # offline: nothing loaded from elsewhere
        text = client.get(name or "/").data
        assert b"http://" not in text and b"https://" not in text, name


def test_model_summary(client):
    response = client.get("/api/model")
    assert response.status_code == 200
    model = response.get_json()
    assert model["name"] == "lenet5" and model["classes"] == CLASSES
    assert model["input"] == {"channels": 1, "size": [28, 28], "mean": MEAN, "std": STD, "fit": "center",
                              "invert": "auto"}
    rows = {row["name"]: row for row in model["summary"]["layers"]}
    assert rows["features.0"]["params"] == 6 * 25 + 6 and rows["features.3"]["params"] == 16 * 6 * 25 + 16
    assert model["summary"]["total_params"] == 61706 - (10 - len(CLASSES)) * 85
    assert [(layer["name"], layer["rf"]["rf"], layer["rf"]["jump"]) for layer in model["feature_layers"]] == \
        [(name, [rf, rf], [jump, jump]) for name, _, _, rf, jump in LENET_LAYERS]


# ------------------------------------------------------------------ predictions
def test_predict_answers_top5_and_every_layer(client, predictor):
    image = drawing("x")
    response = client.post("/api/predict", json={"image": image})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    _check_answer(answer, _expected_probabilities(predictor, image))
    for layer, (_, _, shape, rf, jump) in zip(answer["layers"], LENET_LAYERS):
        assert layer["rf"]["rf"] == [rf, rf] and layer["rf"]["jump"] == [jump, jump]
        assert layer["rf"]["offset"] == [-2, -2]
        assert len(layer["maps"]) == shape[0]
        with Image.open(io.BytesIO(base64.b64decode(layer["maps"][0].split(",", 1)[1]))) as picture:
            assert picture.size == (shape[2], shape[1])
    assert answer["input"]["inverted"] is True and answer["input"]["size"] == [28, 28]


def test_feature_map_pixels_are_the_layer_outputs(client, predictor):
    image = drawing("o")
    answer = client.post("/api/predict", json={"image": image}).get_json()
    prepared = predictor.prepare(base64.b64decode(image.split(",", 1)[1]))
    with no_grad():
        conv = np.asarray(predictor.model.features[0](Tensor(prepared.array[None])).data)[0]
    layer = answer["layers"][0]
    low, high = layer["range"]
    assert (low, high) == pytest.approx((conv.min(), conv.max()), rel=1e-5)
    for channel in (0, 5):
        with Image.open(io.BytesIO(base64.b64decode(layer["maps"][channel].split(",", 1)[1]))) as picture:
            pixels = np.asarray(picture, dtype=np.float64)
        np.testing.assert_allclose(pixels, (conv[channel] - low) / (high - low) * 255, atol=0.51)


@pytest.mark.parametrize("variant", [
    {"size": (64, 48), "file_format": "JPEG"},                                 # any size, JPEG
    {"mode": "RGBA", "background": (0, 0, 0, 0), "ink": (0, 0, 0, 255)},       # ink on a transparent canvas
    {"mode": "L", "background": 0, "ink": 255, "size": (28, 28)},              # already white on black
])
def test_predict_accepts_any_picture(client, predictor, variant):
    image = drawing("plus", **variant)
    response = client.post("/api/predict", json={"image": image})
    assert response.status_code == 200, response.get_json()
    _check_answer(response.get_json(), _expected_probabilities(predictor, image))
    assert response.get_json()["input"]["inverted"] is (variant.get("ink") != 255)


def test_predict_accepts_bare_base64(client):
    bare = drawing("x").split(",", 1)[1]
    response = client.post("/api/predict", data=json.dumps({"image": bare}), content_type="text/plain")
    assert response.status_code == 200


# ------------------------------------------------------------------ errors
BAD_REQUESTS = {
    "malformed JSON": (b'{"image": "data:image/png;base64,', "not valid JSON"),
    "not UTF-8": (b"\xff\xfe\x00", "not valid JSON"),
    "a JSON list": (b'["data:image/png;base64,AAAA"]', "JSON object"),
    "no image field": (b'{"picture": "x"}', "no 'image'"),
    "image is a number": (b'{"image": 123}', "must be a string"),
    "image is null": (b'{"image": null}', "must be a string"),
    "bad base64": (b'{"image": "data:image/png;base64,@@@not-base64@@@"}', "base64"),
    "base64 of text": (json.dumps({"image": "data:image/png;base64," + base64.b64encode(b"hello").decode()}).encode(),
                       "not an image"),
    "text data URL": (b'{"image": "data:text/plain;base64,aGVsbG8="}', "must be an image"),
    "data URL without base64": (b'{"image": "data:image/png,abc"}', "base64"),
    "empty": (b'{"image": ""}', "empty"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_400_json_and_the_server_goes_on(client, name):
    body, message = BAD_REQUESTS[name]
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert response.status_code == 400
    error = response.get_json()
    assert error["status"] == 400 and message in error["error"]
    assert client.post("/api/predict", json={"image": drawing("x")}).status_code == 200


def test_oversized_body_gets_413_json(client):
    body = json.dumps({"image": "data:image/png;base64," + "A" * MAX_BODY_BYTES}).encode()
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert response.status_code == 413 and response.get_json()["status"] == 413
    assert "larger than" in response.get_json()["error"]
    assert client.post("/api/predict", json={"image": drawing("x")}).status_code == 200


def test_the_cap_is_exactly_max_body_bytes(client):
    picture = json.dumps({"image": drawing("x")}).encode()
    for padding, status in ((MAX_BODY_BYTES - len(picture), 200), (MAX_BODY_BYTES - len(picture) + 1, 413)):
        body = picture + b" " * padding  # JSON allows trailing white space
        assert client.post("/api/predict", data=body, content_type="application/json").status_code == status


def test_unknown_routes_and_methods_are_json(client):
    assert client.get("/api/nothing").get_json()["status"] == 404
    assert client.get("/api/predict").status_code == 405


# ------------------------------------------------------------------ a real server under load
@pytest.fixture(scope="module", params=["waitress", "werkzeug"])
def server(predictor, request):
    # waitress is what 'cnnkit serve' uses; Werkzeug's threaded server is its fallback without waitress
    running = Server(create_app(predictor), host="127.0.0.1", port=0,
                     prefer_waitress=request.param == "waitress").start()
    assert running.kind == request.param
    yield running
    running.stop()


def _post(server, body, content_type="application/json", chunked=False):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        started = time.perf_counter()
        if chunked:  # no Content-Length: the cap must hold while the body streams in
            pieces = iter([body[start:start + 65536] for start in range(0, len(body), 65536)])
            connection.request("POST", "/api/predict", body=pieces, headers={"Content-Type": content_type},
                               encode_chunked=True)
        else:
            connection.request("POST", "/api/predict", body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        return response.status, json.loads(payload), time.perf_counter() - started
    finally:
        connection.close()


OVERSIZED = b'{"image": "' + b"A" * (MAX_BODY_BYTES + 10) + b'"}'


@pytest.mark.parametrize("name", ["malformed JSON", "a JSON list", "image is a number", "text data URL",
                                  "base64 of text", "oversized", "oversized, chunked"])
def test_real_server_answers_bad_requests_with_4xx_and_goes_on(server, name):
    if name.startswith("oversized"):
        status, answer, _ = _post(server, OVERSIZED, chunked=name.endswith("chunked"))
        assert status == 413 and answer["status"] == 413 and "larger than" in answer["error"]
    else:
        body, message = BAD_REQUESTS[name]
        status, answer, _ = _post(server, body)
        assert status == 400 and answer["status"] == 400 and message in answer["error"]
    status, answer, _ = _post(server, json.dumps({"image": drawing("o")}).encode())
    assert status == 200 and len(answer["top5"]) == 5


def test_load_200_requests_from_8_clients(server, client, capsys):
    images = [drawing(kind) for kind in ("x", "o", "plus", "square")]
    # The answers one at a time, through the test client: every concurrent answer must equal its image's.
    expected = [client.post("/api/predict", json={"image": image}).get_json() for image in images]
    bodies = [json.dumps({"image": image}).encode() for image in images]

    def one(index):
        status, answer, seconds = _post(server, bodies[index % len(bodies)])
        return index, status, answer, seconds

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(200)))
    elapsed = time.perf_counter() - started
    latencies = []
    for index, status, answer, seconds in results:
        assert status == 200, answer
        reference = expected[index % len(images)]
        assert [e["label"] for e in answer["top5"]] == [e["label"] for e in reference["top5"]]
        assert [e["prob"] for e in answer["top5"]] == pytest.approx([e["prob"] for e in reference["top5"]], abs=1e-6)
        # no request saw another's feature maps
        assert [layer["maps"] for layer in answer["layers"]] == [layer["maps"] for layer in reference["layers"]]
        latencies.append(seconds)
    p50, p95 = np.percentile(latencies, [50, 95])
    with capsys.disabled():  # shown in CI's log even without -s
            print(f"\nload test ({server.kind}): 200 requests, 8 clients, {elapsed:.2f} s, "
              f"{200 / elapsed:.1f} req/s, latency p50 {1000 * p50:.1f} ms, p95 {1000 * p95:.1f} ms, "
              f"max {1000 * max(latencies):.1f} ms, mean {1000 * statistics.mean(latencies):.1f} ms")


# ------------------------------------------------------------------ cnnkit serve
def _interrupted(server):
    raise KeyboardInterrupt  # Ctrl-C right away


def test_cli_serve_prints_its_url(checkpoint, monkeypatch, capsys):
    from cnnkit.cli.main import main

    monkeypatch.setattr(Server, "serve_forever", _interrupted)
    assert main(["serve", str(checkpoint), "--port", "0"]) == 0
    out = capsys.readouterr().out
    url = re.search(r"open (http://127\.0\.0\.1:(\d+)/)", out)
    assert url and int(url.group(2)) > 0, out
    assert "x, o, plus, triangle, square, diamond" in out


def test_cli_serve_errors(checkpoint, tmp_path, capsys):
    import socket

    from cnnkit.cli.main import main

    assert main(["serve", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(checkpoint), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the trainer draws its tqdm bar."""

    def isatty(self):
        return True


def test_cli_serve_without_checkpoint_trains_lenet5_then_serves_the_latest_run(tmp_path, monkeypatch, capsys):
    import sys

    from cnnkit.cli import train as train_command
    from cnnkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    # The real 'cnnkit train' defaults (LeNet-5 on shapes), on a slice of the data so that this stays fast.
    monkeypatch.setitem(train_command.DEFAULTS, "train_split", "train[:256]")
    monkeypatch.setitem(train_command.DEFAULTS, "val_split", "test[:64]")
    monkeypatch.setattr(Server, "serve_forever", _interrupted)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    assert main(["serve", "--port", "0", "--train-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "training lenet5 on the built-in shapes data for 1 epoch(s) first" in out
    assert re.search(r"epoch 1/1: .*\d+/4 .*batch", terminal.getvalue()), terminal.getvalue()[-500:]
    trained = (tmp_path / "runs" / "latest" / "best.safetensors").resolve()
    assert trained.is_file() and trained.parent.name.startswith("lenet5-shapes-")
    assert re.search(r"serving lenet5 from \S+best\.safetensors", out) and "open http://127.0.0.1:" in out

    # Now runs/latest exists: served as it is, without training again.
    assert main(["serve", "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert "training" not in out and f"from {Path('runs', 'latest', 'best.safetensors')} with" in out
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["latest", trained.parent.name]


def test_cli_serve_latest_run_without_a_checkpoint_says_how_to_finish_it(tmp_path, monkeypatch, capsys):
    from cnnkit.cli.main import main
    from cnnkit.io import write_latest

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "stopped").mkdir(parents=True)
    write_latest(tmp_path / "runs" / "stopped")
    assert main(["serve", "--port", "0"]) == 2
    assert "cnnkit train --resume runs/latest" in capsys.readouterr().err

