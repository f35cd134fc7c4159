"""Execute chapters with other base seeds and report whether their assertions hold.

Two uses, both from the Makefile:

    python scripts/seed_gate.py --rotating
        the rotating-seed gate of ``make test``: the chapters listed in
        tests/seed_gate.txt, with one base seed derived from the commit being tested;
    python scripts/seed_gate.py --seeds 101 202 --chapters chapters/01_activation.ipynb
        a sweep (``make robustness SEEDS="..."``): every chapter (default) x every seed.

Each (chapter, seed) runs from a fresh kernel on one thread, with ``ATTNLIB_SEED`` set,
in a copy of the notebook (the committed one is not touched); ``--jobs`` of them run at
once. Only the assertions count: the outputs are not compared (nbval does that at the
committed seed). The table gives, per run, "pass" with wall time, the kernel's CPU time
and peak memory, or the first failing cell, its failing line and the error's values.
Exit status 1 if any run failed.
"""
import argparse
import concurrent.futures
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GATE_LIST = ROOT / "tests" / "seed_gate.txt"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def gated_chapters():
    """The chapters in the gate: tests/seed_gate.txt, one path per line, '#' comments."""
    lines = GATE_LIST.read_text().splitlines()
    paths = [line.split("#")[0].strip() for line in lines]
    paths = [p for p in paths if p]
    for p in paths:
        if not (ROOT / p).is_file():
            raise SystemExit(f"{GATE_LIST.relative_to(ROOT)} names {p}, which does not exist")
    return paths


def all_chapters():
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "chapters").glob("*.ipynb"))


def commit_seed():
    """A base seed derived from the commit being tested (HEAD), far from the usual 0..99."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("the rotating seed is derived from the git commit, but this is not a git checkout; "
                         "pass --seeds N instead") from None
    return 100_000 + int(sha[:8], 16) % 900_000, sha[:10]


def first_error(nb):
    """``(cell index, failing line, 'Name: value')`` of the first error output in ``nb``."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = [ANSI.sub("", line) for line in out.get("traceback", [])]
                marked = [ln.strip() for block in tb for ln in block.splitlines() if ln.lstrip().startswith("---->")]
                line = re.sub(r"^---->\s*\d+\s*", "", marked[-1]) if marked else ""
                return i, line, f"{out.get('ename')}: {out.get('evalue', '')}"
    return None, "", ""


def run_one(notebook, seed, result_path):
    """Execute one notebook with ATTNLIB_SEED=seed; write a JSON result. Runs in its own process."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["ATTNLIB_SEED"] = str(seed)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    path = ROOT / notebook
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, cell, line, error = "pass", None, "", ""
    try:
        client.execute()
    except CellExecutionError:
        status = "fail"
        cell, line, error = first_error(nb)
    except Exception as e:  # a dead kernel, a timeout
        status, error = "fail", f"{type(e).__name__}: {e}"
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(result_path).write_text(json.dumps({
        "notebook": notebook, "seed": seed, "status": status, "cell": cell, "line": line,
        "error": error[:600], "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_mb": round(usage.ru_maxrss / 1024),
    }))


def launch(notebook, seed, tmp):
    result = Path(tmp) / f"{Path(notebook).stem}-{seed}.json"
    proc = subprocess.run([sys.executable, __file__, "--one", notebook, str(seed), str(result)],
                          cwd=ROOT, capture_output=True, text=True)
    if not result.exists():
        tail = (proc.stderr or proc.stdout)[-600:]
        return {"notebook": notebook, "seed": seed, "status": "fail", "cell": None, "line": "",
                "error": f"the runner itself failed (exit {proc.returncode}): {tail}"}
    return json.loads(result.read_text())


def describe(r):
    if r["status"] == "pass":
        return f"pass ({r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s cpu, {r['peak_mb']} MB)"
    where = f"cell {r['cell']}: " if r.get("cell") is not None else ""
    line = f"`{r['line'][:120]}` -> " if r.get("line") else ""
    return f"FAIL {where}{line}{r['error'][:400]}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rotating", action="store_true", help="gated chapters, seed from the commit")
    ap.add_argument("--print-seed", action="store_true", help="print the rotating seed and exit")
    ap.add_argument("--seeds", nargs="+", type=int, help="base seeds to run")
    ap.add_argument("--chapters", nargs="+", help="notebooks (default: all; with --rotating: the gate's list)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs at once (default 2)")
    ap.add_argument("--one", nargs=3, metavar=("NOTEBOOK", "SEED", "RESULT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:
        run_one(args.one[0], int(args.one[1]), args.one[2])
        return 0
    if args.print_seed:
        seed, sha = commit_seed()
        print(f"rotating-seed gate: base seed {seed} (from commit {sha})")
        return 0
    if args.rotating:
        seed, sha = commit_seed()
        seeds = [seed]
        chapters = args.chapters or gated_chapters()
        print(f"rotating-seed gate: base seed {seed} (from commit {sha}); chapters: {' '.join(chapters)}",
              flush=True)
    else:
        if not args.seeds:
            ap.error("give --seeds (or --rotating)")
        seeds, chapters = args.seeds, args.chapters or all_chapters()
    for c in chapters:
        if not (ROOT / c).is_file():
            ap.error(f"no notebook {c}")
    if not chapters:
        print("no chapters to run")
        return 0

    jobs = [(c, s) for s in seeds for c in chapters]
    with tempfile.TemporaryDirectory() as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda cs: launch(cs[0], cs[1], tmp), jobs))

    by = {(r["notebook"], r["seed"]): r for r in results}
    width = max(len(Path(c).name) for c in chapters)
    print()
    print(f"{'chapter'.ljust(width)}  {'seed':>7}  result")
    for c in chapters:
        for s in seeds:
            print(f"{Path(c).name.ljust(width)}  {s:>7}  {describe(by[c, s])}")
    failed = [r for r in results if r["status"] != "pass"]
    passed = len(results) - len(failed)
    print(f"\ngate: {passed} passed, {len(failed)} failed")
    for r in failed:
        print(f"reproduce: make robustness SEEDS={r['seed']} CHAPTERS={r['notebook']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
