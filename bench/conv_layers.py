"""Batch-1 inference convolutions per layer: the eager kernels (conv + bias, then the activation) against
kernels.conv_infer.conv_forward (bias and activation fused), optionally torch, on ResNet-18's and
MobileNet-v2's 224x224 layer shapes.

    python bench/conv_layers.py [--threads 2] [--rounds 7] [--repeat 3] [--filter mobilenet] [--torch] [--clock cpu]

The callables are interleaved round by round (old, new, torch, old, new, torch, ...), each round keeping the
minimum of ``--repeat`` runs; the table gives the minimum and the median over the rounds, per layer and
summed over each network's layers (weighted by how often the shape occurs).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--rounds", type=int, default=7)
ARGS.add_argument("--repeat", type=int, default=3)
ARGS.add_argument("--filter", default="")
ARGS.add_argument("--torch", action="store_true", help="a torch column too (its OpenMP threads slow the others)")
ARGS.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                  help="wall time, or this process's CPU time (with --threads 1: barely disturbed by other jobs)")
ARGS = ARGS.parse_args() if __name__ == "__main__" else ARGS.parse_args([])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # as bench/run.py: idle BLAS workers stop spinning soon

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from cnnkit import kernels  # noqa: E402
from cnnkit.functional.conv_checks import conv_geometry  # noqa: E402
from cnnkit.kernels import conv_infer  # noqa: E402

# The conv2d kernels as they were before the one-image kernels: "old" runs the first of these that applies.
EAGER_KERNELS = [k for k in kernels.registered("conv2d") if not k.name.startswith("conv2d.one_image")]

# bench/conv_layers.txt: one layer shape a line, "#" lines are comments
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_layers.txt")) as _table:
    LAYER_LINES = [line.split() for line in _table if line.strip() and not line.startswith("#")]
LAYERS = [(name, *map(int, numbers), None if activation == "-" else activation)
          for name, *numbers, activation in LAYER_LINES]


def _layer(channels, size, out_channels, kernel, stride, groups, activation, torch):
    """(old, new, torch or None) callables for one layer, after checking that new matches old."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, channels, size, size)).astype(np.float32)
    weight = (rng.standard_normal((out_channels, channels // groups, kernel, kernel)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(out_channels).astype(np.float32)
    args = (x.shape, weight.shape, stride, kernel // 2, 1, groups)
    high = {"relu": np.inf, "relu6": 6.0}.get(activation)

    def old():  # an eager no_grad forward before conv_infer: the conv kernel with its bias, then the activation
        geo = conv_geometry(*args)
        y = next(k for k in EAGER_KERNELS if k.applies(geo)).correlate(x, weight, geo, bias)[0]
        return y if high is None else np.clip(y, 0, high)

    geo = conv_geometry(*args)
    out = np.empty((1, out_channels) + geo.out_size, np.float32)

    def new():
        return conv_infer.conv_forward(x, weight, bias, geo, activation, out=out)

    np.testing.assert_allclose(new(), old(), rtol=1e-4, atol=1e-4)
    theirs = None
    if torch is not None:
        tx, tw, tb = (torch.from_numpy(a) for a in (x, weight, bias))
        act = {"relu": torch.relu, "relu6": lambda t: torch.clamp(t, 0, 6)}.get(activation, lambda t: t)

        def theirs():
            with torch.no_grad():
                return act(torch.nn.functional.conv2d(tx, tw, tb, stride, kernel // 2, 1, groups))
    return old, new, theirs


def _rounds(callables, rounds, repeat):
    """Per callable, the best of ``repeat`` runs in each of ``rounds`` interleaved rounds, in ms."""
    clock = time.process_time if ARGS.clock == "cpu" else time.perf_counter
    times = [[] for _ in callables]
    for _ in range(rounds):
        for index, fn in enumerate(callables):
            fn()
            best = float("inf")
            for _ in range(repeat):
                start = clock()
                fn()
                best = min(best, clock() - start)
            times[index].append(best * 1e3)
    return times


def main():
    torch = None
    if ARGS.torch:
        try:
            import torch

            torch.set_num_threads(ARGS.threads)
        except ImportError:
            torch = None
    columns = ["old", "new"] + (["torch"] if torch is not None else [])
    print(f"{ARGS.threads} thread(s), {ARGS.clock} time, {ARGS.rounds} rounds x best of {ARGS.repeat}; ms as min / "
          f"median over rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'layer':<44}" + "".join(f"{name:>16}" for name in columns) + f"{'new/old':>9}  path")
    totals = {}
    for network, count, channels, size, out_channels, kernel, stride, groups, activation in LAYERS:
        label = (f"{network} {count}x {channels}x{size}x{size} -> {out_channels} {kernel}x{kernel}/{stride}"
                 f"{' dw' if groups > 1 else ''} {activation or ''}")
        if ARGS.filter not in label:
            continue
        callables = [fn for fn in _layer(channels, size, out_channels, kernel, stride, groups, activation, torch)
                     if fn is not None]
        times = _rounds(callables, ARGS.rounds, ARGS.repeat)
        mins = [min(t) for t in times]
        medians = [statistics.median(t) for t in times]
        total = totals.setdefault(network, [[0.0, 0.0] for _ in callables])
        for index in range(len(callables)):
            total[index][0] += count * mins[index]
            total[index][1] += count * medians[index]
        geo = conv_geometry((1, channels, size, size), (out_channels, channels // groups, kernel, kernel), stride,
                            kernel // 2, 1, groups)
        cells = "".join(f"{low:8.3f}/{mid:7.3f}" for low, mid in zip(mins, medians))
        print(f"{label:<44}{cells}{mins[1] / mins[0]:9.2f}  {conv_infer.path_for(geo)}", flush=True)
    for network, total in totals.items():
        cells = "".join(f"{low:8.2f}/{mid:7.2f}" for low, mid in total)
        print(f"{'sum ' + network:<44}{cells}{total[1][0] / total[0][0]:9.2f}")


if __name__ == "__main__":
    main()
