"""The course's benchmark: prints one table, in one run.

1. attnlib MultiHeadAttention forward+backward against torch.nn.MultiheadAttention
   (batch 8, n 256, d_model 256, 8 heads, float32, CPU), as a ratio. Goal: <= 1.15.
2. Softmax against linear attention, forward time for n = 256 .. 8192 at d_k 64,
   with the measured crossover.
3. Each notebook's wall time, CPU time and peak memory, run from a fresh kernel on
   one thread (OMP_NUM_THREADS=1). Budget: 90 s and 1 GB each, 5 minutes for all.
   The CPU time is the kernel's own: on a busy machine it stays close to what a
   quiet one would take, while the wall time grows.

Usage:  python benchmarks/run.py [--skip-notebooks] [--notebooks chapters/...] [--threads N]
Timings are medians over interleaved repeats, so that load on the machine
hits both sides of a comparison alike.
"""
import argparse
import glob
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from attnlib import MultiHeadAttention, attention


def interleaved(fns, repeats, warmup=2):
    """Median seconds of each function, alternating between them each round."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def mha_ratio(repeats):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(256, 8, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(8, 256, 256)

    def step_ref():
        ref.zero_grad(set_to_none=True)
        ref(x, x, x, need_weights=False)[0].sum().backward()

    def step_ours():
        ours.zero_grad(set_to_none=True)
        ours(x).sum().backward()

    t_ref, t_ours = interleaved([step_ref, step_ours], repeats)
    return t_ours, t_ref


def softmax_vs_linear(ns, repeats):
    rows = []
    for n in ns:
        q, k, v = (torch.randn(1, 1, n, 64) for _ in range(3))
        with torch.no_grad():
            t_soft, t_lin = interleaved([lambda: attention(q, k, v), lambda: attention(q, k, v, normaliser="linear")],
                                        repeats, warmup=1)
        rows.append((n, t_soft, t_lin))
    # the crossover: the first n from which linear attention stays faster
    crossover = next((n for i, (n, _, _) in enumerate(rows) if all(l < s for _, s, l in rows[i:])), None)
    return rows, crossover


# Runs one command and prints its exit code, the CPU seconds of its process tree and the
# peak resident memory (kB) of its largest process: a fresh process per notebook, so the
# counts start from zero.
_PEAK = ("import resource, subprocess, sys; "
         "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
         "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
         "print(rc, u.ru_utime + u.ru_stime, u.ru_maxrss)")


def notebook_costs(paths=None):
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    for path in paths or sorted(glob.glob("chapters/*.ipynb")):
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, os.path.basename(path))
            shutil.copy(path, copy)
            t = time.perf_counter()
            # runs in the chapter's folder, as Jupyter does; the outputs go to the copy
            out = subprocess.run([sys.executable, "-c", _PEAK, jupyter, "execute", "--inplace", copy],
                                 cwd="chapters", env=env, capture_output=True, text=True).stdout.split()
            wall = time.perf_counter() - t
        rc, cpu, peak_kb = int(out[0]), float(out[1]), int(out[2])
        rows.append((os.path.basename(path), wall, cpu, peak_kb / 1024, rc == 0))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-notebooks", action="store_true")
    parser.add_argument("--notebooks", nargs="+", metavar="PATH",
                        help="time only these notebooks (default: every chapters/*.ipynb)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for parts 1 and 2 (default 1)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}; "
          f"{args.threads} thread(s) for parts 1-2")
    print()
    t_ours, t_ref = mha_ratio(args.repeats)
    print("| benchmark | attnlib | torch | ratio (attnlib / torch) | goal |")
    print("|---|---|---|---|---|")
    print(f"| MHA fwd+bwd, batch 8, n 256, d_model 256, 8 heads | {t_ours * 1e3:.1f} ms | "
          f"{t_ref * 1e3:.1f} ms | {t_ours / t_ref:.2f} | <= 1.15 |")
    print()
    rows, crossover = softmax_vs_linear([16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
                                        max(3, args.repeats // 3))
    print("| n | softmax (ms) | linear (ms) | softmax / linear |")
    print("|---|---|---|---|")
    for n, s, l in rows:
        print(f"| {n} | {s * 1e3:.2f} | {l * 1e3:.2f} | {s / l:.1f} |")
    print(f"\nmeasured crossover (d_k = 64): linear attention is faster from n = {crossover} on")
    if args.skip_notebooks:
        return
    print()
    print("| notebook | wall time (s), fresh kernel, 1 thread | CPU time (s) | peak memory (MB) | budget | ran |")
    print("|---|---|---|---|---|---|")
    rows = notebook_costs(args.notebooks)
    for name, wall, cpu, peak, ok in rows:
        within = "ok" if (min(wall, cpu) <= 90 and peak <= 1024) else "OVER"
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {peak:.0f} | {within} | {'yes' if ok else 'FAILED'} |")
    wall_total, cpu_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| all notebooks | {wall_total:.1f} | {cpu_total:.1f} | | "
          f"{'ok' if min(wall_total, cpu_total) <= 300 else 'OVER'} (5 min) | |")


if __name__ == "__main__":
    main()
