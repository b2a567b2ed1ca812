"""Data-parallel training and the data pipeline: allreduce, step split, 1 -> 2 ranks, DataLoader workers, projection.

    python bench/distributed.py [--repeat 5] [--rounds 40] [--quick] [--json results.json]
    python bench/distributed.py --allreduce-only [--rounds 40] [--mpich-env "MPIR_CVAR_...=... ..."]
    python bench/distributed.py --loader-only [--repeat 5] [--images 384]

Runs itself under ``mpiexec -n 2`` (the mpich wheel's) for the parts that need two ranks; times are the minimum
of ``--repeat`` runs (the least noisy estimate on a shared machine). ``--quick`` skips ResNet-50. The allreduce
variants (bucket sizes, in place or not, non-blocking, persistent, NumPy's add as the reduction, DDP's
averaging copied back or as bucket views) run interleaved for ``--rounds`` rounds and report min and median.
``--allreduce-only`` runs just those; each ``--mpich-env`` adds a run with those MPICH settings, the runs
alternating with the default environment ``--env-runs`` times.

Projection beyond this machine (no overlap of communication with backward, as measured here: a non-blocking
allreduce makes no progress while NumPy computes):

    step(N) = compute + 2 (N - 1) / N * gradient bytes / link bandwidth + 2 (N - 1) * buckets * latency
    efficiency(N) = compute / step(N)   (throughput per rank against one rank alone)

``compute`` is one rank's forward + backward + SGD step measured here at 32 images per rank on one thread,
``latency`` half of a measured 8-byte allreduce between two ranks (one ring step), ``buckets`` how many
4 MB buckets the gradients fill. Ring allreduce sends each byte 2 (N - 1) / N times over each rank's link.
A model "stops scaling" where its efficiency falls below 90%: beyond that a tenth or more of every added rank
goes to waiting for the allreduce. Where compute is faster than here (more cores per rank, an accelerator),
efficiency is compute / (compute + comm) with the same comm column.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import allreduce_variants  # noqa: E402
import numpy as np  # noqa: E402

import cnnkit  # noqa: E402
from cnnkit import backend, comm, distributed, optim  # noqa: E402
from cnnkit.models import create  # noqa: E402
from cnnkit.nn.parallel import DEFAULT_BUCKET_CAP_MB, DistributedDataParallel  # noqa: E402

LENET_GRADIENT_BYTES = 0.25e6
PER_RANK_BATCH = 32
LINKS_GBPS = [10, 100]
PROJECTED_RANKS = [8, 64]
MODELS = {  # name: (registry name, options, input shape per image)
    "LeNet-5": ("lenet5", {"num_classes": 10, "in_channels": 1}, (1, 28, 28)),
    "ResNet-18 CIFAR": ("resnet18", {"num_classes": 10, "small_input": True}, (3, 32, 32)),
    "ResNet-50 224": ("resnet50", {"num_classes": 1000}, (3, 224, 224)),
}


def _minimum(function, repeat, between=None):
    times = []
    for _ in range(repeat):
        if between is not None:
            between()
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def _model_and_batch(name, batch, seed=0):
    registry_name, options, shape = MODELS[name]
    cnnkit.manual_seed(seed)
    model = create(registry_name, **options)
    rng = np.random.default_rng(seed)
    images = cnnkit.tensor(rng.standard_normal((batch,) + shape).astype(np.float32))
    labels = cnnkit.tensor(rng.integers(0, options["num_classes"], batch))
    return model, images, labels


def _step_function(model, images, labels, forward=None):
    forward = forward or model
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = cnnkit.functional.cross_entropy(forward(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


# ------------------------------------------------------------------------------------------------ on 2 ranks
def _small_allreduce_times(repeat):
    """(seconds for LeNet-5's gradients in one call, seconds for 8 bytes)."""
    lenet = np.zeros(int(LENET_GRADIENT_BYTES) // 4, np.float32)
    tiny = np.ones(1, np.float64)
    return (_minimum(lambda: comm.all_reduce(lenet), max(repeat, 50), between=comm.barrier),
            _minimum(lambda: comm.all_reduce(tiny), max(repeat, 50), between=comm.barrier))


def _step_split(name, repeat):
    """(compute seconds, communication seconds) of one DDP step at PER_RANK_BATCH images per rank."""
    model, images, labels = _model_and_batch(name, PER_RANK_BATCH, seed=comm.rank())
    parallel = DistributedDataParallel(model, gradient_as_bucket_view=True)  # as the trainer uses it
    whole = _step_function(model, images, labels, forward=parallel)
    whole()  # warm-up
    step_seconds = _minimum(whole, repeat, between=comm.barrier)
    communication = _minimum(parallel._average_gradients, repeat, between=comm.barrier)
    return step_seconds - communication, communication, step_seconds


def run_on_ranks(args):
    distributed.init()  # each rank gets its share of the cores (one thread each on a 2-core machine)
    variants = allreduce_variants.interleaved(args.rounds)
    result = {"variants": variants}
    if not args.allreduce_only:
        result["lenet_s"], result["latency_s"] = _small_allreduce_times(args.repeat)
        result["splits"] = {name: _step_split(name, args.repeat) for name in ("LeNet-5", "ResNet-18 CIFAR")}
        result["threads"] = backend.get_num_threads()
    if comm.rank() == 0:
        print("RESULT " + json.dumps(result), flush=True)


def _on_two_ranks(mpiexec, args, settings=""):
    """Run this script's rank part under ``mpiexec -n 2`` with extra environment ``settings``; its result."""
    env = dict(os.environ, **dict(item.split("=", 1) for item in settings.split()))
    command = [mpiexec, "-n", "2", sys.executable, os.path.abspath(__file__), "--on-ranks", "--repeat",
               str(args.repeat), "--rounds", str(args.rounds)] + (["--allreduce-only"] if args.allreduce_only else [])
    job = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    lines = [line for line in job.stdout.splitlines() if line.startswith("RESULT ")]
    if job.returncode != 0 or not lines:
        sys.exit(f"the 2-rank part failed ({settings or 'default settings'}):\n{job.stdout[-2000:]}\n"
                 f"{job.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _print_variants(variants, title):
    print(f"\n{title}")
    print(f"{'variant':42s} {'min ms':>8s} {'median':>8s} {'GB/s at min':>12s}")
    for name, (fastest, median) in variants.items():
        print(f"{name:42s} {1e3 * fastest:8.2f} {1e3 * median:8.2f} "
              f"{allreduce_variants.GRADIENT_BYTES / fastest / 1e9:12.2f}")


def _compare_settings(mpiexec, args):
    """Alternate runs with the default environment and each ``--mpich-env`` setting; min and median per run."""
    settings = [""] + args.mpich_env
    runs = {setting: [] for setting in settings}
    for _ in range(args.env_runs):
        for setting in settings:
            runs[setting].append(_on_two_ranks(mpiexec, args, setting)["variants"])
    print(f"\n44.7 MB on 2 ranks, runs alternating between settings ({args.env_runs} runs of {args.rounds} rounds "
          "each); min over the runs and each run's median, in ms")
    cap = DEFAULT_BUCKET_CAP_MB
    for name in (f"{cap} MB buckets, all_reduce", f"{cap} MB, NumPy add as MPI user op"):
        print(name)
        for setting, results in runs.items():
            fastest = min(result[name][0] for result in results)
            medians = " ".join(f"{1e3 * result[name][1]:.2f}" for result in results)
            print(f"  {setting or 'default':58s} min {1e3 * fastest:6.2f}, medians {medians}")


# ------------------------------------------------------------------------------------------------ one process
def _compute_alone(name, batch, repeat, threads):
    backend.set_num_threads(threads)
    model, images, labels = _model_and_batch(name, batch)
    step = _step_function(model, images, labels)
    step()
    return _minimum(step, repeat)


def _cpu_seconds(pids):
    """CPU time (user + system) the processes ``pids`` have used, from /proc; None where there is no /proc."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _jpeg_loader_rates(repeat, count=384, side=128, crop=112):
    """{num_workers: (best images/s, median images/s, main CPU ms per batch, all processes' CPU ms per batch)}
    and whether every worker count gave identical batches."""
    from PIL import Image

    from cnnkit.data import DataLoader, ImageFolder, transforms

    root = tempfile.mkdtemp(prefix="cnnkit-bench-jpegs-")
    try:
        rng = np.random.default_rng(0)
        for index in range(count):
            folder = os.path.join(root, f"class{index % 4}")
            os.makedirs(folder, exist_ok=True)
            # smooth gradients plus noise: decodes like a photograph more than pure noise does
            base = np.linspace(0, 255, side)[None, :, None] * rng.uniform(0.3, 1.0, (1, 1, 3))
            pixels = np.clip(base + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{index}.jpg"), quality=90)
        augment = transforms.Compose([transforms.RandomCrop(crop), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor()])
        dataset = ImageFolder(root, transform=augment)
        loaders = {workers: DataLoader(dataset, batch_size=32, shuffle=True, seed=1, num_workers=workers,
                                       persistent_workers=workers > 0, prefetch=0) for workers in (0, 1, 2)}
        batches = {workers: [images.data.copy() for images, _ in loader]  # warm-up (starts the workers)
                   for workers, loader in loaders.items()}
        seconds, main_cpu, all_cpu = ({workers: [] for workers in loaders} for _ in range(3))
        for _ in range(repeat):  # rounds alternate the worker counts, so a slow phase of the machine hits all
            for workers, loader in loaders.items():
                pids = [os.getpid()] + [process.pid for process in (loader._pool.processes if workers else ())]
                started, cpu_started, all_started = time.perf_counter(), time.process_time(), _cpu_seconds(pids)
                for _ in loader:
                    pass
                seconds[workers].append(time.perf_counter() - started)
                main_cpu[workers].append(time.process_time() - cpu_started)
                all_ended = _cpu_seconds(pids)
                all_cpu[workers].append(math.nan if all_started is None else all_ended - all_started)
        for loader in loaders.values():
            loader._shutdown_workers()
        per_batch = 1e3 / len(loaders[0])
        results = {workers: (count / min(seconds[workers]), count / float(np.median(seconds[workers])),
                             per_batch * min(main_cpu[workers]), per_batch * float(np.mean(all_cpu[workers])))
                   for workers in loaders}
        identical = all(all(np.array_equal(a, b) for a, b in zip(batches[0], batches[k])) for k in (1, 2))
        return results, identical
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _print_loader_rates(args):
    results, identical = _jpeg_loader_rates(args.repeat, count=args.images)
    print(f"\nDataLoader decoding {args.images} JPEGs (128x128, RandomCrop 112 + flip, batch 32), worker counts "
          f"interleaved over {args.repeat} rounds; the CPU of all processes per batch shows the workers' overhead "
          "whatever else runs on the machine")
    print(f"{'':14s} {'best img/s':>10s} {'ratio':>6s} {'median img/s':>13s} {'ratio':>6s} {'main CPU ms':>12s} "
          f"{'all CPU ms':>11s}")
    best0, median0 = results[0][0], results[0][1]
    for workers, (best, median, main_ms, all_ms) in results.items():
        print(f"num_workers={workers} {best:10.0f} {best / best0:5.2f}x {median:13.0f} {median / median0:5.2f}x "
              f"{main_ms:12.2f} {all_ms:11.2f}")
    print(f"identical batches for num_workers 0, 1, 2: {identical}")
    return results


def _projection(compute, params, latency):
    rows = []
    for name, seconds in compute.items():
        nbytes = 4 * params[name]
        buckets = max(1, math.ceil(nbytes / (DEFAULT_BUCKET_CAP_MB * 1e6)))
        for ranks in PROJECTED_RANKS:
            for gbps in LINKS_GBPS:
                bandwidth = gbps * 1e9 / 8
                communication = 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * buckets * latency
                rows.append({"model": name, "ranks": ranks, "gbps": gbps, "compute_ms": 1e3 * seconds,
                             "comm_ms": 1e3 * communication, "step_ms": 1e3 * (seconds + communication),
                             "efficiency": seconds / (seconds + communication)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement; the minimum is kept")
    parser.add_argument("--quick", action="store_true", help="skip ResNet-50 224 (its step takes seconds)")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds of the allreduce variants")
    parser.add_argument("--allreduce-only", action="store_true", help="only the allreduce variants")
    parser.add_argument("--loader-only", action="store_true", help="only the DataLoader worker comparison")
    parser.add_argument("--images", type=int, default=384, help="JPEGs in the DataLoader comparison's folder")
    parser.add_argument("--mpich-env", action="append", default=[], metavar="SETTINGS",
                        help='MPICH settings to compare with the default, e.g. "MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_'
                             'CELL_SIZE=65536" (with --allreduce-only; repeatable)')
    parser.add_argument("--env-runs", type=int, default=3, help="alternating runs per --mpich-env setting")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--on-ranks", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.on_ranks:
        return run_on_ranks(args)
    if args.loader_only:
        _print_loader_rates(args)
        return
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    if mpiexec is None:
        sys.exit("bench/distributed.py: mpiexec not found; pip install 'cnnkit[mpi]'")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other jobs on this machine disturb the times)")
    if args.mpich_env:
        if any("=" not in item for setting in args.mpich_env for item in setting.split()):
            parser.error("--mpich-env takes NAME=VALUE settings separated by spaces")
        args.allreduce_only = True
        _compare_settings(mpiexec, args)
        return
    ranks = _on_two_ranks(mpiexec, args)
    _print_variants(ranks["variants"], f"allreduce of ResNet-18 CIFAR's 44.7 MB of float32 gradients on 2 ranks "
                                       f"(shared memory), variants interleaved over {args.rounds} rounds")
    if args.allreduce_only:
        return
    print(f"LeNet-5's 0.25 MB in one call: {1e3 * ranks['lenet_s']:.3f} ms; "
          f"8-byte allreduce: {1e6 * ranks['latency_s']:.1f} us")

    print(f"\ntraining step on 2 ranks x {PER_RANK_BATCH} images, {ranks['threads']} thread each "
          f"(DDP, {DEFAULT_BUCKET_CAP_MB} MB buckets, gradients as bucket views)")
    print(f"{'model':18s} {'step ms':>9s} {'compute':>9s} {'comm':>8s} {'comm %':>7s}")
    for name, (compute, communication, step) in ranks["splits"].items():
        print(f"{name:18s} {1e3 * step:9.1f} {1e3 * compute:9.1f} {1e3 * communication:8.2f} "
              f"{100 * communication / step:6.2f}%")

    print(f"\nscaling 1 -> 2 ranks at {PER_RANK_BATCH} images per rank: one rank on 2 threads against 2 ranks "
          "on 1 thread each")
    print(f"{'model':18s} {'1 rank img/s':>13s} {'2 ranks img/s':>14s} {'speed-up':>9s}")
    for name, (_, _, step) in ranks["splits"].items():
        alone = _compute_alone(name, PER_RANK_BATCH, args.repeat, threads=2)
        print(f"{name:18s} {PER_RANK_BATCH / alone:13.0f} {2 * PER_RANK_BATCH / step:14.0f} "
              f"{alone * 2 / step:8.2f}x")

    loader_results = _print_loader_rates(args)

    names = [name for name in MODELS if not (args.quick and name == "ResNet-50 224")]
    compute, params = {}, {}
    for name in names:
        # ResNet-50 at 224 is timed at 4 images and scaled to the per-rank batch (compute is linear in it there)
        batch = 4 if name == "ResNet-50 224" else PER_RANK_BATCH
        compute[name] = _compute_alone(name, batch, 1 if batch == 4 else args.repeat, threads=1) \
            * PER_RANK_BATCH / batch
        params[name] = sum(p.data.size for p in _model_and_batch(name, 1)[0].parameters())
    rows = _projection(compute, params, ranks["latency_s"] / 2)
    print(f"\nprojection: {PER_RANK_BATCH} images per rank, one thread's compute measured here; "
          "ring allreduce 2(N-1)/N x bytes / bandwidth + 2(N-1) x buckets x latency")
    print(f"{'model':18s} {'MB':>7s} {'ranks':>5s} {'link':>9s} {'compute ms':>11s} {'comm ms':>9s} "
          f"{'step ms':>9s} {'efficiency':>10s}")
    for row in rows:
        print(f"{row['model']:18s} {4 * params[row['model']] / 1e6:7.1f} {row['ranks']:5d} "
              f"{row['gbps']:5d} Gb/s {row['compute_ms']:11.1f} {row['comm_ms']:9.1f} {row['step_ms']:9.1f} "
              f"{100 * row['efficiency']:9.1f}%")
    for name in names:
        own = [row for row in rows if row["model"] == name]
        failing = [row for row in own if row["efficiency"] < 0.9]
        where = ", ".join(f"{row['ranks']} ranks on {row['gbps']} Gb/s" for row in failing)
        lowest = min(row["efficiency"] for row in own)
        print(f"{name}: " + (f"stops scaling (efficiency < 90%) at {where}" if failing
                             else f"keeps scaling over every case above (lowest efficiency {100 * lowest:.1f}%)"))
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"ranks": ranks, "loader": loader_results, "projection": rows}, file, indent=1)


if __name__ == "__main__":
    main()
