"""Chapter 1's experiments: what the MLP adds, and where a ReLU may go.

``mlp``         the bigram lookup with one block, with and without its MLP (and without it but
                wider, with more parameters than the MLP block): each arm at its own learning rate
                (chosen on validation sequences), trained to its plateau. Capacity or speed?
``placements``  the block variants of the chapter (the learner's proposals among them) on a small
                bigram lookup, at 2 and 6 blocks and at three learning rates, every rate on the
                same seeds: final held-out accuracy, speed (mean held-out accuracy over the first
                :data:`WINDOW` steps, the same window at every depth) and how many seeds fail;
                compared with the standard block at each variant's own best rate (the headline),
                and seed by seed at the rates they share (:data:`SHARED_RATES`, the low-noise
                secondary measure).

The tasks are :func:`attnlib.probes.bigram_lookup` tables; the models are
:class:`attnlib.models.TokenClassifier` with the :class:`attnlib.block.TransformerBlock` switches.
"""
import numpy as np

from ..evidence import Verdict, better, converged, equivalent, reached
from ..models import TokenClassifier
from ..probes import bigram_lookup, bigram_table, stream_zero_fraction
from ..training import accuracy
from . import Experiment

MARGIN = 0.02  # 2 points of accuracy: the smallest difference that matters here, fixed before running
N = 8  # tokens per sequence
NUM_HEADS = 2
FAILED = 0.9  # a seed whose final held-out accuracy is below this has failed to learn the table


# ------------------------------------------------------------------ shared
def lookup_data(vocab, base, offset):
    """A bigram table of ``vocab`` tokens and its training, validation and test sequences.

    All three sets and the table move with the base seed; ``offset`` keeps experiments apart.
    """
    table = bigram_table(vocab, seed=base + offset)
    train = bigram_lookup(4000, N, table, seed=base + offset + 1000)
    val = bigram_lookup(250, N, table, seed=base + offset + 5000)
    test = bigram_lookup(1000, N, table, seed=base + offset + 2000)
    return table, train, val, test


def steps_to(eval_step, curves, level, never):
    """Per seed: the first evaluated step whose accuracy is at least ``level`` (``never`` if none)."""
    curves = np.asarray(curves, dtype=float)
    hit = curves >= level
    first = np.where(hit.any(1), np.argmax(hit, 1), -1)
    return [float(eval_step[i]) if i >= 0 else float(never) for i in first]


# ------------------------------------------------------------------ mlp
MLP_ARMS = {  # name: (d_model, block switches)
    "with MLP": (16, {}),
    "no MLP": (16, {"mlp": False}),
    "no MLP, d_model = 28": (28, {"mlp": False}),
}

MLP = {
    "fast": {"seeds": 8, "lrs": [1e-2], "vocab": 16, "arms": ["with MLP", "no MLP"],
             "steps": {"with MLP": 600, "no MLP": 600, "no MLP, d_model = 28": 600},
             "warmup": 40, "eval_every": 50, "batch_size": 32},
    # the wider block stops at 2,500 steps (4,000 until 2026-12-07, to bring the chapter's full-scale runs under 10
    # minutes): at base seed 0 its validation plateau at both usable rates was within 0.1 point of the one at
    # 4,000 steps, and its plateau check held on 11 of 12 seeds
    "full": {"seeds": 12, "lrs": [3e-3, 1e-2, 3e-2], "vocab": 16, "arms": list(MLP_ARMS),
             "steps": {"with MLP": 1500, "no MLP": 4000, "no MLP, d_model = 28": 2500},
             "warmup": 40, "eval_every": 100, "batch_size": 32},
}
LAST = 5  # a run's plateau accuracy: the mean of its last 5 evaluations


def run_mlp(ctx, s):
    """Every arm at every rate of the grid on the same seeds; the rate per arm chosen on validation."""
    _, train, val, test = lookup_data(s["vocab"], ctx.base_seed, 0)
    seeds = ctx.seeds(s["seeds"])
    ctx.expect(len(seeds) * len(s["lrs"]) * sum(s["steps"][a] for a in s["arms"]))

    def fit(arm, lr):
        d, kw = MLP_ARMS[arm]

        def unit():
            models, h = ctx.train(lambda: TokenClassifier(2, d, NUM_HEADS, 1, vocab_size=s["vocab"], max_len=N, **kw),
                                  train, seeds=seeds, steps=s["steps"][arm], lr=lr, batch_size=s["batch_size"],
                                  warmup_steps=s["warmup"], schedule="constant", eval_every=s["eval_every"],
                                  evaluate=lambda m: accuracy(m, *val))
            return {"seeds": seeds, "lr": lr, "eval_step": h.eval_step, "val": h.eval,
                    "val plateau": h.eval[:, -LAST:].mean(1),
                    "accuracy": [accuracy(m, *test) for m in models]}
        return unit

    runs = ctx.map({f"{arm} lr={lr:g}": fit(arm, lr) for arm in s["arms"] for lr in s["lrs"]},
                   cost={f"{arm} lr={lr:g}": s["steps"][arm] * MLP_ARMS[arm][0] for arm in s["arms"] for lr in s["lrs"]})
    ctx.unit("chosen", lambda: {arm: max(s["lrs"], key=lambda lr: (np.mean(runs[f"{arm} lr={lr:g}"]["val plateau"]), -lr))
                                for arm in s["arms"]})


def mlp_run(stored, arm):
    """The record of ``arm`` at its chosen rate."""
    lr = stored["units"]["chosen"][arm]
    return stored["units"][f"{arm} lr={lr:g}"]


def mlp_rows(stored, value="accuracy"):
    """Per-seed rows ``{"config": arm, "seed", value}`` at each arm's chosen rate."""
    out = []
    for arm in stored["settings"]["arms"]:
        u = mlp_run(stored, arm)
        out += [{"config": arm, "seed": seed, value: v} for seed, v in zip(u["seeds"], u[value])]
    return out


def mlp_speed_rows(stored, level=0.95):
    """Per-seed steps to reach ``level`` validation accuracy, each arm at its chosen rate."""
    out = []
    for arm in stored["settings"]["arms"]:
        u = mlp_run(stored, arm)
        t = steps_to(u["eval_step"], u["val"], level, never=stored["settings"]["steps"][arm])
        out += [{"config": arm, "seed": seed, "steps to 95%": v} for seed, v in zip(u["seeds"], t)]
    return out


def mlp_plateau(stored, arm):
    """Verdict: the arm has reached its plateau: its validation accuracy rose by at most 1 point (half the
    margin) from the second-to-last fifth of training to the last, on >= 75 % of the seeds."""
    return converged(1 - np.array(mlp_run(stored, arm)["val"]), rtol=0, atol=0.01, min_share=0.75,
                     name=f"{arm}, validation error")


def check_mlp(stored):
    """Capacity or speed? Every arm at its plateau; the wider block without an MLP ends within MARGIN of the
    MLP block; at the same width, the block without an MLP needs more steps to reach 95 % than the MLP block,
    and more than the wider block without an MLP (extra parameters buy speed; each arm at its chosen rate)."""
    acc = mlp_rows(stored)
    verdicts = [mlp_plateau(stored, arm) for arm in MLP_ARMS]
    verdicts.append(reached([r["accuracy"] for r in acc if r["config"] == "with MLP"], 0.98, name="with MLP"))
    # only the wider block is claimed to end within MARGIN: the narrow one did at base seed 0 (-0.010 [-0.017,
    # -0.004]) but not at 3200000, where one of its 12 seeds stalled at 0.925 (-0.009 [-0.023, +0.004])
    verdicts.append(equivalent(acc, "accuracy", "no MLP, d_model = 28", "with MLP", margin=MARGIN))
    speed = mlp_speed_rows(stored)
    verdicts.append(better(speed, "steps to 95%", "no MLP", "with MLP"))
    verdicts.append(better(speed, "steps to 95%", "no MLP", "no MLP, d_model = 28"))
    return verdicts


# ------------------------------------------------------------------ placements
VARIANTS = {  # name: TransformerBlock switches
    "pre-LN": {},
    "post-LN": {"norm": "post"},
    "post-LN + ReLU": {"norm": "post", "stream_activation": "relu"},
    "ReLU on the stream": {"stream_activation": "relu"},
    "ReLU after attention": {"attn_activation": "relu"},
    "pre-activation": {"input_activation": "relu"},
    "post-LN, ReLU in front": {"norm": "post", "input_activation": "relu"},
    "ReLU on Q/K/V": {"qkv_activation": "relu"},
}

PLACEMENTS = {
    # the 90-second budget: no plain post-LN, and 8 seeds (12 took the notebook to 96 s of CPU in CI; at 8,
    # base seeds 0 and 1810001 kept every live claim with its interval clear of the bound)
    "fast": {"seeds": 8, "depths": [2], "lrs": [1e-2], "vocab": 6, "steps": 300, "warmup": 15,
             "eval_every": 30, "batch_size": 32,
             "variants": {k: v for k, v in VARIANTS.items() if k != "post-LN"}},
    # 2 blocks train longer: at 400 steps the standard 2-block model still gained 1 to 2 points of held-out
    # accuracy in the last fifth of training on 5 of 12 seeds (base seed 0), so it was not read at its plateau.
    "full": {"seeds": 16, "depths": [2, 6], "lrs": [3e-3, 1e-2, 3e-2], "vocab": 6, "steps": {"2": 600, "6": 400},
             "warmup": 20,
             "eval_every": 40, "batch_size": 32, "variants": VARIANTS},
}


def steps_at(s, depth):
    """Training steps at ``depth`` blocks: ``s["steps"]`` is one number, or one per depth (``{"2": 600, ...}``)."""
    steps = s["steps"]
    return steps if isinstance(steps, int) else steps[str(depth)]


def run_placements(ctx, s):
    """Every variant at every depth and rate on the same seeds; each variant's rate chosen on validation."""
    _, train, val, test = lookup_data(s["vocab"], ctx.base_seed, 1)
    curve = (test[0][:250], test[1][:250])  # the held-out sequences the learning curves are measured on
    seeds = ctx.seeds(s["seeds"])
    keys = [(L, lr, name) for L in s["depths"] for lr in s["lrs"] for name in s["variants"]]
    ctx.expect(len(seeds) * sum(steps_at(s, L) for L, _, _ in keys))

    def fit(L, lr, name):
        kw = s["variants"][name]
        tune = len(s["lrs"]) > 1  # only then is a rate chosen, on validation sequences

        def unit():
            vals = []

            def evaluate(m):  # the test curve is what the chapter reads; the validation one picks the rate
                if tune:
                    vals.append(accuracy(m, *val))
                return accuracy(m, *curve)
            models, h = ctx.train(lambda: TokenClassifier(2, 16, NUM_HEADS, L, vocab_size=s["vocab"], max_len=N, **kw),
                                  train, seeds=seeds, steps=steps_at(s, L), lr=lr, batch_size=s["batch_size"],
                                  warmup_steps=s["warmup"], schedule="constant", eval_every=s["eval_every"],
                                  evaluate=evaluate)
            out = {"seeds": seeds, "eval_step": h.eval_step, "eval": h.eval, "speed": h.eval.mean(1),
                   "accuracy": [accuracy(m, *test) for m in models]}
            if tune:
                out["val speed"] = np.array(vals).reshape(len(h.eval_step), len(seeds)).T.mean(1)
            if kw.get("stream_activation") == "relu":  # what the ReLUs on the stream zero, per seed and ReLU
                out["stream zeroed"] = [stream_zero_fraction(m, test[0][:256]) for m in models]
            return out
        return unit

    runs = ctx.map({key(L, lr, name): fit(L, lr, name) for L, lr, name in keys},
                   cost={key(L, lr, name): L * steps_at(s, L) for L, lr, name in keys})

    def choose():
        if len(s["lrs"]) == 1:
            return {f"{L} blocks": {name: s["lrs"][0] for name in s["variants"]} for L in s["depths"]}
        return {f"{L} blocks": {name: max(s["lrs"], key=lambda lr: (np.mean(runs[key(L, lr, name)]["val speed"]), -lr))
                                for name in s["variants"]} for L in s["depths"]}
    ctx.unit("chosen", choose)


def key(depth, lr, name):
    """The unit of variant ``name`` at ``depth`` blocks and rate ``lr``."""
    return f"{depth} blocks, lr={lr:g}, {name}"


def placement_run(stored, depth, name, lr=None):
    """The record of variant ``name`` at ``depth`` blocks, at rate ``lr`` (default: its chosen rate)."""
    lr = stored["units"]["chosen"][f"{depth} blocks"][name] if lr is None else lr
    return stored["units"][key(depth, lr, name)]


#: Speed is the mean held-out accuracy over the evaluations in the first WINDOW training steps: the same
#: window at 2 blocks (trained 600 steps) and at 6 (trained 400), so that gaps can be compared across depths.
#: (The live run trains 300 steps, all inside the window.)
WINDOW = 400


def window_speed(run, window=WINDOW):
    """Per seed: the mean held-out accuracy over the evaluations at steps <= ``window`` of a placement record."""
    step, curves = np.asarray(run["eval_step"]), np.asarray(run["eval"], dtype=float)
    return curves[:, step <= window].mean(1)


def placement_rows(stored, depth, value, lr=None):
    """Per-seed rows ``{"config": variant, "seed", value}`` at ``depth``, each variant at its chosen rate
    (or all at ``lr``). ``value`` "speed" is :func:`window_speed`; any other is read from the record."""
    out = []
    for name in stored["settings"]["variants"]:
        u = placement_run(stored, depth, name, lr)
        vals = window_speed(u) if value == "speed" else u[value]
        out += [{"config": name, "seed": seed, value: float(v)} for seed, v in zip(u["seeds"], vals)]
    return out


def failures(stored, depth, name, lr):
    """How many seeds of ``name`` at ``depth`` and ``lr`` end below :data:`FAILED` held-out accuracy."""
    return int((np.array(placement_run(stored, depth, name, lr)["accuracy"]) < FAILED).sum())


#: The rates at which every comparison is also made seed by seed at the *same* rate (the standard block
#: learns the table on every seed at both, asserted): two blocks that share a seed then start from the same
#: weights and see the same batches, so a difference of a point stands out of the noise.
SHARED_RATES = [3e-3, 1e-2]
SHARED = "speed at shared rates"  # the name of that measure: speed averaged over SHARED_RATES, per seed
SHARED_FINAL = "final at shared rates"  # final held-out accuracy averaged over SHARED_RATES, per seed

P1, P2 = "post-LN + ReLU", "post-LN, ReLU in front"  # the learner's two proposals, as written
BRANCH_SLOWER = ("pre-activation", P2, "ReLU on Q/K/V")  # a ReLU on what a sub-layer reads

#: The chapter's claims on the full-scale placements, each against pre-LN, as (depth, variant, measure,
#: claim): measure "speed" or "accuracy" at each block's own best rate (the headline), or SHARED (the
#: low-noise secondary measure); claim "same" (equivalent within MARGIN) or "lower" (pre-LN ahead: paired
#: interval above 0, on >= 75 % of the seeds). A second full-scale run (base seed 1820001) failed seven of
#: the first version's claims, now dropped: at 6 blocks, the ReLU on Q/K/V and on the stream slower at their
#: own rates (10/16 and 11/16 seeds), proposal 1 less accurate (interval reaching 0, also against post-LN),
#: post-LN's gap growing with depth, proposal 1 failing at 2 blocks and 3e-2 (1/16 seeds) and within the
#: margin at 2 blocks at the shared rates (-1.6 [-2.2, -1.0]). The ReLU on Q/K/V and on the stream are
#: claimed at the shared rates, where both runs decide them on >= 15/16 seeds. Final accuracy at 2 blocks is read
#: at the shared rates too (until 2026-12-07 at each block's own rate): at base seed 3200000 the standard block chose
#: 3e-2 at 2 blocks and one of its seeds stalled at 0.82 there, and that seed alone broke all seven equivalences
#: (e.g. post-LN +0.011 [-0.013, +0.036]); at the shared rates it learns the table on every seed (asserted). At 2
#: blocks two more claims at
#: own rates were dropped after a re-run of base seed 0 on another CPU kind (the same seeds; float rounding differs
#: in the last digits, and both blocks had chosen 3e-2, where training amplifies it most): the ReLU on the stream
#: within MARGIN of pre-LN on speed (-0.005 [-0.016, +0.007] here, -0.011 [-0.021, -0.001] there) and the ReLU on
#: Q/K/V slower (13/16 seeds here, 11/16 there). Both stay claimed at the shared rates.
CLAIMS = (
    # own rates
    [(2, name, "speed", "same") for name in ("post-LN", "ReLU after attention")]
    + [(6, "ReLU after attention", "speed", "same")]
    + [(d, name, "speed", "lower") for d in (2, 6) for name in ("pre-activation", P2)]
    + [(6, name, "speed", "lower") for name in ("post-LN", P1)]
    + [(2, name, SHARED_FINAL, "same") for name in VARIANTS if name != "pre-LN"]
    + [(6, name, "accuracy", "same") for name in ("ReLU after attention", "ReLU on the stream", P2, "ReLU on Q/K/V")]
    # shared rates
    + [(2, name, SHARED, "same") for name in ("post-LN", "ReLU on the stream", "ReLU after attention")]
    + [(6, "ReLU after attention", SHARED, "same")]
    + [(d, name, SHARED, "lower") for d in (2, 6) for name in BRANCH_SLOWER]
    + [(6, name, SHARED, "lower") for name in (P1, "ReLU on the stream")]
)
#: The ReLU's own cost in the learner's proposals: each proposal against post-LN, the block it adds a ReLU to,
#: as (depth, proposal, measure), own rates; claim "lower" (post-LN ahead, as above). Proposal 1's at 2 blocks
#: is not claimed: at base seed 2000001 post-LN was ahead by +0.010 [+0.002, +0.018] on only 11 of 16 seeds.
RELU_COST = [(2, P2, "speed")] + [(6, name, "speed") for name in (P1, P2)]
#: How a gap changes with depth, (variant, measure, claim): "grows" (the gap to pre-LN is larger at 6 blocks
#: than at 2: paired interval of gap(2) - gap(6) above 0, on >= 75 % of the seeds) or "same" (gap(6) - gap(2)
#: within MARGIN). Speed over the common window, so both depths are read over the same steps.
#: The ReLU on Q/K/V's gap staying within MARGIN is not claimed: it narrowed at 6 blocks by about a point in every
#: run (+0.008 [-0.001, +0.016] at base seed 0, +0.009 [+0.003, +0.015] at 3200000) and at 3300000 its interval
#: reached past the margin, +0.014 [+0.007, +0.020].
DEPTH = [(P1, "speed", "grows"), ("ReLU on the stream", SHARED, "grows"), ("pre-activation", SHARED, "same")]
#: Where a variant breaks: (variant, depth, rate) at which pre-LN ends ahead in final accuracy (paired
#: interval above 0) and at least a quarter of the variant's seeds fail (final accuracy below FAILED).
#: 1e-2 is the standard block's own rate at 6 blocks.
BREAKS = [(P1, 6, 1e-2), ("post-LN", 6, 3e-2)]
#: (depth, rate) at which the standard block learns the table on every seed (held-out accuracy >= FAILED)
STANDARD_LEARNS = [(d, lr) for d in (2, 6) for lr in SHARED_RATES]
#: The live run's claims (2 blocks, one rate): final accuracy within MARGIN of pre-LN, and slower.
LIVE_MATCH = ["ReLU on the stream", "ReLU after attention"]
LIVE_SLOWER = ["pre-activation", "post-LN, ReLU in front", "ReLU on Q/K/V"]


def shared_rows(stored, depth, measure=SHARED):
    """Per-seed rows ``{"config", "seed", measure}``: each block's speed (:func:`window_speed`, ``SHARED``) or
    final held-out accuracy (``SHARED_FINAL``) averaged over :data:`SHARED_RATES`."""
    out = []
    for name in stored["settings"]["variants"]:
        runs = [placement_run(stored, depth, name, lr) for lr in SHARED_RATES]
        per_rate = [window_speed(r) if measure == SHARED else np.asarray(r["accuracy"]) for r in runs]
        out += [{"config": name, "seed": seed, measure: float(v)}
                for seed, v in zip(runs[0]["seeds"], np.mean(per_rate, axis=0))]
    return out


def rows_for(stored, depth, measure):
    """Rows of ``measure`` (``"speed"``/``"accuracy"`` at each block's own rate, or :data:`SHARED` /
    :data:`SHARED_FINAL`)."""
    if measure in (SHARED, SHARED_FINAL):
        return shared_rows(stored, depth, measure)
    return placement_rows(stored, depth, measure)


def speed_gaps(stored, measure="speed", reference="pre-LN"):
    """``{depth: {variant: {"diff", "lo", "hi", ...}}}``: the paired 95 % interval of variant - ``reference``
    on ``measure`` (see :func:`rows_for`)."""
    out = {}
    for depth in stored["settings"]["depths"]:
        rows = rows_for(stored, depth, measure)
        out[depth] = {name: equivalent(rows, measure, name, reference, margin=MARGIN).numbers
                      for name in stored["settings"]["variants"] if name != reference}
    return out


def depth_rows(stored, name, measure):
    """Per-seed rows ``{"config": "2 blocks" | "6 blocks", "seed", "gap"}``: ``name`` minus pre-LN on
    ``measure`` at each depth (seeds are paired across depths by their number)."""
    out = []
    for depth in stored["settings"]["depths"]:
        vals = {}
        for r in rows_for(stored, depth, measure):
            vals.setdefault(r["config"], {})[r["seed"]] = r[measure]
        out += [{"config": f"{depth} blocks", "seed": s, "gap": vals[name][s] - vals["pre-LN"][s]}
                for s in vals[name]]
    return out


def depth_verdict(stored, name, measure, claim):
    """:data:`DEPTH`'s claim on ``name``: its gap to pre-LN grows from 2 to 6 blocks, or stays within MARGIN."""
    lo, hi = (f"{d} blocks" for d in (min(stored["settings"]["depths"]), max(stored["settings"]["depths"])))
    rows = depth_rows(stored, name, measure)
    v = (better(rows, "gap", lo, hi) if claim == "grows" else equivalent(rows, "gap", hi, lo, margin=MARGIN))
    v.claim = f"{name} - pre-LN on {measure}, {lo} vs {hi}: {v.claim}"
    return v


def no_better(stored, depth, measure):
    """No variant is ahead of pre-LN by MARGIN or more on ``measure`` at ``depth``: the upper end of every
    paired 95 % interval of variant - pre-LN lies below MARGIN (a one-sided equivalence)."""
    rows = rows_for(stored, depth, measure)
    his = {name: equivalent(rows, measure, name, "pre-LN", margin=MARGIN).numbers["hi"]
           for name in stored["settings"]["variants"] if name != "pre-LN"}
    top = max(his, key=his.get)
    return Verdict(f"{depth} blocks: no variant ahead of pre-LN by {MARGIN:g} on {measure}: highest upper end "
                   f"{his[top]:+.3f} ({top})", his[top] < MARGIN, {"hi": his})


def _claims(stored):
    """:data:`CLAIMS`, :data:`RELU_COST`, :data:`DEPTH`, :data:`BREAKS` and :data:`STANDARD_LEARNS` as
    (depth, variant, measure, claim, Verdict); depth None for a claim across depths."""
    out = []
    for depth, name, measure, claim in CLAIMS:
        rows = rows_for(stored, depth, measure)
        v = (equivalent(rows, measure, name, "pre-LN", margin=MARGIN) if claim == "same"
             else better(rows, measure, "pre-LN", name))
        v.claim = f"{depth} blocks: {v.claim}"
        out.append((depth, name, measure, claim, v))
    for depth, name, measure in RELU_COST:
        v = better(rows_for(stored, depth, measure), measure, "post-LN", name)
        v.claim = f"{depth} blocks, the ReLU's own cost: {v.claim}"
        out.append((depth, name, measure, "below post-LN", v))
    for name, measure, claim in DEPTH:
        out.append((None, name, measure, f"gap {claim} with depth", depth_verdict(stored, name, measure, claim)))
    for depth in stored["settings"]["depths"]:
        out.append((depth, "every variant", "speed", "none ahead", no_better(stored, depth, "speed")))
    for name, depth, lr in BREAKS:
        rows = placement_rows(stored, depth, "accuracy", lr=lr)
        fails = failures(stored, depth, name, lr)
        n = len(placement_run(stored, depth, name, lr)["seeds"])
        ahead = better(rows, "accuracy", "pre-LN", name)
        v = Verdict(f"{name} breaks at {depth} blocks, lr={lr:g}: fails on {fails}/{n} seeds (needs >= a quarter) "
                    f"and {ahead.claim}", ahead.holds and 4 * fails >= n, {**ahead.numbers, "fails": fails})
        out.append((depth, name, f"lr={lr:g}", "breaks", v))
    for depth, lr in STANDARD_LEARNS:
        v = reached(placement_run(stored, depth, "pre-LN", lr)["accuracy"], FAILED,
                    name=f"pre-LN at {depth} blocks, lr={lr:g}, final held-out accuracy")
        out.append((depth, "pre-LN", f"lr={lr:g}", "learns", v))
    return out


def check_placements(stored):
    """The chapter's conclusions on the placements: the standard block at its plateau, then :data:`CLAIMS`,
    :data:`RELU_COST`, :data:`DEPTH`, no variant ahead by the margin, :data:`BREAKS` and
    :data:`STANDARD_LEARNS`."""
    verdicts = []
    for depth in stored["settings"]["depths"]:
        u = placement_run(stored, depth, "pre-LN")
        verdicts.append(converged(1 - np.array(u["eval"]), rtol=0, atol=0.01, min_share=0.75,
                                  name=f"pre-LN at {depth} blocks, held-out error"))
    verdicts += [v for *_, v in _claims(stored)]
    return verdicts


def verdict_table(stored):
    """One row per variant and depth: its gaps to pre-LN (points, paired 95 % interval) on the three measures,
    own rates first, with the claim the chapter makes on each, and where it breaks."""
    verdicts = _claims(stored)
    claims = {(d, name, m): c for d, name, m, c, _ in verdicts if c in ("same", "lower")}
    breaks = {}
    for d, name, m, c, _ in verdicts:
        if c == "breaks":
            breaks.setdefault((d, name), []).append(m)
    label = {"same": "(same)", "lower": "(lower)"}
    rows = []
    for depth in stored["settings"]["depths"]:
        for name in stored["settings"]["variants"]:
            if name == "pre-LN":
                continue
            row = {"blocks": depth, "block": name}
            for measure, head in (("speed", "speed, own rate"), ("accuracy", "final, own rate"),
                                  (SHARED, "speed, shared rates"), (SHARED_FINAL, "final, shared rates")):
                g = equivalent(rows_for(stored, depth, measure), measure, name, "pre-LN", margin=MARGIN).numbers
                row[head] = (f"{100 * g['diff']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}] "
                             + label.get(claims.get((depth, name, measure)), ""))
            row["breaks at"] = ", ".join(breaks.get((depth, name), [])) or "-"
            rows.append(row)
    return rows


def rate_table(stored):
    """Per depth, variant and rate: mean speed (:func:`window_speed`) / mean final accuracy (seeds that fail)."""
    rows = []
    for depth in stored["settings"]["depths"]:
        chosen = stored["units"]["chosen"][f"{depth} blocks"]
        for name in stored["settings"]["variants"]:
            row = {"blocks": depth, "variant": name}
            for lr in stored["settings"]["lrs"]:
                u = placement_run(stored, depth, name, lr)
                star = "*" if chosen[name] == lr else " "
                row[f"lr {lr:g}"] = (f"{np.mean(window_speed(u)):.3f} / {np.mean(u['accuracy']):.3f} "
                                     f"({failures(stored, depth, name, lr)}){star}")
            rows.append(row)
    return rows


def plot_placements(stored, colors=None):
    """The depth figure: learning curves at the deepest stack, speed gaps (each block at its own rate) against
    depth, final accuracy against the learning rate at the deepest stack. Returns the figure."""
    import matplotlib.pyplot as plt
    from ..plotting import PALETTE, seed_band

    names = list(stored["settings"]["variants"])
    colors = colors or dict(zip(names, PALETTE))
    depths, lrs = stored["settings"]["depths"], stored["settings"]["lrs"]
    deep = max(depths)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in names:
        u = placement_run(stored, deep, name)
        seed_band(axes[0], u["eval_step"], u["eval"], label=name, color=colors[name])
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel(f"held-out accuracy, {deep} blocks")
    gaps = speed_gaps(stored, "speed")
    width = 0.8 / (len(names) - 1)
    for i, name in enumerate(n for n in names if n != "pre-LN"):
        x = np.arange(len(depths)) + (i - (len(names) - 2) / 2) * width
        g = [gaps[d][name] for d in depths]
        axes[1].errorbar(x, [100 * v["diff"] for v in g],
                         yerr=[[100 * (v["diff"] - v["lo"]) for v in g], [100 * (v["hi"] - v["diff"]) for v in g]],
                         fmt="o", color=colors[name], label=name, capsize=2, ms=4)
    axes[1].axhspan(-100 * MARGIN, 100 * MARGIN, color="k", alpha=0.08, lw=0)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xticks(range(len(depths)), [f"{d} blocks" for d in depths])
    axes[1].set_ylabel(f"speed minus pre-LN's (points),\nfirst {WINDOW} steps, own rates")
    for name in names:
        acc = np.array([placement_run(stored, deep, name, lr)["accuracy"] for lr in lrs])
        axes[2].plot(lrs, acc.mean(1), "o-", color=colors[name], label=name, ms=4)
        axes[2].plot(lrs, acc.min(1), "x", color=colors[name], ms=5)
    axes[2].set_xscale("log")
    axes[2].set_xticks(lrs, [f"{lr:g}" for lr in lrs])
    axes[2].minorticks_off()
    axes[2].set_xlabel("learning rate")
    axes[2].set_ylabel(f"final held-out accuracy, {deep} blocks")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


EXPERIMENTS = [
    Experiment("01_activation", "mlp",
               "the bigram lookup with and without the MLP, each arm at its own rate, read at its plateau",
               MLP, run_mlp, check_mlp),
    Experiment("01_activation", "placements",
               "eight placements of a ReLU or a norm at 2 and 6 blocks and three learning rates",
               PLACEMENTS, run_placements, check_placements),
]
