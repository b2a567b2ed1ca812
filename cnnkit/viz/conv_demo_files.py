"""``write_conv_demo``: the convolution demo as an animated GIF, one PNG per output position, or a standalone HTML
page (the page of ``cnnkit serve``'s ``/conv`` with its numbers built in)."""
from __future__ import annotations

import io
import json
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle

from .conv_demo import conv_demo
from .figures import new_figure

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
FRAME_MS = 1000
CELL_INCHES = 0.3
COLOURS = {"input": ("#dbe7fb", "#2e6bd9"), "pad": ("#eef1f5", "#2e6bd9"), "filter": ("#fadcd9", "#d6453d"),
           "output": ("#d3f0da", "#2f9e44")}
FORMATS = (".gif", ".png", ".html")


def _number(value):
    return f"{value:g}"


def _grid(axis, values, x0, y0, kind, padding=0, marked=(), active=False):
    """Draw a 2-D grid of numbers with its top-left corner at (x0, y0); ``marked`` cells get an outline."""
    rows, cols = len(values), len(values[0])
    for row in range(rows):
        for col in range(cols):
            ring = row < padding or col < padding or row >= rows - padding or col >= cols - padding
            face, edge = COLOURS["pad" if ring else kind]
            if (row, col) in marked or active:
                face = {"input": "#9ec0f5", "filter": "#f4a59e", "output": "#86d19a"}[kind]
            axis.add_patch(Rectangle((x0 + col, y0 + row), 1, 1, facecolor=face, edgecolor="white", lw=1))
            if (row, col) in marked:
                axis.add_patch(Rectangle((x0 + col + 0.06, y0 + row + 0.06), 0.88, 0.88, fill=False,
                                         edgecolor=edge, lw=1.6))
            axis.text(x0 + col + 0.5, y0 + row + 0.5, _number(values[row][col]), ha="center", va="center",
                      fontsize=7, color="#98a2b3" if ring else "#1d2433", family="monospace")


def _frame(demo, index):
    """One matplotlib figure of the demo at output position ``index``."""
    settings, step = demo["settings"], demo["steps"][index]
    depth, kernel, dilation, padding = settings["depth"], settings["kernel"], settings["dilation"], settings["padding"]
    padded_rows, padded_cols = len(demo["padded"][0]), len(demo["padded"][0][0])
    filters, out_rows, out_cols = demo["output_shape"]
    slice_gap = 1.6
    input_height = depth * (padded_rows + slice_gap)
    filter_height = depth * (kernel + slice_gap) + 1 + slice_gap
    output_height = filters * (out_rows + slice_gap)
    height = max(input_height, filter_height, output_height) + 1.5
    filter_x = [padded_cols + 2 + k * (kernel + 2) for k in range(filters)]
    output_x = filter_x[-1] + kernel + 2
    width = output_x + out_cols + 1
    figure = new_figure(width * CELL_INCHES, (height + 3.2) * CELL_INCHES)
    axis = figure.add_axes([0, 0, 1, 1])
    axis.set_xlim(-0.5, width)
    axis.set_ylim(height + 3.2, -1.2)
    axis.axis("off")
    window = {(step["top"] + i * dilation, step["left"] + j * dilation) for i in range(kernel) for j in range(kernel)}
    for d in range(depth):
        y = d * (padded_rows + slice_gap) + 0.6
        axis.text(0, y - 0.2, f"x[:, :, {d}]", fontsize=7, color="#2e6bd9")
        _grid(axis, demo["padded"][d], 0, y, "input", padding, window)
    for k, x in enumerate(filter_x):
        for d in range(depth):
            y = d * (kernel + slice_gap) + 0.6
            axis.text(x, y - 0.2, f"w{k}[:, :, {d}]", fontsize=7, color="#d6453d")
            _grid(axis, demo["weights"][k][d], x, y, "filter", active=k == step["k"])
        y = depth * (kernel + slice_gap) + 0.6
        axis.text(x, y - 0.2, f"b{k}", fontsize=7, color="#d6453d")
        _grid(axis, [[demo["bias"][k]]], x, y, "filter", active=k == step["k"])
    for k in range(filters):
        y = k * (out_rows + slice_gap) + 0.6
        axis.text(output_x, y - 0.2, f"o[:, :, {k}]", fontsize=7, color="#2f9e44")
        marked = {(step["row"], step["col"])} if k == step["k"] else set()
        _grid(axis, demo["output"][k], output_x, y, "output", marked=marked)
    formula = demo["formula"]["width"]["text"]
    axis.text(0, -0.6, f"{settings['width']}x{settings['height']}x{depth} input, K={filters} filters "
                       f"{kernel}x{kernel}, S={settings['stride']}, P={padding}:  {formula}", fontsize=8)
    axis.text(0, height + 0.6, f"o[{step['row']}, {step['col']}, {step['k']}] = sum(window * w{step['k']}) + "
                               f"b{step['k']} = {_number(step['sum'])} + {_number(step['bias'])} = "
                               f"{_number(step['value'])}", fontsize=9, family="monospace")
    axis.text(0, height + 1.9, f"step {index + 1} of {len(demo['steps'])}", fontsize=8, color="#667085")
    return figure


def render_frame(demo, index):
    """The demo at output position ``index`` as an (H, W, 3) uint8 picture."""
    canvas = FigureCanvasAgg(_frame(demo, index))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _write_html(path, demo):
    with open(os.path.join(STATIC_DIR, "conv.html"), encoding="utf-8") as handle:
        page = handle.read()
    with open(os.path.join(STATIC_DIR, "conv.css"), encoding="utf-8") as handle:
        style = handle.read()
    with open(os.path.join(STATIC_DIR, "conv.js"), encoding="utf-8") as handle:
        script = handle.read()
    # '</' inside a script element would end it early, so the JSON escapes it.
    data = json.dumps(demo).replace("</", "<\\/")
    page = page.replace('<link rel="stylesheet" href="/static/conv/conv.css">', f"<style>\n{style}</style>")
    page = page.replace('<script src="/static/conv/conv.js"></script>',
                        f"<script>window.CONV_DEMO = {data};</script>\n<script>\n{script}</script>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)
    return [path]


def write_conv_demo(path, **settings):
    """Write the demo for ``settings`` (see ``cnnkit.viz.conv_demo.DEFAULTS``) to ``path``: ``.gif`` (one
    frame per output position, looping), ``.png`` (``name_000.png``, ``name_001.png``, ...) or ``.html``; returns
    the list of files written."""
    path = os.fspath(path)
    stem, extension = os.path.splitext(path)
    if extension.lower() not in FORMATS:
        raise ValueError(f"conv demo: cannot tell the format of {path!r}; end the file name with "
                         f"{', '.join(FORMATS)}")
    demo = conv_demo(**settings)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if extension.lower() == ".html":
        return _write_html(path, demo)
    from PIL import Image

    frames = [Image.fromarray(render_frame(demo, index)) for index in range(len(demo["steps"]))]
    if extension.lower() == ".png":
        written = []
        for index, frame in enumerate(frames):
            written.append(f"{stem}_{index:03d}.png")
            frame.save(written[-1])
        return written
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0)
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return [path]
