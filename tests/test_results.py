"""Full-scale results: the stored files are fresh and their conclusions hold; the machinery works.

The first test is the staleness check of ``make test``: for every experiment of
attnlib.experiments, the stored file's settings equal the code's and, in every unit, the first
steps of its first training run, retrained on two seeds, give the stored loss again; then the chapter's
conclusions (the experiment's check function) hold on the stored data.
"""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlib import experiments, results
from attnlib.evidence import reached
from attnlib.training import train

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("exp", experiments.experiments(), ids=lambda e: e.id)
def test_stored_results_are_fresh_and_hold(exp):
    torch.set_num_threads(1)
    stored = results.load(exp.chapter, exp.name)
    results.fresh(exp, stored).require()
    assert stored["provenance"]["base_seed"] == results.STORED_SEED
    assert stored["provenance"]["device"] == "cpu", "commit results computed on the CPU (the staleness check retrains there)"
    for verdict in results.check(exp, stored):
        verdict.require()


# ----------------------------------------------------------- a toy experiment for the machinery
def _toy_data(seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(200, 4, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


def _toy_run(ctx, s, fail_after=None):
    seeds = ctx.seeds(s["seeds"])
    ctx.expect(len(seeds) * s["steps"] * len(s["widths"]))

    def fit(width):
        def unit():
            build = lambda: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
            models, h = ctx.train(build, _toy_data, seeds=seeds, steps=s["steps"], lr=5e-2, batch_size=16)
            X, y = _toy_data(999)
            return {"seeds": seeds, "accuracy": [float((m(X).argmax(1) == y).float().mean()) for m in models]}
        return unit

    for i, w in enumerate(s["widths"]):
        if fail_after is not None and i == fail_after:
            raise KeyboardInterrupt("interrupted")
        ctx.unit(f"width {w}", fit(w))


def _toy_check(stored):
    return [reached(stored["units"]["width 8"]["accuracy"], 0.6, name="width 8")]


TOY = experiments.Experiment("99_toy", "toy", "a toy", {"fast": {"seeds": 2, "steps": 30, "widths": [8, 16]},
                                                        "full": {"seeds": 3, "steps": 50, "widths": [8, 16]}},
                             _toy_run, _toy_check)


def test_run_save_load_round_trip(tmp_path):
    stored = results.run(TOY, scale="full", seed=3, progress=False)
    assert list(stored["units"]) == ["width 8", "width 16"]
    p = stored["provenance"]
    assert p["base_seed"] == 3 and p["seeds"] == [3, 4, 5]
    assert p["seed_steps"] == 2 * 3 * 50 and p["threads"] >= 1 and p["torch"] and p["attnlib_commit"]
    path = results.save(stored, tmp_path / "toy.json")
    assert json.loads(path.read_text()) == stored
    text = path.read_text()
    assert '"seeds": [3, 4, 5]' in text, "a list of numbers is written on one line"
    run = stored["units"]["width 8"]["_train"][0]
    assert run["seeds"] == [3, 4, 5] and len(run["loss"]) == 3 and len(run["loss"][0]) == len(run["step"])
    assert all(v.holds for v in results.check(TOY, stored))


def test_scale_and_overrides():
    fast = results.run(TOY, scale="fast", seed=0, progress=False)
    assert fast["settings"]["seeds"] == 2
    assert results.run(TOY, scale="full", seed=0, settings={"steps": 10}, progress=False)["settings"]["steps"] == 10
    with pytest.raises(ValueError, match="no setting"):
        results.run(TOY, scale="full", settings={"stepz": 10}, progress=False)
    with pytest.raises(ValueError, match="no settings for scale"):
        results.run(TOY, scale="huge", progress=False)


def test_interrupted_run_resumes_where_it_stopped(tmp_path):
    cache = tmp_path / "toy.jsonl"
    whole = results.run(TOY, scale="full", seed=1, progress=False)
    interrupted = dataclasses.replace(TOY, run=lambda ctx, s: _toy_run(ctx, s, fail_after=1))
    with pytest.raises(KeyboardInterrupt):
        results.run(interrupted, scale="full", seed=1, cache=cache, progress=False)
    resumed = results.run(TOY, scale="full", seed=1, cache=cache, progress=False)
    assert resumed["provenance"]["resumed_units"] == 1
    assert resumed["units"] == whole["units"]
    # another design (changed settings) does not reuse the units
    other = results.run(TOY, scale="full", seed=1, settings={"steps": 40}, cache=cache, progress=False)
    assert other["provenance"]["resumed_units"] == 0


def test_units_in_two_processes_give_the_same_numbers():
    def run_map(ctx, s):
        seeds = ctx.seeds(s["seeds"])
        ctx.map({f"width {w}": (lambda w=w: _fit_toy(ctx, seeds, s, w)) for w in s["widths"]})

    mapped = dataclasses.replace(TOY, run=run_map)
    one = results.run(mapped, scale="full", seed=2, jobs=1, progress=False)
    two = results.run(mapped, scale="full", seed=2, jobs=2, progress=False)
    assert one["units"] == two["units"]
    assert two["provenance"]["processes"] == 2 and two["provenance"]["cpu_s"] > 0


def _fit_toy(ctx, seeds, s, width):
    build = lambda: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
    models, _ = ctx.train(build, _toy_data, seeds=seeds, steps=s["steps"], lr=5e-2, batch_size=16)
    X, y = _toy_data(999)
    return {"accuracy": [float((m(X).argmax(1) == y).float().mean()) for m in models]}


def test_fresh_passes_then_catches_a_changed_setting_and_a_changed_experiment(monkeypatch):
    stored = results.run(TOY, scale="full", seed=0, progress=False)
    verdict = results.fresh(TOY, stored)
    assert verdict.holds, verdict.numbers
    changed = dataclasses.replace(TOY, settings={**TOY.settings, "full": {**TOY.settings["full"], "steps": 60}})
    verdict = results.fresh(changed, stored)
    assert not verdict.holds and "settings changed (steps)" in verdict.claim and "make results" in verdict.claim
    # the same settings, but the experiment's data changed: the retrained first steps differ
    original = _toy_data
    monkeypatch.setattr(sys.modules[__name__], "_toy_data", lambda seed: original(seed + 1))
    verdict = results.fresh(TOY, stored)
    assert not verdict.holds and "gives other losses" in verdict.claim


def _toy_run_with_summary(ctx, s, lr_of=lambda width: 5e-2):
    """TOY plus a unit that trains nothing (it summarises the others), with a rate per width."""
    seeds = ctx.seeds(s["seeds"])

    def fit(width):
        def unit():
            build = lambda: torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 3))
            models, _ = ctx.train(build, _toy_data, seeds=seeds, steps=s["steps"], lr=lr_of(width), batch_size=16)
            X, y = _toy_data(999)
            return {"accuracy": [float((m(X).argmax(1) == y).float().mean()) for m in models]}
        return unit

    runs = ctx.map({f"width {w}": fit(w) for w in s["widths"]})
    ctx.unit("best", lambda: {"width": max(runs, key=lambda k: np.mean(runs[k]["accuracy"]))})


def test_fresh_checks_every_unit_not_only_the_first():
    toy = dataclasses.replace(TOY, run=_toy_run_with_summary)
    stored = results.run(toy, scale="full", seed=0, progress=False)
    verdict = results.fresh(toy, stored)
    assert verdict.holds and verdict.numbers["units"] == 3, verdict.claim
    # only the second unit's rate changes: the first unit still matches, the second does not
    changed = dataclasses.replace(toy, run=lambda ctx, s: _toy_run_with_summary(ctx, s, lambda w: 5e-2 if w == 8 else 6e-2))
    verdict = results.fresh(changed, stored)
    assert not verdict.holds and verdict.numbers["stale"] == ["width 16"], verdict.numbers
    # a unit that trains nothing is re-run whole: a stored record that no longer matches is stale
    tampered = json.loads(json.dumps(stored))
    tampered["units"]["best"]["width"] = "width 99"
    verdict = results.fresh(toy, tampered)
    assert not verdict.holds and verdict.numbers["stale"] == ["best"] and "re-running it whole" in verdict.claim
    # a unit the stored file lacks, or a stored unit the code no longer runs
    missing = json.loads(json.dumps(stored))
    del missing["units"]["width 16"]
    assert "not in the stored file" in results.fresh(toy, missing).claim
    assert "no longer runs" in results.fresh(TOY, {**stored, "units": {**stored["units"]}}).claim


def test_map_cost_changes_the_order_of_work_not_the_numbers():
    def run_map(ctx, s, cost=None):
        seeds = ctx.seeds(s["seeds"])
        ctx.map({f"width {w}": (lambda w=w: _fit_toy(ctx, seeds, s, w)) for w in s["widths"]}, cost=cost)

    plain = results.run(dataclasses.replace(TOY, run=run_map), scale="full", seed=2, jobs=2, progress=False)
    costed = results.run(dataclasses.replace(TOY, run=lambda ctx, s: run_map(ctx, s, {"width 8": 1, "width 16": 2})),
                         scale="full", seed=2, jobs=2, progress=False)
    assert list(costed["units"]) == ["width 8", "width 16"]
    assert costed["units"] == plain["units"]



def test_train_max_steps_is_the_prefix_of_the_long_run():
    build = lambda: torch.nn.Linear(4, 3)
    _, whole = train(build, _toy_data, seeds=[0, 1], steps=40, lr=1e-2, log_every=5, progress=False)
    _, prefix = train(build, _toy_data, seeds=[0, 1], steps=40, lr=1e-2, log_every=5, progress=False, max_steps=10)
    np.testing.assert_array_equal(prefix.step, whole.step[:2])
    np.testing.assert_array_equal(prefix.loss, whole.loss[:, :2])
    with pytest.raises(ValueError, match="max_steps"):
        train(build, _toy_data, seeds=[0], steps=10, max_steps=0, progress=False)


def test_unit_must_return_a_dict_and_train_must_be_inside_a_unit():
    def bad(ctx, s):
        ctx.unit("x", lambda: [1, 2])

    with pytest.raises(TypeError, match="must return a dict"):
        results.run(dataclasses.replace(TOY, run=bad), scale="full", progress=False)

    def outside(ctx, s):
        ctx.train(lambda: torch.nn.Linear(4, 3), _toy_data, seeds=[0], steps=2)

    with pytest.raises(RuntimeError, match="inside ctx.unit"):
        results.run(dataclasses.replace(TOY, run=outside), scale="full", progress=False)


def test_chapter_names_and_clear_errors():
    assert experiments.chapter_name("chapters/04_softmax_alternatives.ipynb") == "04_softmax_alternatives"
    assert experiments.chapter_name("04_softmax_alternatives") == "04_softmax_alternatives"
    with pytest.raises(ValueError, match="no full-scale experiments for chapter"):
        experiments.chapter_name("chapters/09_nothing.ipynb")
    with pytest.raises(FileNotFoundError, match="make results CHAPTERS=chapters/04_softmax_alternatives.ipynb SEED=77"):
        results.load("04_softmax_alternatives", experiments.experiments("04_softmax_alternatives")[0].name, seed=77)


@pytest.mark.parametrize("args, message", [
    (["--chapters", "chapters/09_nothing.ipynb"], "no full-scale experiments for chapter"),
    (["--seed", "abc"], "SEED must be an integer"),
    (["--seed", "-4"], "SEED must be between 0 and"),
])
def test_make_results_refuses_what_does_not_exist(args, message):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "results.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
