"""cnnkit.viz: every picture renders (size, non-blank, the expected panels), and the numbers behind them are right."""
import json
import re

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw

import cnnkit
from cnnkit import nn
from cnnkit.cli.main import main
from cnnkit.io import save_checkpoint, write_latest
from cnnkit.models import create
from cnnkit.viz import (
    ImageInputError,
    feature_maps,
    im2col_matrix,
    layer_geometry,
    plot_confusion_matrix,
    plot_curves,
    plot_feature_maps,
    plot_filters,
    plot_im2col,
    plot_receptive_field,
    prepare_image,
    unit_receptive_field,
)

LENET_LAYERS = {"features.0": (6, 28, 28), "features.2": (6, 14, 14), "features.3": (16, 10, 10),
                "features.5": (16, 5, 5)}


@pytest.fixture
def lenet():
    return create("lenet5", num_classes=6, in_channels=1, image_size=28).eval()


def _stroke_image(size=120):
    """A dark 'X' drawn on white, as a user would draw it."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(25, 20), (95, 100)], fill="black", width=10)
    draw.line([(95, 20), (25, 100)], fill="black", width=10)
    return image


def _check_png(path, min_size=(150, 150)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1], image.size
        gray = np.asarray(image.convert("L"), dtype=np.float64)
    assert gray.std() > 5, f"{path} looks blank (pixel std {gray.std():.2f})"


def _svg(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


def _count_images(svg):
    return len(re.findall(r"<image\b", svg))


def _count_axes(svg):
    return len(re.findall(r'<g id="axes_\d+"', svg))


# ------------------------------------------------------------------ filters
def test_plot_filters_draws_one_tile_per_filter(lenet, tmp_path):
    _check_png(plot_filters(lenet, tmp_path / "filters.png"))
    svg = _svg(plot_filters(lenet, tmp_path / "filters.svg"))
    assert _count_images(svg) == 6 and _count_axes(svg) == 6


@pytest.mark.parametrize("in_channels, out_channels, tiles", [(3, 5, 5), (4, 3, 12), (16, 2, 16)])
def test_plot_filters_tiles_per_channel_layout(tmp_path, in_channels, out_channels, tiles):
    # RGB kernels make one colour tile each; other kernels one tile per (filter, channel), at most 8 channels.
    conv = nn.Conv2d(in_channels, out_channels, 3)
    svg = _svg(plot_filters(conv, tmp_path / "f.svg"))
    assert _count_images(svg) == tiles


def test_plot_filters_needs_a_conv(tmp_path):
    with pytest.raises(ValueError, match="no convolution"):
        plot_filters(nn.Sequential(nn.Linear(3, 2)), tmp_path / "f.png")


def test_unknown_extension_is_refused(lenet, tmp_path):
    with pytest.raises(ValueError, match="format"):
        plot_filters(lenet, tmp_path / "filters.bmpx")


# ------------------------------------------------------------------ feature maps
def test_feature_maps_are_the_layer_outputs(lenet, torch):
    x = np.random.default_rng(1).random((1, 1, 28, 28)).astype(np.float32)
    layers = feature_maps(lenet, cnnkit.tensor(x))
    assert [(name, maps.shape) for name, _, maps in layers] == list(LENET_LAYERS.items())
    conv = lenet.features[0]
    expected_conv = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(conv.weight.data),
                                               torch.from_numpy(conv.bias.data), padding=2)
    expected_pool = torch.nn.functional.max_pool2d(torch.relu(expected_conv), 2)
    np.testing.assert_allclose(layers[0][2], expected_conv[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(layers[1][2], expected_pool[0].numpy(), atol=1e-5)


def test_plot_feature_maps_groups_every_channel_by_layer(lenet, tmp_path):
    _check_png(plot_feature_maps(lenet, _stroke_image(), tmp_path / "features.png"))
    svg = _svg(plot_feature_maps(lenet, _stroke_image(), tmp_path / "features.svg"))
    assert _count_images(svg) == sum(shape[0] for shape in LENET_LAYERS.values())
    limited = _svg(plot_feature_maps(lenet, _stroke_image(), tmp_path / "few.svg", max_maps=4))
    assert _count_images(limited) == 4 * len(LENET_LAYERS)


def test_feature_maps_leave_the_model_mode_alone(lenet, tmp_path):
    lenet.train()
    plot_feature_maps(lenet, np.zeros((1, 28, 28), dtype=np.float32), tmp_path / "f.png", max_maps=1)
    assert lenet.training


# ------------------------------------------------------------------ curves
def _write_metrics(folder, epochs=4):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metrics.jsonl", "w") as file:
        for epoch in range(1, epochs + 1):
            file.write(json.dumps({"epoch": epoch, "train_loss": 2.0 / epoch, "train_top1": 0.5 + 0.1 * epoch,
                                   "val_loss": 2.2 / epoch, "val_top1": 0.45 + 0.1 * epoch, "val_top5": 0.9,
                                   "lr": 0.05 * 0.5 ** epoch, "seconds": 1.0}) + "\n")
    return folder


def test_plot_curves_three_panels_from_a_run(tmp_path):
    run = _write_metrics(tmp_path / "runs" / "demo")
    write_latest(run)
    _check_png(plot_curves(run, tmp_path / "curves.png"))
    svg = _svg(plot_curves(tmp_path / "runs" / "latest", tmp_path / "curves.svg"))
    assert _count_axes(svg) == 3
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = _svg(plot_curves(run / "metrics.jsonl", tmp_path / "text.svg"))
    for title in ("loss", "top-1 accuracy", "learning rate", "validation"):
        assert f">{title}<" in svg


def test_plot_curves_reports_bad_lines(tmp_path):
    run = _write_metrics(tmp_path / "run", epochs=2)
    with open(run / "metrics.jsonl", "a") as file:
        file.write("{not json\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl:3"):
        plot_curves(run, tmp_path / "c.png")
    with pytest.raises(FileNotFoundError, match="metrics"):
        plot_curves(tmp_path / "nowhere", tmp_path / "c.png")


# ------------------------------------------------------------------ confusion matrix
def test_plot_confusion_matrix_writes_every_count(tmp_path):
    matrix = np.array([[101, 102, 103], [104, 105, 106], [107, 108, 109]])
    names = ["circle", "square", "cross"]
    _check_png(plot_confusion_matrix(matrix, names, tmp_path / "cm.png"))
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = _svg(plot_confusion_matrix(matrix, names, tmp_path / "cm.svg"))
    for value in matrix.ravel():
        assert f">{value}<" in svg
    for name in names:
        assert svg.count(f">{name}<") == 2  # on both axes
    assert _count_axes(svg) == 2  # the matrix and its colour bar


def test_plot_confusion_matrix_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.zeros((2, 3)), ["a", "b"], tmp_path / "cm.png")
    with pytest.raises(ValueError, match="class names"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a"], tmp_path / "cm.png")


# ------------------------------------------------------------------ receptive fields
def _positive_linear_net():
    """conv5 (pad 2) -> avg-pool 2 -> conv3: no ReLU and positive weights, so a unit's gradient is non-zero
    on exactly its receptive field."""
    net = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.AvgPool2d(2), nn.Conv2d(2, 3, 3))
    for param in net.parameters():
        param.data[...] = np.abs(param.data) + 0.01
    return net.eval()


@pytest.mark.parametrize("unit, rows", [((0, 0), (0, 7)), ((3, 3), (4, 13)), ((5, 2), (8, 15))])
def test_receptive_field_box_equals_gradient_support(unit, rows):
    # By hand: conv5 pad2 -> rf 5, jump 1, offset -2; pool 2 -> rf 6, jump 2; conv3 -> rf 10, jump 2, so unit
    # (i, j) sees rows 2i-2 .. 2i+7 (clipped to the 16x16 input).
    field = unit_receptive_field(_positive_linear_net(), "2", (1, 16, 16), unit=unit, channel=1)
    expected_cols = (max(0, 2 * unit[1] - 2), min(15, 2 * unit[1] + 7))
    assert field["box"] == (rows[0], expected_cols[0], rows[1], expected_cols[1])
    assert field["support"] == field["box"]


def test_receptive_field_matches_torch_gradient_support(torch):
    net = _positive_linear_net()
    x = torch.rand(1, 1, 16, 16, requires_grad=True)
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 5, padding=2), torch.nn.AvgPool2d(2), torch.nn.Conv2d(2, 3, 3))
    with torch.no_grad():
        for (_, ours), theirs in zip(net.named_parameters(), ref.parameters()):
            theirs.copy_(torch.from_numpy(ours.data))
    ref(x)[0, 0, 4, 1].backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    field = unit_receptive_field(net, "2", x.detach().numpy()[0], unit=(4, 1), channel=0)
    assert field["support"] == (rows.min(), cols.min(), rows.max(), cols.max())


def test_geometry_of_strided_dilated_and_same_padded_layers():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding="same"), nn.Conv2d(2, 2, 3, dilation=2, padding=1),
                        nn.MaxPool2d(3, stride=2, padding=1))
    geometry = layer_geometry(net, (1, 1, 21, 21))
    # 'same' with stride 2 on 21 pixels pads 1 before: rf 3, jump 2, offset -1; the dilated conv's effective
    # kernel is 5: rf 3 + 4*2 = 11, offset -1 - 1*2 = -3; pool 3 / 2 pad 1: rf 11 + 2*2 = 15, jump 4, offset -5.
    assert [(g.rows.rf, g.rows.jump, g.rows.offset) for g in geometry.values()] == [(3, 2, -1), (11, 2, -3),
                                                                                    (15, 4, -5)]
    assert geometry["2"].output_shape == (2, 5, 5)
    assert geometry["2"].box(1, 2) == (0, 3, 13, 17)  # rows -1..13 clipped, cols 3..17


def test_receptive_field_agrees_with_the_summary(lenet):
    from cnnkit.analysis import summary

    report = {row["name"]: row for row in summary(lenet, (1, 28, 28)).to_dict()["layers"]}
    geometry = layer_geometry(lenet, (1, 1, 28, 28))
    assert list(geometry) == list(LENET_LAYERS)
    for name, layer in geometry.items():
        assert (layer.rows.rf, layer.rows.jump) == (report[name]["rf_h"], report[name]["jump_h"]), name


def test_lenet_gradient_support_lies_inside_the_box(lenet):
    field = unit_receptive_field(lenet, "features.3", 28, unit=(4, 6))
    top, left, bottom, right = field["box"]
    assert (top, left, bottom, right) == (6, 10, 19, 23)  # rows 2*4-2 .. +13, cols 2*6-2 .. +13
    assert field["support"] is not None
    s_top, s_left, s_bottom, s_right = field["support"]
    assert top <= s_top and left <= s_left and s_bottom <= bottom and s_right <= right


def test_plot_receptive_field_draws_input_and_gradient(lenet, tmp_path):
    _check_png(plot_receptive_field(lenet, "features.3", _stroke_image(), tmp_path / "rf.png", unit=(5, 5)))
    svg = _svg(plot_receptive_field(lenet, "features.5", 28, tmp_path / "rf.svg"))
    assert _count_images(svg) == 2 and _count_axes(svg) == 2


def test_receptive_field_errors_name_the_layers(lenet):
    with pytest.raises(ValueError, match="features.0, features.2"):
        unit_receptive_field(lenet, "classifier.1", 28)
    with pytest.raises(ValueError, match="outside"):
        unit_receptive_field(lenet, "features.5", 28, unit=(5, 0))


def test_receptive_field_leaves_parameter_grads_alone(lenet):
    unit_receptive_field(lenet, "features.3", 28)
    assert all(param.grad is None and param.requires_grad for param in lenet.parameters())


# ------------------------------------------------------------------ im2col
@pytest.mark.parametrize("shape, kernel, stride, padding", [((1, 4, 4), 3, 1, 0), ((2, 5, 6), 3, 2, 1),
                                                             ((3, 4, 4), 2, 1, 0)])
def test_im2col_matrix_matches_torch_unfold(shape, kernel, stride, padding, torch):
    x = np.random.default_rng(0).standard_normal(shape)
    columns, (out_height, out_width) = im2col_matrix(x, kernel, stride, padding)
    expected = torch.nn.functional.unfold(torch.from_numpy(x)[None], kernel, padding=padding, stride=stride)[0]
    np.testing.assert_allclose(columns, expected.numpy())
    weight = np.random.default_rng(1).standard_normal((1, shape[0], kernel, kernel))
    conv = torch.nn.functional.conv2d(torch.from_numpy(x)[None], torch.from_numpy(weight), stride=stride,
                                      padding=padding)
    np.testing.assert_allclose((weight.reshape(1, -1) @ columns).reshape(out_height, out_width), conv[0, 0].numpy(),
                               atol=1e-12)


def test_plot_im2col_panels(tmp_path):
    _check_png(plot_im2col(tmp_path / "im2col.png"))
    svg = _svg(plot_im2col(tmp_path / "im2col.svg", input_size=(2, 4, 4), kernel=3, padding=1))
    assert _count_axes(svg) == 2 * 2 + 4  # input and kernel per channel, output map, and the GEMM's three
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        svg = _svg(plot_im2col(tmp_path / "numbers.svg"))
    for value in range(1, 17):  # the input 1..16 and its columns
        assert f">{value}<" in svg


# ------------------------------------------------------------------ preparing pictures
def test_prepare_image_inverts_and_centres_a_drawing():
    prepared = prepare_image(_stroke_image(), (28, 28), channels=1, fit="center")
    assert prepared.inverted and prepared.array.shape == (1, 28, 28)
    ink = prepared.array[0] > 0.2
    rows, cols = np.nonzero(ink)
    assert 18 <= rows.max() - rows.min() + 1 <= 21 and abs((rows.min() + rows.max()) / 2 - 13.5) <= 1
    assert prepared.array[0][0].max() < 0.05  # the background is black, as in the training data


def test_prepare_image_transparent_canvas_rgb_and_normalisation():
    canvas = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).ellipse([10, 5, 50, 35], outline=(0, 0, 0, 255), width=4)
    prepared = prepare_image(canvas, (32, 32), channels=3, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert prepared.inverted and prepared.array.shape == (3, 32, 32) and prepared.pixels.shape == (32, 32, 3)
    np.testing.assert_allclose(prepared.array, (prepared.pixels.transpose(2, 0, 1) / 255.0 - 0.5) / 0.25, atol=1e-6)


def test_prepare_image_rejects_what_is_not_a_picture():
    with pytest.raises(ImageInputError, match="not an image"):
        prepare_image(b"hello, world", (28, 28))
    import io

    huge = io.BytesIO()
    Image.new("1", (5000, 5000)).save(huge, format="PNG")
    with pytest.raises(ImageInputError, match="image too large: 5000 x 5000"):
        prepare_image(huge.getvalue(), (28, 28))


# ------------------------------------------------------------------ command line
@pytest.fixture
def checkpoint(lenet, tmp_path):
    path = tmp_path / "run" / "last.safetensors"
    path.parent.mkdir()
    save_checkpoint(path, lenet, extra={"data": {"classes": ["x", "o", "plus", "triangle", "square", "diamond"],
                                                 "in_channels": 1, "image_size": 28, "mean": [0.1], "std": [0.2]}})
    return path


def test_cli_viz_writes_each_picture(checkpoint, tmp_path, capsys):
    image_path = tmp_path / "x.png"
    _stroke_image().save(image_path)
    _write_metrics(checkpoint.parent)
    commands = {
        "filters": ["filters", str(checkpoint)],
        "features": ["features", str(checkpoint.parent), str(image_path), "--max-maps", "2"],
        "curves": ["curves", str(checkpoint.parent)],
        "rf": ["rf", str(checkpoint), "--layer", "features.3", "--unit", "2,3"],
        "rf-by-name": ["rf", "lenet5", "--in-channels", "1", "--size", "32", "--layer", "features.2"],
        "im2col": ["im2col", "--size", "5", "--stride", "2"],
    }
    for name, args in commands.items():
        out = tmp_path / f"{name}.png"
        assert main(["viz", *args, "--out", str(out)]) == 0, name
        assert capsys.readouterr().out.strip() == str(out)
        _check_png(out, min_size=(100, 100))


def test_cli_viz_errors_are_one_line(tmp_path, capsys):
    assert main(["viz", "rf", "lenet5", "--layer", "nope"]) == 2
    assert "features.0" in capsys.readouterr().err
    assert main(["viz", "curves", str(tmp_path)]) == 2
    assert "metrics" in capsys.readouterr().err
