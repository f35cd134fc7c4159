"""make results: run the chapters' full-scale experiments, store them, check their conclusions.

    make results [CHAPTERS="chapters/05_pooling.ipynb ..."] [SEED=...] [JOBS=2]

Each experiment of attnlib.experiments runs at full scale, its independent units in JOBS
processes (one thread each), and is written to results/<chapter>/<name>.json (base seed 0,
committed) or results/seed-<SEED>/<chapter>/<name>.json (any other base seed, not committed).
Interrupted? Run the same command again: finished units are kept in results/.partial/.
Then each experiment's conclusions (its check function, the same one the chapter calls on the
stored file) are tested on the new data, and a table says which hold.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnlib import experiments, results  # noqa: E402

MAX_SEED = 10**9


def parse_seed(raw: str) -> int:
    try:
        seed = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SEED must be an integer, got {raw!r}") from None
    if not 0 <= seed < MAX_SEED:
        raise argparse.ArgumentTypeError(f"SEED must be between 0 and {MAX_SEED - 1}, got {seed}")
    return seed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", nargs="*", default=None,
                        help="chapters/NN_name.ipynb (or NN_name); default: every chapter with full-scale experiments")
    parser.add_argument("--experiments", nargs="*", default=None, help="only these experiment names")
    parser.add_argument("--seed", type=parse_seed, default=results.STORED_SEED, help="base seed (default 0)")
    parser.add_argument("--jobs", type=int, default=2, help="processes per experiment (default 2)")
    parser.add_argument("--fresh", action="store_true", help="ignore the units an interrupted run left behind")
    parser.add_argument("--out", default=None, help="results folder (default: the repository's results/)")
    args = parser.parse_args(argv)

    try:
        chapters = [experiments.chapter_name(c) for c in args.chapters] if args.chapters else list(experiments.CHAPTERS)
        todo = [e for c in chapters for e in experiments.experiments(c)]
        if args.experiments:
            unknown = set(args.experiments) - {e.name for e in todo}
            if unknown:
                raise ValueError(f"no experiment(s) {sorted(unknown)} in {chapters}; "
                                 f"there are {sorted({e.name for e in todo})}")
            todo = [e for e in todo if e.name in args.experiments]
    except ValueError as err:
        print(f"make results: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print("make results: JOBS must be at least 1", file=sys.stderr)
        return 2

    torch.set_num_threads(1)
    print(f"make results: {len(todo)} experiment(s) of {len(chapters)} chapter(s), base seed {args.seed}, "
          f"{args.jobs} process(es) per experiment")
    table = []
    for exp in todo:
        command = f"make results CHAPTERS=chapters/{exp.chapter}.ipynb SEED={args.seed}"
        partial = results.partial_path(exp, args.seed, args.out)
        if args.fresh and partial.exists():
            partial.unlink()
        stored = results.run(exp, scale="full", seed=args.seed, cache=partial, jobs=args.jobs, command=command)
        path = results.save(stored, results.path_for(exp, args.seed, args.out))
        partial.unlink(missing_ok=True)
        verdicts = results.check(exp, stored)
        failed = [v for v in verdicts if not v.holds]
        p = stored["provenance"]
        table.append({"experiment": exp.id, "wall_s": p["wall_s"], "cpu_s": p["cpu_s"],
                      "ms_per_seed_step": p["ms_per_seed_step"], "held": f"{len(verdicts) - len(failed)}/{len(verdicts)}",
                      "first failing": f"{failed[0].claim}; numbers: {failed[0].numbers}" if failed else ""})
        print(f"{exp.id}: {path} ({p['wall_s']:.0f} s wall, {p['cpu_s']:.0f} s CPU"
              + (f", {p['resumed_units']} unit(s) resumed" if p["resumed_units"] else "") + ")")
        for v in verdicts:
            print("   ", v)

    print()
    print(f"{'experiment':45s} {'wall s':>7s} {'CPU s':>7s} {'ms/seed-step':>12s} {'held':>6s}  first failing")
    for row in table:
        print(f"{row['experiment']:45s} {row['wall_s']:7.0f} {row['cpu_s']:7.0f} "
              f"{row['ms_per_seed_step'] if row['ms_per_seed_step'] is not None else '-':>12} {row['held']:>6s}  "
              f"{row['first failing'] or 'pass'}")
    per_chapter = {}
    for row in table:
        per_chapter.setdefault(row["experiment"].split("/")[0], []).append(row["wall_s"])
    print()
    for chapter, walls in per_chapter.items():
        print(f"{chapter}: {sum(walls) / 60:.1f} min wall")
    return 1 if any(row["first failing"] for row in table) else 0


if __name__ == "__main__":
    sys.exit(main())
