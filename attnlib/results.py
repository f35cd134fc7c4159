"""Full-scale results: run an experiment, store it with its provenance, load it, check it is fresh.

``make results`` (``scripts/results.py``) runs the experiments of :mod:`attnlib.experiments`
at full scale and writes one small JSON file per experiment, ``results/<chapter>/<name>.json``
(at another base seed: ``results/seed-<seed>/...``, not committed). A file holds:

- ``settings``: the experiment's full-scale settings (seed counts, steps, learning-rate grids);
- ``units``: every configuration it trained, in order, each with its per-seed numbers and the
  training-loss curve of every run (``"_train"``: seeds, logged steps, loss per seed);
- ``provenance``: the command, the base seed and every seed used, the attnlib commit, the torch
  and Python versions, the number of threads, the device, the wall and CPU time, and the
  CPU time per seed-step.

A run is resumable: every finished unit is appended to ``results/.partial/``; run the same
command again and it skips what is done. Interrupting loses at most the unit in flight.

:func:`fresh` is how the tests know that a stored file still is what the code produces: the
stored settings must equal the experiment's, and in *every* unit the first steps of its first
training run, retrained on two of its seeds, must give the stored losses again (a unit that
trains nothing is re-run whole and must equal its stored record).
"""
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import config
from .evidence import Verdict
from .training import train as _train

def _results_dir() -> Path:
    """The repository's results/ folder; in an attnlib installed from a wheel (Colab), its copy
    ``attnlib/stored_results`` (pyproject.toml ships it)."""
    repo = Path(__file__).resolve().parent.parent / "results"
    in_checkout = repo.is_dir() or (repo.parent / "pyproject.toml").is_file()
    return repo if in_checkout else Path(__file__).resolve().parent / "stored_results"


#: where the committed files (base seed 0) are
RESULTS_DIR = _results_dir()
#: the base seed of the committed files
STORED_SEED = 0
#: significant digits kept for floats in a stored file
DIGITS = 6
#: how many points of each training-loss curve are logged (the default ``log_every``)
LOG_POINTS = 25
#: How close a retrained loss must come to the stored one in :func:`fresh`. Not 0: float rounding
#: differs between CPU kinds (torch picks AVX-512 or AVX2 kernels), and on two machines of this project
#: the first logged loss of the same run differed by up to 1.5e-6 (relative), the second by up to 5e-3 on
#: chaotic runs at the largest rate. So :func:`fresh` reads the first logged loss, to 1e-4: well above
#: that noise, well below what a change to the data, the model, the seeds or the rate does to it.
FRESH_RTOL = 1e-4


class _SliceDone(Exception):
    """Raised by :meth:`Run.train` in slice mode, carrying the prefix it trained."""

    def __init__(self, key, history, seeds):
        super().__init__(key)
        self.key, self.history, self.seeds = key, history, seeds


class _NotStored(Exception):
    """Raised in slice mode by a unit that the stored file does not have."""


class Run:
    """What an experiment's ``run(ctx, settings)`` works through.

    - :meth:`seeds`: the seeds, counted from the base seed;
    - :meth:`expect`: how many seed-steps the experiment will train (for the progress bar's ETA);
    - :meth:`unit`: one configuration, stored (and skipped when resuming);
    - :meth:`train`: :func:`attnlib.training.train`, recording the loss curve in the unit.

    ``stored[key]`` gives a finished unit's record, e.g. to choose a learning rate from
    earlier units.
    """

    def __init__(self, experiment, settings, base_seed, *, cache=None, slice_steps=None, against=None,
                 progress=True, position=0, jobs=1):
        self.experiment, self.settings, self.base_seed = experiment, settings, int(base_seed)
        self.stored = {}  # key -> record, in the order the units ran
        self.seeds_used = set()
        self.resumed = 0
        self._jobs = int(jobs)
        self._external_cpu = 0.0  # CPU seconds of units run in other processes or in an earlier run
        self._external_wall = 0.0  # wall seconds of units from an earlier run
        self._cache = Path(cache) if cache else None
        self._cached = _read_cache(self._cache, settings) if self._cache else {}
        self._slice_steps = slice_steps
        # slice mode (:func:`fresh`): each unit trains only the first steps of its first run, compares
        # them with ``against`` (the stored units) in ``self.slices``, and goes on with the stored record
        self._against = against
        self.slices = []
        self._current = None
        self._bar = tqdm(total=0, desc=experiment.id, unit="seed-step", unit_scale=True, position=position,
                         disable=not progress or slice_steps is not None, mininterval=1.0, leave=True)

    def seeds(self, n: int, offset: int = 0) -> list[int]:
        """``n`` consecutive seeds starting at ``base seed + offset``."""
        if n < 1:
            raise ValueError(f"need at least one seed, got n={n}")
        seeds = [self.base_seed + offset + i for i in range(n)]
        self.seeds_used.update(seeds)
        return seeds

    def expect(self, seed_steps: int):
        """Tell the progress bar how many seed-steps (seeds x steps, summed over runs) lie ahead."""
        self._bar.total = int(seed_steps)
        self._bar.refresh()

    def unit(self, key: str, fn) -> dict:
        """Run ``fn()`` (which returns a dict of JSON values, e.g. per-seed scores) as the unit ``key``.

        Returns its record: what ``fn`` returned, as stored (lists, not arrays), plus ``"_train"``,
        the loss curves of the training runs inside it. A unit finished by an earlier, interrupted
        run of the same experiment is not run again.
        """
        return self.map({key: fn})[key]

    def map(self, fns: dict, cost: dict | None = None) -> dict:
        """Run independent units ``{key: fn}`` (as :meth:`unit` does), in parallel when ``jobs`` > 1.

        Each unit then runs in a process of its own, on one thread, so that its numbers are
        the same as in a notebook. ``cost`` (optional, ``{key: any number proportional to the
        unit's CPU time}``) starts the largest units first, so that no large unit is left to run
        alone at the end; it changes no number. Returns ``{key: record}`` in the order of ``fns``.
        """
        for key in fns:
            if key in self.stored:
                raise ValueError(f"unit {key!r} ran twice in {self.experiment.id}")
        todo = [key for key in fns if key not in self._cached]
        done = {}
        if self._jobs > 1 and len(todo) > 1 and self._slice_steps is None:
            if cost is not None:  # largest first; ties keep the order of ``fns``
                todo = sorted(todo, key=lambda key: -cost[key])
            done = self._map_in_processes({key: fns[key] for key in todo})
        for key, fn in fns.items():
            if key in self._cached:
                record = self._cached[key]
                self.resumed += 1
                self._bar.update(record.get("_seed_steps", 0))
                self._external_cpu += record.get("_cpu_s", 0.0)
                self._external_wall += record.get("_wall_s", 0.0)
            elif key in done:
                record = done[key]
                self._external_cpu += record["_cpu_s"]
            else:
                record = self._compute(key, fn)
            if key not in self._cached and self._cache is not None:
                _append_cache(self._cache, self.settings, key, record)
            self.stored[key] = record
        return {key: self.stored[key] for key in fns}

    def _compute(self, key, fn) -> dict:
        if self._slice_steps is not None:
            return self._compare_slice(key, fn)
        self._current = {"key": key, "train": [], "seed_steps": 0}
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            out = fn()
        finally:
            current, self._current = self._current, None
        if not isinstance(out, dict):
            raise TypeError(f"unit {key!r} must return a dict, got {type(out).__name__}")
        return _round_trip({**out, "_train": current["train"], "_seed_steps": current["seed_steps"],
                            "_wall_s": time.perf_counter() - wall, "_cpu_s": time.process_time() - cpu})

    def _compare_slice(self, key, fn) -> dict:
        """Slice mode: retrain the first steps of unit ``key``'s first training run (or, if it trains
        nothing, all of it), compare with the stored unit, note the comparison in ``self.slices``, and
        return the stored record so that later units (e.g. a rate chosen from earlier ones) go on."""
        stored = self._against.get(key)
        if stored is None:
            raise _NotStored(key)
        self._current = {"key": key, "train": [], "seed_steps": 0}
        try:
            out = fn()
        except _SliceDone as done:
            if not stored["_train"]:
                self.slices.append({"unit": key, "same": False, "why": "the stored unit has no training run"})
                return stored
            run_ = stored["_train"][0]
            missing = [s for s in done.seeds if s not in run_["seeds"]]
            if missing:
                self.slices.append({"unit": key, "same": False, "why": f"seeds {missing} are not in the stored run"})
                return stored
            got = np.array(_round_trip(done.history.loss.tolist()), dtype=float)
            n = got.shape[1]
            want = np.array(run_["loss"], dtype=float)[[run_["seeds"].index(s) for s in done.seeds]][:, :n]
            same = (list(done.history.step[:n]) == list(run_["step"][:n]) and got.shape == want.shape
                    and np.allclose(got, want, rtol=FRESH_RTOL, atol=1e-6))
            self.slices.append({"unit": key, "same": bool(same), "seeds": done.seeds, "logged": n,
                                "stored": want.tolist(), "now": got.tolist()})
            return stored
        finally:
            self._current = None
        whole = _without_times(_round_trip({**out, "_train": [], "_seed_steps": 0}))
        self.slices.append({"unit": key, "same": whole == stored, "whole": True})
        return stored

    def _map_in_processes(self, fns: dict) -> dict:
        """Run the units in ``self._jobs`` forked processes; the bar follows a shared counter."""
        global _PENDING
        context = multiprocessing.get_context("fork")
        counter = context.Value("q", 0)
        _PENDING = (self, list(fns.items()), counter)
        shown = 0
        with ProcessPoolExecutor(max_workers=self._jobs, mp_context=context) as pool:
            futures = {pool.submit(_run_pending, i): key for i, key in enumerate(fns)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # a unit that failed fails the experiment here
                now = counter.value
                self._bar.update(now - shown)
                shown = now
        _PENDING = None
        return {futures[f]: f.result() for f in futures}

    def train(self, build, data, *, seeds, steps, log_every=None, **train_kwargs):
        """:func:`attnlib.training.train` inside a unit; its loss curve goes into the unit's record.

        ``log_every`` defaults to ``steps // 25`` (25 logged points a run).
        """
        if self._current is None:
            raise RuntimeError("ctx.train must be called inside ctx.unit(key, fn)")
        log_every = log_every or max(1, steps // LOG_POINTS)
        if self._slice_steps is not None:
            seeds = list(seeds)[:2]
            kwargs = {k: v for k, v in train_kwargs.items() if k not in ("evaluate", "eval_every")}
            _, hist = _train(build, data, seeds=seeds, steps=steps, log_every=log_every, progress=False,
                             max_steps=min(steps, self._slice_steps * log_every), **kwargs)
            raise _SliceDone(self._current["key"], hist, seeds)
        models, hist = _train(build, data, seeds=seeds, steps=steps, log_every=log_every, progress=False,
                              on_step=self._bar.update, **train_kwargs)
        self._current["train"].append({"seeds": [int(s) for s in seeds], "step": hist.step.tolist(),
                                       "loss": hist.loss.tolist()})
        self._current["seed_steps"] += len(seeds) * steps
        self.seeds_used.update(int(s) for s in seeds)
        return models, hist

    def close(self):
        self._bar.close()


_PENDING = None  # (Run, [(key, fn), ...], counter): what forked workers of Run.map run


def _run_pending(index: int) -> dict:
    """In a forked worker: compute unit ``index`` of ``_PENDING`` on one thread."""
    ctx, items, counter = _PENDING
    torch.set_num_threads(1)

    def count(num_seeds):
        with counter.get_lock():
            counter.value += num_seeds

    ctx._bar = _Counter(count)
    key, fn = items[index]
    return ctx._compute(key, fn)


class _Counter:
    """Stands in for the progress bar in a worker process: forwards the seed-steps done."""

    def __init__(self, count):
        self.update = count


def run(experiment, *, scale: str | None = None, seed: int | None = None, settings: dict | None = None,
        cache=None, jobs=1, progress=True, position=0, command="a notebook") -> dict:
    """Run ``experiment`` and return it in stored form (see the module's docstring).

    Args:
        scale: ``"fast"`` or ``"full"`` (default: ``ATTNLIB_SCALE``); picks the settings.
        seed: the base seed (default: ``ATTNLIB_SEED``).
        settings: override some settings of that scale, e.g. ``{"steps": 500}``, to try a change.
        cache: a file of finished units, to resume an interrupted run (``make results`` uses one).
        jobs: how many processes run independent units at once (each on one thread).
    """
    scale = scale or config.scale()
    if scale not in experiment.settings:
        raise ValueError(f"{experiment.id} has no settings for scale {scale!r}; it has {list(experiment.settings)}")
    seed = config.base_seed() if seed is None else int(seed)
    chosen = {**experiment.settings[scale], **(settings or {})}
    unknown = set(settings or {}) - set(experiment.settings[scale])
    if unknown:
        raise ValueError(f"{experiment.id} has no setting(s) {sorted(unknown)}; it has {sorted(chosen)}")
    wall, cpu = time.perf_counter(), time.process_time()
    ctx = Run(experiment, chosen, seed, cache=cache, progress=progress, position=position, jobs=jobs)
    try:
        experiment.run(ctx, chosen)
    finally:
        ctx.close()
    seed_steps = sum(r["_seed_steps"] for r in ctx.stored.values())
    cpu_s = time.process_time() - cpu + ctx._external_cpu
    units = {k: _without_times(r) for k, r in ctx.stored.items()}
    return {
        "experiment": experiment.id,
        "title": experiment.title,
        "scale": scale,
        "settings": _round_trip(chosen),
        "provenance": {
            "command": command,
            "base_seed": seed,
            "seeds": sorted(ctx.seeds_used),
            "attnlib_commit": _commit(),
            "torch": torch.__version__.split("+")[0],
            "python": platform.python_version(),
            "threads": 1 if jobs > 1 else torch.get_num_threads(),
            "processes": int(jobs),
            "device": config.device(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "wall_s": round(time.perf_counter() - wall + ctx._external_wall, 1),  # resumed: summed
            "cpu_s": round(cpu_s, 1),
            "seed_steps": seed_steps,
            "ms_per_seed_step": round(1000 * cpu_s / seed_steps, 3) if seed_steps else None,
            "resumed_units": ctx.resumed,
        },
        "units": units,
    }


# ------------------------------------------------------------------ files
def path_for(experiment, seed: int = STORED_SEED, root=None) -> Path:
    """Where ``make results`` stores ``experiment`` at base seed ``seed``."""
    root = Path(root) if root is not None else RESULTS_DIR
    folder = root if seed == STORED_SEED else root / f"seed-{seed}"
    return folder / experiment.chapter / f"{experiment.name}.json"


def partial_path(experiment, seed: int, root=None) -> Path:
    """The file of finished units of an unfinished run (resumed by the next run)."""
    root = Path(root) if root is not None else RESULTS_DIR
    return root / ".partial" / f"seed-{seed}" / experiment.chapter / f"{experiment.name}.jsonl"


def save(stored: dict, path) -> Path:
    """Write ``stored`` as JSON that diffs well: one line per list of numbers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(stored) + "\n")
    return path


def load(chapter: str, name: str, seed: int = STORED_SEED, root=None) -> dict:
    """The stored full-scale results of experiment ``name`` of ``chapter`` (e.g. ``"05_pooling"``)."""
    from .experiments import experiment

    exp = experiment(chapter, name)
    path = path_for(exp, seed, root)
    if not path.is_file():
        raise FileNotFoundError(f"no stored results for {exp.id} at {path.relative_to(path.parents[2])}; "
                                f"make them with `make results CHAPTERS=chapters/{exp.chapter}.ipynb"
                                + ("" if seed == STORED_SEED else f" SEED={seed}") + "`")
    return json.loads(path.read_text())


def dumps(obj, indent=0) -> str:
    """JSON with dicts indented and every list of scalars on one line."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=True)


# ------------------------------------------------------------------ checks
def check(experiment, stored: dict) -> list[Verdict]:
    """The chapter's conclusions about ``stored`` (``experiment.check``), as verdicts."""
    verdicts = experiment.check(stored)
    if not verdicts or not all(isinstance(v, Verdict) for v in verdicts):
        raise TypeError(f"{experiment.id}: check must return a non-empty list of Verdicts")
    return verdicts


def fresh(experiment, stored: dict, *, log_points: int = 1) -> Verdict:
    """Is ``stored`` still what the code produces? (The staleness check of ``make test``.)

    Holds when the stored settings equal ``experiment.settings["full"]`` and, in every unit, the first
    ``log_points`` logged losses of its first training run, retrained on its first two seeds, equal the
    stored ones (within :data:`FRESH_RTOL`); a unit that trains nothing is re-run whole and must equal its
    stored record. It retrains about 0.5 % of the experiment's seed-steps.
    """
    refresh = f"refresh with `make results CHAPTERS=chapters/{experiment.chapter}.ipynb`"
    want = _round_trip(experiment.settings["full"])
    if stored.get("settings") != want:
        changed = sorted(k for k in set(want) | set(stored.get("settings", {}))
                         if want.get(k) != stored.get("settings", {}).get(k))
        return Verdict(f"{experiment.id}: stale, the settings changed ({', '.join(changed)}); {refresh}", False,
                       {"stored": {k: stored.get("settings", {}).get(k) for k in changed},
                        "now": {k: want.get(k) for k in changed}})
    base = stored["provenance"]["base_seed"]
    ctx = Run(experiment, want, base, slice_steps=log_points, against=stored["units"], progress=False)
    try:
        experiment.run(ctx, want)
    except _NotStored as missing:
        return Verdict(f"{experiment.id}: stale, the code runs a unit ({missing.args[0]!r}) that is not in the "
                       f"stored file; {refresh}", False)
    finally:
        ctx.close()
    unrun = [k for k in stored["units"] if k not in ctx.stored]
    if unrun:
        return Verdict(f"{experiment.id}: stale, the stored file has units the code no longer runs "
                       f"({unrun[0]!r}, ...); {refresh}", False, {"not run": unrun})
    bad = [r for r in ctx.slices if not r["same"]]
    numbers = {"units": len(ctx.slices), "stale": [r["unit"] for r in bad], "first stale": bad[0] if bad else None}
    if bad:
        what = "re-running it whole gives other numbers" if bad[0].get("whole") else "retraining its first steps gives other losses"
        return Verdict(f"{experiment.id}: stale, {len(bad)} of {len(ctx.slices)} units differ (first: {bad[0]['unit']!r}, "
                       f"{bad[0].get('why', what)}); {refresh}", False, numbers)
    trained = sum(1 for r in ctx.slices if not r.get("whole"))
    first = "first logged loss" if log_points == 1 else f"first {log_points} logged losses"
    return Verdict(f"{experiment.id}: fresh (settings equal; in each of {trained} units the {first} of its first "
                   f"training run, retrained on 2 seeds, equals the stored one to {FRESH_RTOL:g}; "
                   f"{len(ctx.slices) - trained} unit(s) that train nothing re-run whole and equal)", True, numbers)


# ------------------------------------------------------------------ helpers
def _without_times(record: dict) -> dict:
    """A unit's record without its timings (they vary from run to run, and would make every diff noisy)."""
    return {k: v for k, v in record.items() if k not in ("_wall_s", "_cpu_s")}


def _round_trip(obj):
    """``obj`` as it reads back from a stored file: arrays as lists, floats to DIGITS significant digits."""
    if isinstance(obj, dict):
        return {str(k): _round_trip(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round_trip(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _round_trip(obj.tolist())
    if isinstance(obj, torch.Tensor):
        return _round_trip(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if not math.isfinite(x) or x == 0 else float(f"{x:.{DIGITS}g}")
    return obj


def _read_cache(path: Path, settings: dict) -> dict:
    """The finished units of an earlier run with the same settings (its first line holds them)."""
    if not path.is_file():
        return {}
    lines = path.read_text().splitlines()
    try:
        same = json.loads(lines[0]).get("settings") == _round_trip(settings)
    except (IndexError, json.JSONDecodeError, AttributeError):
        same = False
    if not same:  # another experiment design: start again
        path.unlink()
        return {}
    cached = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interruption
            continue
        cached[entry["key"]] = entry["record"]
    return cached


def _append_cache(path: Path, settings: dict, key: str, record: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if f.tell() == 0:
            f.write(json.dumps({"settings": _round_trip(settings)}) + "\n")
        f.write(json.dumps({"key": key, "record": record}) + "\n")


def _commit() -> str:
    """The git commit of this checkout, with ``-dirty`` if attnlib or results code has uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "attnlib", "scripts/results.py"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("-dirty" if dirty else "")
