"""``plot_im2col``: how a convolution becomes one matrix product (im2col + GEMM), drawn for a small input.

im2col copies every k x k window of the (padded) input into one column of a (C*k*k, L) matrix, L being the
number of output positions; the kernel flattened to a row times that matrix gives all L outputs at once.
"""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from .figures import new_figure, save_figure

WINDOW_COLORS = ("#e4572e", "#17bebb", "#ffc914", "#76b041")
PADDING_COLOR = "#bbbbbb"


def im2col_matrix(x, kernel, stride=1, padding=0):
    """Columns of every window of ``x`` (C, H, W): shape (C*k*k, out_h*out_w), rows ordered (c, ki, kj)."""
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"im2col_matrix: x must be (C, H, W), got shape {x.shape}")
    channels, height, width = x.shape
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    out_height = (height + 2 * padding - kernel) // stride + 1
    out_width = (width + 2 * padding - kernel) // stride + 1
    if out_height < 1 or out_width < 1:
        raise ValueError(f"im2col_matrix: kernel {kernel} does not fit the {height}x{width} input with padding "
                         f"{padding}; use a smaller kernel or more padding")
    columns = np.empty((channels * kernel * kernel, out_height * out_width), dtype=x.dtype)
    for out_row in range(out_height):
        for out_col in range(out_width):
            top, left = out_row * stride, out_col * stride
            window = padded[:, top:top + kernel, left:left + kernel]
            columns[:, out_row * out_width + out_col] = window.reshape(-1)
    return columns, (out_height, out_width)


def _grid(axis, values, title, fills=(), outlines=(), fmt="{:g}"):
    """A table of numbers with coloured cells.

    ``fills`` and ``outlines`` are lists of ((row0, col0, row1, col1) inclusive, colour): filled boxes are
    drawn translucent, in order; outlines may overlap (each is drawn a little further inside, so
    overlapping windows stay apart).
    """
    values = np.atleast_2d(values)
    rows, cols = values.shape
    axis.set_xlim(-0.5, cols - 0.5)
    axis.set_ylim(rows - 0.5, -0.5)
    axis.set_aspect("equal")
    for (row0, col0, row1, col1), color in fills:
        axis.add_patch(Rectangle((col0 - 0.5, row0 - 0.5), col1 - col0 + 1, row1 - row0 + 1, facecolor=color,
                                 alpha=0.45, linewidth=0))
    for index, ((row0, col0, row1, col1), color) in enumerate(outlines):
        inset = 0.06 + 0.07 * index
        axis.add_patch(Rectangle((col0 - 0.5 + inset, row0 - 0.5 + inset), col1 - col0 + 1 - 2 * inset,
                                 row1 - row0 + 1 - 2 * inset, fill=False, edgecolor=color, linewidth=2.2))
    for row in range(rows):
        for col in range(cols):
            axis.text(col, row, fmt.format(values[row, col]), ha="center", va="center", fontsize=8)
    axis.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    axis.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    axis.grid(which="minor", color="#999999", linewidth=0.6)
    axis.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_color("#666666")
    axis.set_title(title, fontsize=9)


def _operator(axis, symbol):
    """Write ``symbol`` (x, =) just right of an axis, vertically centred."""
    axis.annotate(symbol, xy=(1.0, 0.5), xycoords="axes fraction", xytext=(10, 0), textcoords="offset points",
                  fontsize=16, va="center", ha="left")


def plot_im2col(path, input_size=(1, 4, 4), kernel=3, stride=1, padding=0, seed=0):
    """Draw im2col for an input of ``input_size`` (C, H, W) holding 1, 2, 3, ...; returns ``path``.

    Panels: the input with the first windows coloured, the kernel, the GEMM (kernel row x column matrix =
    output row, with the matching columns coloured) and the output reshaped to its map.
    """
    channels, height, width = input_size
    x = np.arange(1, channels * height * width + 1, dtype=np.int64).reshape(channels, height, width)
    weight = np.random.default_rng(seed).integers(-2, 3, size=(channels, kernel, kernel))
    columns, (out_height, out_width) = im2col_matrix(x, kernel, stride, padding)
    kernel_row = weight.reshape(1, -1)
    output_row = kernel_row @ columns
    positions = out_height * out_width
    shown = min(len(WINDOW_COLORS), positions)
    colors = WINDOW_COLORS[:shown]

    figure = new_figure(max(8.0, 0.42 * (kernel_row.shape[1] + 2 * positions) + 2),
                        4.5 + 0.35 * columns.shape[0])
    figure.suptitle(f"im2col: {channels}x{height}x{width} input, {kernel}x{kernel} kernel, stride {stride}, "
                    f"padding {padding} -> {columns.shape[0]}x{positions} columns, one GEMM", fontsize=10)
    outer = figure.add_gridspec(2, 1, height_ratios=[1, 1.4], hspace=0.35)
    top = outer[0].subgridspec(1, 2 * channels + 1, wspace=0.4)
    # The input is drawn with its zero padding (gray), so windows that reach into the padding show whole.
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    side_rows, side_cols = padded.shape[1:]
    padding_cells = [((0, 0, padding - 1, side_cols - 1), PADDING_COLOR),
                     ((side_rows - padding, 0, side_rows - 1, side_cols - 1), PADDING_COLOR),
                     ((padding, 0, side_rows - padding - 1, padding - 1), PADDING_COLOR),
                     ((padding, side_cols - padding, side_rows - padding - 1, side_cols - 1), PADDING_COLOR)
                     ] if padding else []
    windows = []
    for index, color in enumerate(colors):
        out_row, out_col = divmod(index, out_width)
        row0, col0 = out_row * stride, out_col * stride
        windows.append(((row0, col0, row0 + kernel - 1, col0 + kernel - 1), color))
    for c in range(channels):
        title = f"input channel {c}" + (f" (zero padding {padding})" if padding else "")
        _grid(figure.add_subplot(top[0, c]), padded[c], title, padding_cells + windows[:1], windows, "{:d}")
        _grid(figure.add_subplot(top[0, channels + c]), weight[c], f"kernel channel {c}", fmt="{:d}")
    output_map = output_row.reshape(out_height, out_width)
    output_highlights = [((index // out_width, index % out_width) * 2, color) for index, color in enumerate(colors)]
    _grid(figure.add_subplot(top[0, 2 * channels]), output_map, f"output {out_height}x{out_width}",
          output_highlights, fmt="{:d}")

    gemm = outer[1].subgridspec(1, 3, width_ratios=[kernel_row.shape[1], positions, positions], wspace=0.25)
    row_axis = figure.add_subplot(gemm[0, 0])
    _grid(row_axis, kernel_row, f"kernel row 1x{kernel_row.shape[1]}", fmt="{:d}")
    _operator(row_axis, "\u00d7")
    column_highlights = [((0, index, columns.shape[0] - 1, index), color) for index, color in enumerate(colors)]
    column_axis = figure.add_subplot(gemm[0, 1])
    _grid(column_axis, columns, f"im2col columns {columns.shape[0]}x{positions}", column_highlights, fmt="{:d}")
    _operator(column_axis, "=")
    result_highlights = [((0, index, 0, index), color) for index, color in enumerate(colors)]
    _grid(figure.add_subplot(gemm[0, 2]), output_row, f"output row 1x{positions}", result_highlights, fmt="{:d}")
    return save_figure(figure, path)
