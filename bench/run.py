"""Time cnnkit against PyTorch (CPU) in one process with the same thread count.

    python bench/run.py [--threads 2] [--repeat 5] [--rounds 2] [--filter conv] [--json results.json]

Every case is a function ``build(torch) -> (cnnkit_callable, torch_callable[, onnxruntime_callable])``
registered with ``@case(name)``; a case whose op cnnkit does not have yet returns ``None`` and prints "n/a".
The inference cases run cnnkit through ``cnnkit.inference.freeze`` and, when onnxruntime is installed, also
cnnkit's ONNX export of the same model in an onnxruntime session with the same thread count (third column).
Each callable is warmed up, then run ``--repeat`` times back to back, in ``--rounds`` (2) rounds per library;
the minimum is reported (the least noisy estimate on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both libraries (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per callable; the minimum is kept")
    parser.add_argument("--rounds", type=int, default=2,
                        help="blocks of --repeat runs per library, alternating cnnkit and torch (default 2); more "
                             "rounds make the minimum robust to slow phases of a shared machine")
    parser.add_argument("--filter", default="", help="only cases whose name contains this substring")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--eager", action="store_true",
                        help="inference rows run the fused model under no_grad instead of inference.freeze (the path "
                             "before freeze existed; the default when the cnnkit being timed has no cnnkit.inference)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default), or this process's CPU time: with --threads 1 a check "
                             "that other jobs on a busy machine barely disturb")
    parser.add_argument("--memory-child", choices=("cnnkit", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("threads", "repeat", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


ARGS = _parse_args() if __name__ == "__main__" else _parse_args([])
# BLAS reads its thread count when the library loads, so this must happen before NumPy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
# OpenBLAS's idle workers otherwise spin for about 0.1 s after every call, holding a core that cnnkit's own
# threads need between GEMMs; it reads this only when it loads, before NumPy's import below.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import cnnkit  # noqa: E402
import cnnkit.backend  # noqa: E402
import cnnkit.functional as F  # noqa: E402

try:
    from cnnkit.inference import freeze  # noqa: E402
except ImportError:  # an older cnnkit, timed for a before/after table: its inference rows run eager
    freeze = None
from cnnkit.nn.utils import fuse  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

try:  # also caps a BLAS that was already loaded by something else
    from threadpoolctl import threadpool_limits

    _THREADPOOL = threadpool_limits(limits=ARGS.threads)
    THREADPOOLCTL = True
except ImportError:
    THREADPOOLCTL = False
# as the cnnkit command does: malloc keeps freed memory, BLAS on one thread (cnnkit splits GEMMs over its threads)
cnnkit.backend.tune_process()

CASES = []


def case(name):
    """Register ``build(torch) -> (ours, theirs) | None`` under ``name``."""
    def register(build):
        CASES.append((name, build))
        return build
    return register


# --------------------------------------------------------------------------------------------- helpers
def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _pair_of_tensors(torch, array, requires_grad=True):
    """The same float32 data as a cnnkit tensor and a torch tensor."""
    return (cnnkit.tensor(array.copy(), requires_grad=requires_grad),
            torch.tensor(array.copy(), requires_grad=requires_grad))


def _forward_backward(ours_fn, theirs_fn, torch, leaves, out_shape):
    """Callables that run fn(*leaves) then backward with a fixed upstream gradient, clearing grads first."""
    upstream = _data(out_shape, seed=1)
    upstream_torch = torch.from_numpy(upstream.copy())
    ours_leaves = [pair[0] for pair in leaves]
    theirs_leaves = [pair[1] for pair in leaves]

    def ours():
        for t in ours_leaves:
            t.grad = None
        ours_fn(*ours_leaves).backward(upstream)

    def theirs():
        for t in theirs_leaves:
            t.grad = None
        theirs_fn(*theirs_leaves).backward(upstream_torch)

    return ours, theirs


def _has(*names):
    return all(hasattr(F, name) for name in names)


# --------------------------------------------------------------------------------------------- conv cases
def _conv_case(name, batch, channels, size, out_channels, kernel, stride=1, dilation=1, groups=1, dims=2):
    padding = dilation * (kernel // 2)

    @case(name)
    def build(torch):
        op = f"conv{dims}d"
        sizes = size if isinstance(size, tuple) else (size,) * dims
        x = _pair_of_tensors(torch, _data((batch, channels) + sizes))
        w = _pair_of_tensors(torch, _data((out_channels, channels // groups) + (kernel,) * dims, seed=2) * 0.1)
        b = _pair_of_tensors(torch, _data((out_channels,), seed=3))
        out_sizes = tuple((s + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for s in sizes)
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return _forward_backward(lambda *t: getattr(F, op)(*t, **kwargs),
                                 lambda *t: getattr(torch.nn.functional, op)(*t, **kwargs),
                                 torch, [x, w, b], (batch, out_channels) + out_sizes)


for _n, _c, _h, _k, _r in [(64, 3, 32, 64, 3), (64, 64, 32, 64, 3), (64, 128, 16, 128, 3), (32, 256, 8, 256, 3),
                           (128, 1, 28, 6, 5)]:
    _conv_case(f"conv2d fwd+bwd N{_n} C{_c} {_h}x{_h} K{_k} {_r}x{_r}", _n, _c, _h, _k, _r)
_conv_case("conv2d fwd+bwd N64 C64 32x32 K128 3x3 stride2", 64, 64, 32, 128, 3, stride=2)
_conv_case("conv2d fwd+bwd N64 C64 32x32 K128 1x1", 64, 64, 32, 128, 1)
_conv_case("conv2d fwd+bwd N64 C128 16x16 K128 3x3 depthwise", 64, 128, 16, 128, 3, groups=128)
_conv_case("conv2d fwd+bwd N64 C64 32x32 K64 3x3 dilation2", 64, 64, 32, 64, 3, dilation=2)
_conv_case("conv1d fwd+bwd N32 C64 L1024 K64 k3", 32, 64, 1024, 64, 3, dims=1)
_conv_case("conv3d fwd+bwd N2 C16 16x16x32 K32 3x3x3", 2, 16, (16, 16, 32), 32, 3, dims=3)


@case("conv_transpose2d fwd+bwd N64 C64 16x16 K32 4x4 stride2")
def _conv_transpose(torch):
    x = _pair_of_tensors(torch, _data((64, 64, 16, 16)))
    w = _pair_of_tensors(torch, _data((64, 32, 4, 4), seed=2) * 0.1)
    kwargs = dict(stride=2, padding=1)
    return _forward_backward(lambda *t: F.conv_transpose2d(*t, **kwargs),
                             lambda *t: torch.nn.functional.conv_transpose2d(*t, **kwargs),
                             torch, [x, w], (64, 32, 32, 32))


# ---------------------------------------------------------------------------------- pooling / normalization
def _pool_case(name, op, shape, out_shape, **kwargs):
    @case(name)
    def build(torch):
        if not _has(op):
            return None
        x = _pair_of_tensors(torch, _data(shape))
        return _forward_backward(lambda t: getattr(F, op)(t, **kwargs),
                                 lambda t: getattr(torch.nn.functional, op)(t, **kwargs),
                                 torch, [x], out_shape)


_pool_case("max_pool2d 2x2 fwd+bwd N64 C64 32x32", "max_pool2d", (64, 64, 32, 32), (64, 64, 16, 16),
           kernel_size=2, stride=2)
_pool_case("max_pool2d 3x3/2 pad1 fwd+bwd N64 C64 32x32", "max_pool2d", (64, 64, 32, 32), (64, 64, 16, 16),
           kernel_size=3, stride=2, padding=1)
_pool_case("avg_pool2d 2x2 fwd+bwd N64 C64 32x32", "avg_pool2d", (64, 64, 32, 32), (64, 64, 16, 16),
           kernel_size=2, stride=2)
_pool_case("max_pool3d 3x3x3/2 pad1 fwd+bwd N8 C32 16x16x16", "max_pool3d", (8, 32, 16, 16, 16), (8, 32, 8, 8, 8),
           kernel_size=3, stride=2, padding=1)


def _activation_case(op, shape):
    @case(f"{op} fwd+bwd {'x'.join(map(str, shape))}")
    def build(torch):
        x = _pair_of_tensors(torch, _data(shape) * 3)
        return _forward_backward(getattr(F, op), getattr(torch, op), torch, [x], shape)


# the activations of LeNet-5 as LeCun built it, at its first layer's size for a batch of 128
_activation_case("sigmoid", (128, 6, 28, 28))
_activation_case("tanh", (128, 6, 28, 28))


@case("batch_norm train fwd+bwd N64 C64 32x32")
def _batch_norm(torch):
    if not _has("batch_norm"):
        return None
    shape = (64, 64, 32, 32)
    x = _pair_of_tensors(torch, _data(shape))
    gamma = _pair_of_tensors(torch, np.ones(64, np.float32))
    beta = _pair_of_tensors(torch, np.zeros(64, np.float32))
    stats = [(cnnkit.zeros(64), torch.zeros(64)), (cnnkit.ones(64), torch.ones(64))]
    return _forward_backward(lambda t, g, b: F.batch_norm(t, stats[0][0], stats[1][0], g, b, training=True),
                             lambda t, g, b: torch.nn.functional.batch_norm(t, stats[0][1], stats[1][1], g, b,
                                                                            training=True),
                             torch, [x, gamma, beta], shape)


# --------------------------------------------------------------------------------------------------- models
def _labels(batch, classes=10, seed=4):
    return np.random.default_rng(seed).integers(0, classes, size=batch).astype(np.int64)


def _check_same_logits(torch, ours, theirs, image, frozen=None):
    """Both models in eval mode (and ``frozen``, given) must give the same logits on ``image`` (same weights)."""
    ours.eval()
    theirs.eval()
    with cnnkit.no_grad(), torch.no_grad():
        expected = theirs(torch.from_numpy(image.copy())).numpy()
        outputs = [ours(cnnkit.tensor(image.copy())).numpy()]
    if frozen is not None:
        outputs.append(frozen(image.copy()))
    scale = max(1.0, float(np.abs(expected).max()))
    for got in outputs:
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-3 * scale):
            raise RuntimeError(f"cnnkit and torch logits differ by {float(np.abs(got - expected).max()):.3g}")


def _training_case(name, config, batch, image_shape):
    @case(name)
    def build(torch):
        from cnnkit.optim import SGD

        ours, theirs, _ = reference.matched_pair(torch, config)
        fuse(ours)  # BatchNorm + ReLU pairs as one op, as the trainer runs them
        images, labels = _data((batch,) + image_shape), _labels(batch)
        _check_same_logits(torch, ours, theirs, images[:2])
        ours.train()
        theirs.train()
        ours_opt = SGD(ours.parameters(), lr=0.01, momentum=0.9)
        theirs_opt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9)
        x, y = cnnkit.tensor(images.copy()), cnnkit.tensor(labels.copy())
        x_torch, y_torch = torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())

        def ours_step():
            ours_opt.zero_grad()
            F.cross_entropy(ours(x), y).backward()
            ours_opt.step()

        def theirs_step():
            theirs_opt.zero_grad()
            torch.nn.functional.cross_entropy(theirs(x_torch), y_torch).backward()
            theirs_opt.step()

        return ours_step, theirs_step


def _onnxruntime_forward(model, image, threads):
    """A callable running cnnkit's ONNX export of ``model`` on ``image`` in onnxruntime, or None without it."""
    try:
        import onnxruntime
    except ImportError:
        return None
    import tempfile

    import cnnkit.onnx

    with tempfile.TemporaryDirectory() as folder:
        path = cnnkit.onnx.export(model, image.shape[1:], os.path.join(folder, "model.onnx"))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image.copy()}
    return lambda: session.run(None, feed)


def _eager_forward(model):
    """The model's eval-mode forward under no_grad, array in and array out (freeze's calling convention)."""
    def forward(image):
        with cnnkit.no_grad():
            return model(cnnkit.tensor(image)).numpy()
    return forward


def _inference_case(name, config, image_shape):
    @case(name)
    def build(torch):
        ours, theirs, _ = reference.matched_pair(torch, config)
        image = _data((1,) + image_shape)
        if ARGS.eager or freeze is None:
            frozen = _eager_forward(fuse(ours))
        else:
            frozen = freeze(ours, image)  # BatchNorm folded into the convs, ReLUs fused, buffers planned
        _check_same_logits(torch, ours, theirs, image, frozen)
        x_torch = torch.from_numpy(image.copy())

        def theirs_forward():
            with torch.no_grad():
                theirs(x_torch)

        return lambda: frozen(image), theirs_forward, _onnxruntime_forward(ours, image, ARGS.threads)


_training_case("train step LeNet-5 b128 1x28x28 SGD momentum", "lenet5", 128, (1, 28, 28))
_training_case("train step LeNet-5 (sigmoid, avgpool) b128 1x28x28 SGD momentum", "lenet5_historical", 128, (1, 28, 28))
_training_case("train step ResNet-18 CIFAR b64 3x32x32 SGD momentum", "resnet18_cifar", 64, (3, 32, 32))
_training_case("train step MobileNet-v2 CIFAR b64 3x32x32 SGD momentum", "mobilenet_v2_cifar", 64, (3, 32, 32))
_inference_case("inference ResNet-18 1x3x224x224", "resnet18", (3, 224, 224))
_inference_case("inference MobileNet-v2 1x3x224x224", "mobilenet_v2", (3, 224, 224))
_inference_case("inference LeNet-5 one digit 1x1x28x28", "lenet5", (1, 28, 28))

MEMORY_CASE = "peak RSS growth (MiB) train step ResNet-18 CIFAR b64"
MEMORY_STEPS = 2  # the second step also holds the momentum buffers


def _rss_mib(field):
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory needs Linux)")


def _memory_child(library, threads):
    """Run in a fresh process: peak RSS during MEMORY_STEPS training steps minus RSS just before them."""
    images, labels = _data((64, 3, 32, 32)), _labels(64)
    if library == "cnnkit":
        from cnnkit.optim import SGD

        model = fuse(reference.cnnkit_model("resnet18_cifar"))
        optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = cnnkit.tensor(images), cnnkit.tensor(labels)

        def step():
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
    else:
        import torch

        torch.set_num_threads(threads)
        model = reference.torch_model(torch, "resnet18_cifar")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.from_numpy(images), torch.from_numpy(labels)

        def step():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    before = _rss_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:  # reset VmHWM to the current RSS
        clear.write("5")
    for _ in range(MEMORY_STEPS):
        step()
    print(json.dumps({"growth_mib": _rss_mib("VmHWM") - before}))


def _memory_growth(library, threads):
    import subprocess

    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--threads", str(threads),
                             "--memory-child", library], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["growth_mib"]


# --------------------------------------------------------------------------------------------------- runner
def _best_time(fn, repeat):
    """Minimum over ``repeat`` back-to-back runs after one warm-up run, in ms."""
    clock = time.process_time if ARGS.clock == "cpu" else time.perf_counter
    fn()  # warm-up: first-call allocations, BLAS / OpenMP thread start-up
    best = float("inf")
    for _ in range(repeat):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best * 1e3


def _best_times(callables, repeat, rounds=2):
    """The minimum time of each callable (None stays None), ``rounds`` blocks of ``repeat`` runs each."""
    # Back-to-back runs of one library, not alternation: interleaving lets each side's cache and
    # thread-pool state disturb the other (torch's OpenMP pool in particular measured ~1.6x slower).
    # Several rounds, so that a burst of background load during one block does not decide the result.
    best = [None if fn is None else float("inf") for fn in callables]
    for _ in range(rounds):
        for index, fn in enumerate(callables):
            if fn is not None:
                best[index] = min(best[index], _best_time(fn, repeat))
    return best


def _ort_columns(ours_ms, ort_ms):
    return f"  {ort_ms:10.2f}  {ours_ms / ort_ms:8.2f}" if ort_ms is not None else ""


def run(args):
    import torch

    torch.set_num_threads(args.threads)
    selected = [(name, build) for name, build in CASES if args.filter in name]
    show_memory = args.filter in MEMORY_CASE
    if args.list:
        print("\n".join([name for name, _ in selected] + ([MEMORY_CASE] if show_memory else [])))
        return 0
    print(f"cnnkit vs torch {torch.__version__} (CPU), numpy {np.__version__}, {args.threads} thread(s), "
          f"min of {args.rounds} x {args.repeat} runs of {args.clock} time; "
          f"threadpoolctl {'used' if THREADPOOLCTL else 'not installed (env vars only)'}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    width = max([len(name) for name, _ in selected] + [len(MEMORY_CASE) if show_memory else 4])
    print(f"{'case':<{width}}  {'cnnkit ms':>10}  {'torch ms':>10}  {'ratio':>6}  {'ort ms':>10}  {'/ort':>8}")
    results = []
    for name, build in selected:
        callables = build(torch)
        if callables is None:
            print(f"{name:<{width}}  {'n/a':>10}  {'n/a':>10}  {'n/a':>6}")
            results.append({"case": name, "cnnkit_ms": None, "torch_ms": None, "ratio": None})
            continue
        try:
            ours_ms, theirs_ms, *ort = _best_times(callables, args.repeat, args.rounds)
        except Exception as error:  # one broken op must not hide the other rows
            print(f"{name:<{width}}  {'error':>10}  {'':>10}  {'':>6}  {type(error).__name__}: {error}")
            results.append({"case": name, "cnnkit_ms": None, "torch_ms": None, "ratio": None,
                            "error": f"{type(error).__name__}: {error}"})
            continue
        ratio, ort_ms = ours_ms / theirs_ms, (ort or [None])[0]
        print(f"{name:<{width}}  {ours_ms:10.2f}  {theirs_ms:10.2f}  {ratio:6.2f}{_ort_columns(ours_ms, ort_ms)}",
              flush=True)
        row = {"case": name, "cnnkit_ms": ours_ms, "torch_ms": theirs_ms, "ratio": ratio}
        if ort_ms is not None:
            row.update(ort_ms=ort_ms, ratio_ort=ours_ms / ort_ms)
        results.append(row)
    if show_memory:
        # each library in its own fresh process: RSS growth is only comparable from a clean start
        ours_mib, theirs_mib = _memory_growth("cnnkit", args.threads), _memory_growth("torch", args.threads)
        ratio = ours_mib / theirs_mib
        print(f"{MEMORY_CASE:<{width}}  {ours_mib:10.1f}  {theirs_mib:10.1f}  {ratio:6.2f}", flush=True)
        results.append({"case": MEMORY_CASE, "cnnkit_mib": ours_mib, "torch_mib": theirs_mib, "ratio": ratio})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"threads": args.threads, "repeat": args.repeat, "rounds": args.rounds,
                       "torch": torch.__version__, "numpy": np.__version__, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    if ARGS.memory_child:
        _memory_child(ARGS.memory_child, ARGS.threads)
        sys.exit(0)
    sys.exit(run(ARGS))
