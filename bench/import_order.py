"""Does timing depend on whether NumPy or cnnkit is imported first? One conv row, fresh processes, both orders.

    python bench/import_order.py [--runs 2] [--threads 2] [--repeat 5] [--batch 32] [--clock cpu]

Each run starts two fresh interpreters, one per order ("numpy first": import numpy, then cnnkit; "cnnkit
first": the reverse), alternating, and each times conv2d forward + backward (batch N, 64 channels, 32x32,
64 filters 3x3) ``--repeat`` times, keeping the minimum. Importing cnnkit changes no process state, so the
two columns should agree within the machine's noise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
if {numpy_first}:
    import numpy as np
    import cnnkit
else:
    import cnnkit
    import numpy as np
import cnnkit.functional as F
cnnkit.backend.set_num_threads({threads})
rng = np.random.default_rng(0)
x = cnnkit.tensor(rng.standard_normal(({batch}, 64, 32, 32)).astype(np.float32), requires_grad=True)
w = cnnkit.tensor(rng.standard_normal((64, 64, 3, 3)).astype(np.float32) * 0.05, requires_grad=True)
b = cnnkit.tensor(np.zeros(64, np.float32), requires_grad=True)

def step():
    F.conv2d(x, w, b, padding=1).sum().backward()

step()
times = []
for _ in range({repeat}):
    start = {clock}()
    step()
    times.append({clock}() - start)
print(json.dumps(min(times) * 1000))
"""


def _time(numpy_first, args):
    clock = "time.perf_counter" if args.clock == "wall" else "time.process_time"
    code = _CHILD.format(root=ROOT, numpy_first=numpy_first, threads=args.threads, batch=args.batch,
                         repeat=args.repeat, clock=clock)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600,
                            env=env)
    return json.loads(result.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="fresh processes per order (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and cnnkit threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per process; the minimum is kept")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default) or the process's CPU time (with --threads 1: least disturbed by "
                             "other jobs on a busy machine)")
    args = parser.parse_args(argv)
    results = {"numpy first": [], "cnnkit first": []}
    for _ in range(args.runs):
        results["numpy first"].append(_time(True, args))
        results["cnnkit first"].append(_time(False, args))
    print(f"conv2d fwd+bwd N{args.batch} C64 32x32 K64 3x3, {args.threads} threads, {args.clock} clock, "
          f"min of {args.repeat} (ms)")
    for order, times in results.items():
        print(f"  {order:13s} " + "  ".join(f"{t:8.2f}" for t in times) + f"   best {min(times):8.2f}")
    ratio = min(results["cnnkit first"]) / min(results["numpy first"])
    print(f"  cnnkit first / numpy first (best): {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
