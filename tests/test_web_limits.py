"""The server under hostile clients: bombs and damaged images get 400, idle connections lock nobody out."""
import base64
import http.client
import io
import json
import re
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageDraw

import cnnkit
from cnnkit.models import create
from cnnkit.web import Predictor, Server, create_app


def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width, height, idat=b""):
    """A PNG whose header declares ``width`` x ``height`` 8-bit gray pixels, with ``idat`` as its data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def small_png(**chunks):
    """A valid 8 x 8 PNG, with extra chunks put right after its header."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 255).save(buffer, format="PNG")
    data = buffer.getvalue()
    extra = b"".join(png_chunk(kind.encode(), payload) for kind, payload in chunks.items())
    return data[:33] + extra + data[33:]


def bomb_png():
    """A real decompression bomb: 20000 x 20000 zero pixels compressed to a few hundred kilobytes."""
    rows = zlib.compressobj(9)
    row = b"\x00" * 20001
    idat = b"".join(rows.compress(row) for _ in range(20000)) + rows.flush()
    return png_declaring(20000, 20000, idat)


def gif_declaring(width, height):
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"," + struct.pack("<HHHHB", 0, 0, width,
            height, 0) + b"\x02\x02\x44\x01\x00;")


def bmp_declaring(width, height):
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def bad_crc_png():
    data = bytearray(small_png())
    data[29] ^= 0xFF  # inside the header chunk's CRC
    return bytes(data)


HOSTILE_IMAGES = {
    "PNG bomb 20000 x 20000": (bomb_png, "image too large: 20000 x 20000"),
    "PNG declaring 100000 x 100000": (lambda: png_declaring(100000, 100000), "image too large: 100000 x 100000"),
    "PNG declaring 5000 x 4000": (lambda: png_declaring(5000, 4000), "image too large: 5000 x 4000"),
    "PNG declaring 0 x 0": (lambda: png_declaring(0, 0), "not an image"),
    "GIF declaring 65535 x 65535": (lambda: gif_declaring(65535, 65535), "image too large: 65535 x 65535"),
    "BMP declaring 40000 x 40000": (lambda: bmp_declaring(40000, 40000), "image too large"),
    "zTXt chunk inflating to 4 MB": (lambda: small_png(zTXt=b"k\x00\x00" + zlib.compress(b"a" * (4 << 20))),
                                     "text chunk"),
    "iTXt chunk inflating to 4 MB": (lambda: small_png(iTXt=b"k\x00\x01\x00\x00\x00" + zlib.compress(b"a" * (4 << 20))),
                                     "text chunk"),
    "header chunk with a bad CRC": (bad_crc_png, "not an image"),
    "truncated after the header": (lambda: small_png()[:40], "image"),
    "IDAT that is not zlib": (lambda: png_declaring(8, 8, b"not zlib at all"), "damaged"),
    "EPS, which Pillow would pass to Ghostscript": (lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n",
                                                    "not an image"),
    "chunk length past the end": (lambda: small_png()[:33] + struct.pack(">I", 0x7FFFFFF0) + b"tEXt" + b"x" * 16,
                                  "image"),
}


@pytest.fixture(scope="module")
def predictor():
    cnnkit.manual_seed(5)
    return Predictor(create("lenet5", num_classes=4, in_channels=1, image_size=28), ["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def client(predictor):
    return create_app(predictor).test_client()


def data_url(data):
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def drawing():
    image = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(image).ellipse([12, 12, 52, 52], outline=0, width=6)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return data_url(buffer.getvalue())


def assert_clean_400(response, message):
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert message in error
    # no internals: object addresses, tracebacks or source files of this machine
    assert "0x" not in error and "Traceback" not in error and ".py" not in error
    assert not re.search(r"\b\w+(Error|Exception)\b", error)  # no exception class names


@pytest.mark.parametrize("name", list(HOSTILE_IMAGES))
def test_hostile_images_get_one_clear_400(client, name):
    make, message = HOSTILE_IMAGES[name]
    data = make()
    if len(data) > 700_000:  # over the body cap once in base64: the server must say 413, as for any big body
        pytest.fail(f"test image {name} is too big for the body cap ({len(data)} bytes)")
    assert_clean_400(client.post("/api/predict", json={"image": data_url(data)}), message)


NESTED = {
    "an integer of 5000 digits": b'{"image": 1' + b"0" * 5000 + b"}",
    "a lone surrogate": b'{"image": "\\ud800"}',
    "a byte-order mark": b'\xef\xbb\xbf{"image": "x"}',
    "100000 nested lists": b"[" * 100_000 + b"]" * 100_000,
    "100000 nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "nested image field": b'{"image": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "unclosed nesting": b"[" * 200_000,
}


@pytest.mark.parametrize("name", list(NESTED))
def test_deeply_nested_or_odd_json_gets_400(client, name):
    response = client.post("/api/predict", data=NESTED[name], content_type="application/json")
    assert response.status_code == 400 and response.get_json()["status"] == 400
    assert "0x" not in response.get_json()["error"]
    assert client.post("/api/predict", json={"image": drawing()}).status_code == 200


def _open_idle(port, count, partial):
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if partial and index % 2:  # half send an unfinished request, as a slow client does
            sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        sockets.append(sock)
    return sockets


def _predict(port, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.perf_counter()
        connection.request("POST", "/api/predict", body=json.dumps({"image": drawing()}),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        return response.status, answer, time.perf_counter() - started
    finally:
        connection.close()


@pytest.fixture
def waitress_server(predictor):
    running = Server(create_app(predictor), host="127.0.0.1", port=0, idle_timeout=2).start()
    assert running.kind == "waitress"
    yield running
    running.stop()


@pytest.mark.parametrize("kind", ["waitress", "werkzeug"])
def test_300_idle_connections_do_not_lock_out_a_new_client(predictor, kind, capsys):
    # waitress is what 'cnnkit serve' uses; Werkzeug's threaded server is its fallback without waitress
    server = Server(create_app(predictor), host="127.0.0.1", port=0, prefer_waitress=kind == "waitress",
                    idle_timeout=30).start()
    assert server.kind == kind
    idle = _open_idle(server.port, 300, partial=True)
    try:
        _predict(server.port)  # a first prediction warms the model up
        status, answer, seconds = _predict(server.port)
        assert status == 200 and len(answer["top5"]) == 4
        with capsys.disabled():
            print(f"\nprediction beside 300 idle connections ({kind}): {1000 * seconds:.0f} ms")
        # a functional bound, not a speed target: waitress's defaults made this wait up to two minutes
        assert seconds < 1.0
        if kind == "waitress":  # and 8 busy clients beside the idle ones all get answers
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(lambda _: _predict(server.port), range(200)))
            assert [status for status, _, _ in results] == [200] * 200
            p50, p95 = np.percentile([seconds for _, _, seconds in results], [50, 95])
            with capsys.disabled():
                print(f"8 clients x 25 predictions beside 300 idle connections: p50 {1000 * p50:.0f} ms, "
                      f"p95 {1000 * p95:.0f} ms")
    finally:
        for sock in idle:
            sock.close()
        server.stop()


def test_idle_connections_are_closed_after_the_idle_timeout(waitress_server):
    idle = _open_idle(waitress_server.port, 5, partial=False)
    try:
        deadline = time.monotonic() + 15
        for sock in idle:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(1) == b""  # the server hung up
    finally:
        for sock in idle:
            sock.close()
    assert _predict(waitress_server.port)[0] == 200


def test_connection_limit_stays_under_the_open_file_limit():
    from cnnkit.web.server import CONNECTION_LIMIT, _connection_limit

    resource = pytest.importorskip("resource")
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = _connection_limit()
    assert 16 <= limit <= CONNECTION_LIMIT and (soft == resource.RLIM_INFINITY or limit < soft)


def test_error_bodies_of_hostile_requests_on_a_real_server(waitress_server):
    for body in (NESTED["100000 nested lists"], json.dumps({"image": data_url(png_declaring(9000, 9000))}).encode()):
        connection = http.client.HTTPConnection("127.0.0.1", waitress_server.port, timeout=30)
        try:
            connection.request("POST", "/api/predict", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
        finally:
            connection.close()
        assert response.status == 400 and "0x" not in answer["error"]
    headers = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", waitress_server.port), timeout=10) as sock:
        sock.sendall(headers)
        status_line = sock.recv(64)
    assert status_line.split()[1] == b"431", status_line
    # a huge announced body is refused before any of it is read or spooled to disk
    with socket.create_connection(("127.0.0.1", waitress_server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n{")
        status_line = sock.recv(64)
    assert status_line.split()[1] == b"413", status_line
    assert np.isfinite(_predict(waitress_server.port)[2])


def test_running_out_of_memory_is_a_503_without_internals(predictor, monkeypatch):
    client = create_app(predictor).test_client()

    def exhausted(image, top=5):
        raise MemoryError("Unable to allocate 64.0 GiB for an array with shape (1, 2, 3)")

    monkeypatch.setattr(predictor, "predict", exhausted)
    response = client.post("/api/predict", json={"image": drawing()})
    assert response.status_code == 503 and "out of memory" in response.get_json()["error"]
    assert "GiB" not in response.get_json()["error"]
