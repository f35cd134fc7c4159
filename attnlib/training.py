"""One training loop, and a runner over configurations x seeds.

Tiny models on one CPU core spend most of their time in per-operation overhead,
so :func:`train` trains one copy of the model *per seed at once*: the seeds'
parameters are stacked (``torch.func.stack_module_state``) and the loss is
computed for all of them with ``torch.func.vmap``. Adam's update is
element-wise and the per-seed losses are summed, so every seed follows exactly
the path it would follow alone; only the wall time is shared.

Each seed gets its own initialisation (``torch.manual_seed(seed)`` before the
model is built) and its own order of mini-batches.
"""
import copy
import math
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from tqdm.auto import tqdm

from .sdpa import explicit_softmax
from .config import device as default_device
from .tasks import IGNORE


class History(NamedTuple):
    step: np.ndarray  # (T,) the steps at which the loss was logged
    loss: np.ndarray  # (num_seeds, T) training loss per seed, averaged since the last log
    lr: np.ndarray  # (T,) learning rate at those steps
    eval_step: np.ndarray | None = None  # (E,) the steps at which ``evaluate`` ran (None: never)
    eval: np.ndarray | None = None  # (num_seeds, E) what ``evaluate`` returned, per seed


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for ``(batch, C)`` or ``(batch, n, C)`` logits; labels ``IGNORE`` skipped."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


def lr_at(step: int, steps: int, lr: float, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine decay to 10 %."""
    if warmup_steps and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(build: Callable[[], torch.nn.Module], data, *, seeds, steps, lr=1e-3, batch_size=64,
          weight_decay=0.0, warmup_steps=0, schedule="cosine", clip_norm=None, log_every=None,
          evaluate=None, eval_every=None, device=None, progress=True, desc=None, max_steps=None,
          on_step=None):
    """Train one model per seed, all seeds at once.

    Args:
        build: builds a fresh model; called once per seed after ``torch.manual_seed(seed)``.
        data: ``(X, y)`` shared by all seeds, or a function ``seed -> (X, y)``
            giving each seed its own training set. ``X`` is ``(N, ...)``, ``y``
            is ``(N,)`` or ``(N, n)`` with ``IGNORE`` for unlabelled positions.
        seeds: list of integer seeds.
        steps, lr, batch_size, weight_decay: the usual (AdamW).
        warmup_steps, schedule: see :func:`lr_at` (``"cosine"`` or ``"constant"``).
        clip_norm: clip each seed's gradient norm to this value (None: no clipping).
        log_every: log the loss every this many steps (default: about 50 points).
        evaluate: optional ``model -> float`` (e.g. held-out accuracy), run on every seed's
            model every ``eval_every`` steps and after the last one: learning curves of what
            the chapter measures, not only of the training loss. Its cost adds to training.
        eval_every: default about 10 evaluations over the run.
        device: where to train (default :func:`attnlib.config.device`, from ``ATTNLIB_DEVICE``).
        progress: show a ``tqdm.auto`` progress bar.
        max_steps: stop after this many steps while the schedule still spans ``steps``: the
            first steps of a long run, exactly (how :mod:`attnlib.results` checks that a
            stored run is still what the code produces). Default: run all ``steps``.
        on_step: optional function called after every step with the number of seeds, e.g. to
            advance an outer progress bar counted in seed-steps.

    Returns:
        ``(models, history)``: the trained models, one per seed, and a :class:`History`.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    log_every = log_every or max(1, steps // 50)
    eval_every = eval_every or max(1, steps // 10)
    device = torch.device(device or default_device())

    models = []
    for s in seeds:
        torch.manual_seed(s)
        models.append(build().to(device))
    sets = [data(s) for s in seeds] if callable(data) else [data] * len(seeds)
    for X, y in sets:
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same number of examples, got {len(X)} and {len(y)}")
    sets = [(X.to(device), y.to(device)) for X, y in sets]
    gens = [torch.Generator().manual_seed(s + 1_000_003) for s in seeds]

    params, buffers = stack_module_state(models)  # each tensor: (num_seeds, ...)
    base = copy.deepcopy(models[0]).to("meta")

    def one_loss(p, b, xb, yb):
        return loss_fn(functional_call(base, (p, b), (xb,)), yb)

    batched_loss = vmap(one_loss)
    # foreach: one fused update over all tensors instead of a Python loop over them. On the CPU
    # torch does not choose it by default; it gives the same numbers, much faster for tiny models.
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay, foreach=True)

    def unstack():
        """Load each seed's current parameters into its own model (in eval mode)."""
        for i, model in enumerate(models):
            model.load_state_dict({k: v[i].detach().clone() for k, v in {**params, **buffers}.items()})
            model.eval()
        return models

    eval_steps, eval_values = [], []

    def run_eval(step):
        eval_steps.append(step)
        eval_values.append([float(evaluate(m)) for m in unstack()])

    hook = (run_eval, eval_every) if evaluate is not None else None
    with explicit_softmax():  # the fused kernel has no vmap batching rule: it would fall back slowly
        history = _loop(params, buffers, batched_loss, opt, sets, gens, seeds, steps, lr, batch_size,
                        warmup_steps, schedule, clip_norm, log_every, hook, progress, desc,
                        min(steps, max_steps or steps), on_step)
    trained = unstack()
    if evaluate is not None:
        history = history._replace(eval_step=np.array(eval_steps), eval=np.array(eval_values).T)
    return trained, history


def _loop(params, buffers, batched_loss, opt, sets, gens, seeds, steps, lr, batch_size,
          warmup_steps, schedule, clip_norm, log_every, hook, progress, desc, stop, on_step):
    """The optimisation loop of :func:`train`, for steps ``0 .. stop-1`` of a run of ``steps``;
    returns its History. ``hook``: ``(fn, every)`` or None."""
    logged_steps, logged_loss, logged_lr = [], [], []
    running = torch.zeros(len(seeds), device=next(iter(params.values())).device)
    bar = tqdm(range(stop), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        rate = lr_at(step, steps, lr, warmup_steps, schedule)
        for group in opt.param_groups:
            group["lr"] = rate
        idx = [torch.randint(0, len(X), (batch_size,), generator=g).to(X.device) for g, (X, _) in zip(gens, sets)]
        xb = torch.stack([X[i] for i, (X, _) in zip(idx, sets)])  # (num_seeds, batch, ...)
        yb = torch.stack([y[i] for i, (_, y) in zip(idx, sets)])
        losses = batched_loss(params, buffers, xb, yb)  # (num_seeds,)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        if clip_norm is not None:
            _clip_per_seed(params.values(), clip_norm)
        opt.step()
        running += losses.detach()
        if (step + 1) % log_every == 0 or step + 1 == stop:
            n = (step % log_every) + 1
            logged_steps.append(step + 1)
            logged_loss.append((running / n).cpu().numpy().copy())
            logged_lr.append(rate)
            running.zero_()
        if hook is not None and ((step + 1) % hook[1] == 0 or step + 1 == stop):
            hook[0](step + 1)
        if on_step is not None:
            on_step(len(seeds))
    return History(np.array(logged_steps), np.stack(logged_loss, axis=1), np.array(logged_lr))


def _clip_per_seed(tensors, max_norm):
    tensors = [t for t in tensors if t.grad is not None]
    sq = sum(t.grad.pow(2).reshape(t.shape[0], -1).sum(1) for t in tensors)  # (num_seeds,)
    factor = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for t in tensors:
        t.grad.mul_(factor.view(-1, *([1] * (t.dim() - 1))))


@torch.no_grad()
def accuracy(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of labelled positions (``y != IGNORE``) where the argmax logit is the label."""
    model.eval()
    where = next(model.parameters()).device
    correct, total = 0, 0
    for start in range(0, len(X), batch_size):
        pred = model(X[start:start + batch_size].to(where)).argmax(-1)
        yb = y[start:start + batch_size].to(where)
        keep = yb != IGNORE
        correct += (pred[keep] == yb[keep]).sum().item()
        total += keep.sum().item()
    return correct / max(total, 1)


def run_grid(configs: dict, build: Callable[..., torch.nn.Module], data, evaluate: Callable, *,
             seeds, progress=True, return_histories=False, **train_kwargs):
    """Train every configuration on every seed; return a tidy table (a list of rows).

    Args:
        configs: ``{name: kwargs}``; ``build(**kwargs)`` makes one model.
            ``kwargs`` may hold a nested ``"train"`` dict that overrides
            ``train_kwargs`` for that configuration (e.g. its own ``lr``).
        build: model factory.
        data: as in :func:`train`.
        evaluate: ``(model, seed) -> dict`` of metrics for one trained model.
        seeds: list of seeds, used for every configuration.
        return_histories: also return ``{name: History}``, for learning curves
            (:func:`attnlib.plotting.learning_curves`) and convergence checks
            (:func:`attnlib.evidence.converged`).

    Returns:
        One dict per (configuration, seed): ``{"config": name, "seed": s,
        "final_loss": ..., **metrics}``; with ``return_histories``, ``(rows, histories)``.
    """
    rows, histories = [], {}
    bar = tqdm(total=len(configs), desc="configurations", disable=not progress)
    for name, kwargs in configs.items():
        kwargs = dict(kwargs)
        tk = {**train_kwargs, **kwargs.pop("train", {})}
        models, hist = train(lambda: build(**kwargs), data, seeds=seeds, progress=False, **tk)
        histories[name] = hist
        for i, (s, m) in enumerate(zip(seeds, models)):
            rows.append({"config": name, "seed": s, "final_loss": float(hist.loss[i, -1]), **evaluate(m, s)})
        bar.update(1)
    bar.close()
    return (rows, histories) if return_histories else rows
