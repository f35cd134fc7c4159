"""Chapter 4's experiments: can ReLU (or sigmoid, or a linear kernel) replace softmax?

``recall``  multi-query associative recall with one attention layer (:class:`ShiftRecall`),
            five normalisers, each at its own learning rate (chosen on validation sequences),
            read at its plateau; the trained models are also run at half and twice the
            training length.
"""
import numpy as np

from ..alternatives import ShiftRecall, steps_to_reach
from ..evidence import converged, equivalent, better, reached
from ..tasks import associative_recall
from ..training import accuracy
from . import Experiment

NORMALISERS = ["softmax", "relu_plain", "relu", "sigmoid", "linear"]
VOCAB = 64  # distinct keys, and distinct values
LAST = 5  # a run's score: the mean of its last 5 evaluations
MARGIN = 0.02  # 2 points of accuracy: the smallest difference that matters here
TOLERANCE = 0.005  # converged: held-out accuracy rose by at most this over the last quarter

RECALL = {
    "fast": {"seeds": 8, "lrs": [1e-2], "tune_seeds": 0, "num_pairs": 12, "d_model": 16,
             "steps": {"softmax": 800, "relu_plain": 1000, "relu": 1000, "sigmoid": 800, "linear": 1000},
             "warmup": 80, "eval_every": 40, "batch_size": 32, "train_size": 2000},
    "full": {"seeds": 24, "lrs": [3e-3, 1e-2, 3e-2], "tune_seeds": 4, "num_pairs": 12, "d_model": 16,
             "steps": {"softmax": 1500, "relu_plain": 2500, "relu": 2500, "sigmoid": 2500, "linear": 4000},
             "warmup": 80, "eval_every": 50, "batch_size": 32, "train_size": 2000},
}


def recall_task(num_examples, num_pairs, seed):
    """Associative recall with :data:`VOCAB` keys and values (``attnlib.tasks.associative_recall``)."""
    return associative_recall(num_examples, num_pairs, num_keys=VOCAB, num_values=VOCAB, seed=seed)


def run_recall(ctx, s):
    """Tune each normaliser's rate on validation sequences (full scale), then train it on fresh seeds."""
    M = s["num_pairs"]
    base = ctx.base_seed
    tests = {m: recall_task(500, m, seed=10**6 + 1000 * m + base) for m in (M // 2, M, 2 * M)}
    val = recall_task(250, M, seed=2 * 10**6 + base)
    seeds = ctx.seeds(s["seeds"])
    tune_seeds = ctx.seeds(s["tune_seeds"], offset=10_000) if len(s["lrs"]) > 1 else []
    ctx.expect(len(tune_seeds) * len(s["lrs"]) * sum(s["steps"].values()) + len(seeds) * sum(s["steps"].values()))

    def data(seed):
        t = recall_task(s["train_size"], M, seed=seed)
        return t.X, t.y

    def fit(name, lr, seeds_, held_out, lengths):
        def unit():
            models, h = ctx.train(lambda: ShiftRecall(2 * VOCAB, VOCAB, s["d_model"], normaliser=name, positions=False),
                                  data, seeds=seeds_, steps=s["steps"][name], lr=lr, batch_size=s["batch_size"],
                                  warmup_steps=s["warmup"], schedule="constant", eval_every=s["eval_every"],
                                  evaluate=lambda m: accuracy(m, held_out.X[:250], held_out.y[:250]))
            out = {"seeds": seeds_, "lr": lr, "eval_step": h.eval_step, "eval": h.eval,
                   "accuracy": h.eval[:, -LAST:].mean(1)}
            for m in lengths:
                out[f"accuracy at {m} pairs"] = [accuracy(model, tests[m].X, tests[m].y) for model in models]
            return out
        return unit

    chosen = {name: s["lrs"][0] for name in NORMALISERS}
    if tune_seeds:
        tuned = ctx.map({f"tune {name} lr={lr:g}": fit(name, lr, tune_seeds, val, ())
                         for name in NORMALISERS for lr in s["lrs"]})
        for name in NORMALISERS:
            scores = {lr: np.mean(tuned[f"tune {name} lr={lr:g}"]["accuracy"]) for lr in s["lrs"]}
            chosen[name] = max(s["lrs"], key=lambda lr: scores[lr])  # the highest mean validation accuracy
    ctx.map({name: fit(name, chosen[name], seeds, tests[M], (M // 2, M, 2 * M)) for name in NORMALISERS})


# --------------------------------------------------------------- reading a stored run
def rows(stored, value="accuracy"):
    """Per-seed rows ``{"config": normaliser, "seed", value}`` of the final runs, for :mod:`attnlib.evidence`."""
    return [{"config": name, "seed": seed, value: v}
            for name in NORMALISERS
            for seed, v in zip(stored["units"][name]["seeds"], stored["units"][name][value])]


def speed_rows(stored, level=0.9):
    """Per-seed steps to reach ``level`` held-out accuracy (a seed that never does: its run length)."""
    out = []
    for name in NORMALISERS:
        u = stored["units"][name]
        steps = steps_to_reach(u["eval_step"], u["eval"], level, never=stored["settings"]["steps"][name])
        out += [{"config": name, "seed": seed, "steps to 90%": float(t)} for seed, t in zip(u["seeds"], steps)]
    return out


def chosen_rates(stored):
    """``{normaliser: learning rate}`` of the final runs."""
    return {name: stored["units"][name]["lr"] for name in NORMALISERS}


def plateau(stored, name):
    """Verdict: the arm's held-out accuracy rose by at most TOLERANCE over its last quarter, on >= 75 % of seeds."""
    return converged(1 - np.array(stored["units"][name]["eval"]), window=0.25, rtol=0, atol=TOLERANCE,
                     min_share=0.75, name=f"{name} held-out error")


def check_recall(stored):
    """The chapter's conclusions on the full-scale recall runs."""
    acc = rows(stored)
    speed = speed_rows(stored)
    verdicts = [plateau(stored, name) for name in NORMALISERS]
    verdicts.append(reached([r["accuracy"] for r in acc if r["config"] == "softmax"], 0.95, name="softmax"))
    verdicts.append(better(acc, "accuracy", "softmax", "relu_plain"))
    verdicts.append(equivalent(acc, "accuracy", "relu", "softmax", margin=MARGIN))
    verdicts.append(better(acc, "accuracy", "softmax", "linear"))
    for name in ("relu_plain", "relu", "sigmoid"):
        verdicts.append(better(speed, "steps to 90%", name, "softmax"))
    return verdicts


EXPERIMENTS = [
    Experiment("04_softmax_alternatives", "recall",
               "associative recall, five normalisers at their own learning rates, read at their plateaus",
               RECALL, run_recall, check_recall),
]
