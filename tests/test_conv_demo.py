"""The convolution demo (numbers equal F.conv2d, strict-mode message), its files, its web routes, ``/api/explain``
and the two new ``cnnkit viz`` commands."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cnnkit import functional as F
from cnnkit.autograd import Tensor
from cnnkit.cli import main
from cnnkit.io import save_checkpoint
from cnnkit.models import create
from cnnkit.viz import conv_demo, write_conv_demo
from cnnkit.web import Predictor, create_app

NOTES_EXAMPLE = {"width": 5, "height": 5, "depth": 3, "filters": 2, "kernel": 3, "stride": 2, "padding": 1}
CHANGED = {"width": 7, "height": 6, "depth": 2, "filters": 3, "kernel": 3, "stride": 1, "padding": 0, "dilation": 2,
           "seed": 4}
STRICT_MESSAGE = (r"conv2d: hyper-parameters do not tile the input height: .* = \(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5 is "
                  r"not an integer")


def check_against_conv2d(demo):
    """Every number of the demo against F.conv2d and against each window worked out here."""
    s = demo["settings"]
    x, weight, bias = (np.array(demo[key]) for key in ("input", "weights", "bias"))
    assert x.shape == (s["depth"], s["height"], s["width"])
    assert weight.shape == (s["filters"], s["depth"], s["kernel"], s["kernel"])
    expected = F.conv2d(Tensor(x[None]), Tensor(weight), Tensor(bias), stride=s["stride"], padding=s["padding"],
                        dilation=s["dilation"]).data[0]
    np.testing.assert_array_equal(np.array(demo["output"]), expected)
    assert demo["output_shape"] == list(expected.shape)
    padded = np.pad(x, ((0, 0), (s["padding"],) * 2, (s["padding"],) * 2))
    np.testing.assert_array_equal(np.array(demo["padded"]), padded)
    assert len(demo["steps"]) == expected.size
    span = s["dilation"] * (s["kernel"] - 1) + 1
    for step in demo["steps"]:
        k, row, col = step["k"], step["row"], step["col"]
        assert (step["top"], step["left"]) == (row * s["stride"], col * s["stride"])
        window = padded[:, step["top"]:step["top"] + span:s["dilation"], step["left"]:step["left"] + span:s["dilation"]]
        np.testing.assert_array_equal(np.array(step["products"]), window * weight[k])
        assert step["sum"] + step["bias"] == step["value"] == expected[k, row, col]
        assert step["bias"] == bias[k]


def test_the_notes_example_equals_conv2d():
    demo = conv_demo(**NOTES_EXAMPLE)
    assert demo["output_shape"] == [2, 3, 3]  # (5 - 3 + 2) / 2 + 1 = 3, two filters
    assert demo["formula"]["width"]["text"].endswith("(5 - 3 + 2*1) / 2 + 1 = 3")
    assert demo["formula"]["width"]["integer"] and demo["formula"]["height"]["exact"] == 3
    check_against_conv2d(demo)
    assert conv_demo() == demo  # the notes' example is the default


def test_changed_controls_change_the_output_size_and_values():
    demo = conv_demo(**CHANGED)
    # dilation 2 makes the 3x3 filter span 5: (6 - 5) / 1 + 1 = 2 rows, (7 - 5) / 1 + 1 = 3 columns
    assert demo["output_shape"] == [3, 2, 3]
    assert "F_eff = 2 * (3 - 1) + 1" in demo["formula"]["height"]["text"]
    check_against_conv2d(demo)
    assert conv_demo(seed=1)["output"] != conv_demo(seed=0)["output"]


def test_the_demo_matches_torch_too():
    torch = pytest.importorskip("torch")
    for settings in (NOTES_EXAMPLE, CHANGED):
        demo = conv_demo(**settings)
        s = demo["settings"]
        expected = torch.nn.functional.conv2d(torch.tensor([demo["input"]]), torch.tensor(demo["weights"]),
                                              torch.tensor(demo["bias"]), stride=s["stride"], padding=s["padding"],
                                              dilation=s["dilation"])[0].numpy()
        np.testing.assert_array_equal(np.array(demo["output"]), expected)


def test_sizes_that_do_not_tile_give_the_strict_mode_message():
    with pytest.raises(ValueError, match=STRICT_MESSAGE):
        conv_demo(width=10, height=10, kernel=3, stride=2, padding=0)


@pytest.mark.parametrize("settings, message", [
    ({"width": 0}, r"width \(W\) must be between 1 and 16, got 0"),
    ({"stride": "two"}, r"stride \(S\) must be an integer, got 'two'"),
    ({"kernel": 2.5}, r"kernel \(F\) must be an integer"),
    ({"colour": 1}, "unknown setting"),
    ({"width": 2, "height": 2, "kernel": 5, "padding": 0}, "kernel 5 .* is larger than the padded input"),
])
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        conv_demo(**settings)


def test_demo_files(tmp_path):
    small = {"width": 4, "height": 4, "depth": 1, "filters": 1, "kernel": 3, "stride": 1, "padding": 0}
    [gif] = write_conv_demo(tmp_path / "demo.gif", **small)
    with Image.open(gif) as animation:
        assert animation.n_frames == 4  # one frame per output number: 2 x 2 x 1
    frames = write_conv_demo(tmp_path / "frames" / "demo.png", **small)
    assert [name.rsplit("/", 1)[1] for name in frames] == [f"demo_{index:03d}.png" for index in range(4)]
    [page] = write_conv_demo(tmp_path / "demo.html")
    text = open(page, encoding="utf-8").read()
    embedded = json.loads(text.split("window.CONV_DEMO = ", 1)[1].split(";</script>", 1)[0])
    assert embedded == json.loads(json.dumps(conv_demo()))
    assert "/static/" not in text  # standalone: the script and the style are inside the file
    with pytest.raises(ValueError, match=r"end the file name with \.gif, \.png, \.html"):
        write_conv_demo(tmp_path / "demo.jpg")


# ---------------------------------------------------------------- web: /conv, /api/conv, /api/explain
CLASSES = ["x", "o", "plus", "triangle", "square", "diamond"]


MEAN, STD = [0.1222], [0.2311]


@pytest.fixture(scope="module")
def lenet():
    import cnnkit

    cnnkit.manual_seed(3)
    return create("lenet5", num_classes=len(CLASSES), in_channels=1, image_size=28)


@pytest.fixture(scope="module")
def client(lenet):
    return create_app(Predictor(lenet, CLASSES, (28, 28), 1, MEAN, STD, name="lenet5")).test_client()


def test_conv_page_and_its_files_are_served(client):
    page = client.get("/conv")
    assert page.status_code == 200 and b'id="volumes"' in page.data and b"/static/conv/conv.js" in page.data
    for name in ("conv.js", "conv.css"):
        assert client.get(f"/static/conv/{name}").status_code == 200
    assert client.get("/api/conv/defaults").get_json()["stride"] == 2


def test_api_conv_answers_the_demo_numbers(client):
    assert client.get("/api/conv").get_json() == json.loads(json.dumps(conv_demo()))
    query = "&".join(f"{key}={value}" for key, value in CHANGED.items())
    answer = client.get(f"/api/conv?{query}").get_json()
    assert answer["output_shape"] == [3, 2, 3]
    check_against_conv2d(answer)


def test_api_conv_strict_case_and_bad_values_are_400(client):
    response = client.get("/api/conv?width=10&height=10&padding=0")
    answer = response.get_json()
    assert response.status_code == 400
    assert "4.5 is not an integer" in answer["error"] and answer["error"].startswith("conv2d: ")
    assert answer["formula"]["width"]["exact"] == 4.5 and not answer["formula"]["width"]["integer"]
    response = client.get("/api/conv?depth=9")
    assert response.status_code == 400 and "depth (D) must be between 1 and 4" in response.get_json()["error"]


def drawing_url():
    image = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(image).line([(60, 60), (220, 220)], fill="black", width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def test_api_model_lists_the_evidence_methods(client):
    # LeNet-5 ends in fully connected layers, so CAM is not offered for it.
    assert client.get("/api/model").get_json()["explain"] == {"methods": ["gradcam", "saliency", "occlusion"],
                                                               "layer": "features.3"}


@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion"])
def test_api_explain_answers_a_heat_map_of_the_top_class(client, method):
    image = drawing_url()
    top = client.post("/api/predict", json={"image": image}).get_json()["top5"][0]
    answer = client.post("/api/explain", json={"image": image, "method": method}).get_json()
    assert answer["method"] == method and answer["label"] == top["label"] and answer["target"] == top["index"]
    heat = Image.open(io.BytesIO(base64.b64decode(answer["heatmap"].split(",", 1)[1])))
    assert heat.mode == "RGBA" and heat.size == (28, 28)
    assert answer["layer"] == ("features.3" if method == "gradcam" else None)


@pytest.mark.parametrize("body, message", [
    ({"method": "cam"}, "method 'cam' is not available for lenet5; choose one of gradcam, saliency, occlusion"),
    ({"method": "magic"}, "method 'magic' is not available"),
    ({"method": 3}, "'method' must be a string"),
])
def test_api_explain_bad_methods_are_400(client, body, message):
    response = client.post("/api/explain", json={"image": drawing_url(), **body})
    assert response.status_code == 400 and message in response.get_json()["error"]
    assert client.post("/api/explain", data=b"{").status_code == 400


# ---------------------------------------------------------------- cnnkit viz conv-demo / cam
def test_cli_conv_demo(tmp_path, capsys):
    assert main(["viz", "conv-demo", "--out", str(tmp_path / "demo.html"), "--width", "7"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "demo.html")
    assert main(["viz", "conv-demo", "--width", "10", "--height", "10", "--padding", "0",
                 "--out", str(tmp_path / "bad.gif")]) == 2
    assert "4.5 is not an integer" in capsys.readouterr().err
    assert not (tmp_path / "bad.gif").exists()


def test_cli_cam(lenet, tmp_path, capsys):
    checkpoint = tmp_path / "best.safetensors"
    save_checkpoint(checkpoint, lenet, extra={"data": {"classes": CLASSES, "in_channels": 1, "image_size": 28,
                                                       "mean": MEAN, "std": STD}})
    picture = tmp_path / "mark.png"
    Image.open(io.BytesIO(base64.b64decode(drawing_url().split(",", 1)[1]))).save(picture)
    for method in ("gradcam", "saliency", "occlusion"):
        out = tmp_path / f"{method}.png"
        assert main(["viz", "cam", str(checkpoint), str(picture), "--method", method, "--out", str(out)]) == 0
        assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1000
    assert main(["viz", "cam", str(checkpoint), str(picture), "--layer", "features.0",
                 "--out", str(tmp_path / "first.png")]) == 0
    capsys.readouterr()
    for options, message in ([["--method", "cam"], "does not end in global average pooling"],
                             [["--layer", "nope"], "no layer named 'nope'; valid names include features.0, "
                                                   "features.3"],
                             [["--target", "6"], "target 6 is out of range for a model with 6 classes"],
                             [["--method", "saliency", "--layer", "features.0"], "--layer applies to --method "
                                                                                  "gradcam only"]):
        assert main(["viz", "cam", str(checkpoint), str(picture), *options, "--out", str(tmp_path / "x.png")]) == 2
        assert message in capsys.readouterr().err


def test_explain_is_unaffected_by_predictions_running_beside_it(lenet):
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor(lenet, CLASSES, (28, 28), 1, MEAN, STD, name="lenet5")
    image = base64.b64decode(drawing_url().split(",", 1)[1])
    expected = {method: predictor.explain(image, method)["heatmap"] for method in ("gradcam", "saliency")}
    jobs = [("predict", None), ("gradcam", "gradcam"), ("saliency", "saliency")] * 8
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda job: (job[1], predictor.predict(image) if job[1] is None
                                             else predictor.explain(image, job[1])), jobs))
    for method, answer in answers:
        if method is not None:
            assert answer["heatmap"] == expected[method]
    assert all(param.grad is None for param in lenet.parameters())
