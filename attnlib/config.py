"""The two knobs every experiment reads, in one place.

``ATTNLIB_SEED``  base seed of all experiments (default 0). Change it to check
                  that a chapter's conclusions do not hang on one seed.
``ATTNLIB_SCALE`` ``fast`` (default: what CI and the website run, under 90 s a
                  notebook on one core) or ``full`` (the settings of ``make
                  results``: a notebook run this way gives the full-scale numbers
                  that are stored under ``results/``; for readers with time or a GPU).
``ATTNLIB_DEVICE`` where :func:`attnlib.training.train` trains (default ``cpu``,
                  so that results are the same everywhere; e.g. ``cuda`` to use
                  a GPU with ``ATTNLIB_SCALE=full``).

Example::

    ATTNLIB_SEED=7 ATTNLIB_SCALE=full jupyter lab
"""
import os

_SCALES = ("fast", "full")


def base_seed() -> int:
    """The base seed from ``ATTNLIB_SEED`` (default 0)."""
    raw = os.environ.get("ATTNLIB_SEED", "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"ATTNLIB_SEED must be an integer, got {raw!r}") from None


def scale() -> str:
    """``'fast'`` or ``'full'``, from ``ATTNLIB_SCALE`` (default ``'fast'``)."""
    raw = os.environ.get("ATTNLIB_SCALE", "fast").strip().lower()
    if raw not in _SCALES:
        raise ValueError(f"ATTNLIB_SCALE must be one of {_SCALES}, got {raw!r}")
    return raw


def device() -> str:
    """The torch device from ``ATTNLIB_DEVICE`` (default ``'cpu'``), checked to exist."""
    import torch

    raw = os.environ.get("ATTNLIB_DEVICE", "cpu").strip() or "cpu"
    try:
        dev = torch.device(raw)
    except RuntimeError:
        raise ValueError(f"ATTNLIB_DEVICE must name a torch device such as 'cpu' or 'cuda', got {raw!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"ATTNLIB_DEVICE={raw!r} but torch finds no CUDA device here; unset it to use the CPU")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"ATTNLIB_DEVICE={raw!r} but torch finds no MPS device here; unset it to use the CPU")
    return str(dev)


def by_scale(fast, full):
    """Return ``fast`` at the default scale and ``full`` when ATTNLIB_SCALE=full."""
    return full if scale() == "full" else fast


def seeds(n: int) -> list[int]:
    """``n`` consecutive seeds starting at the base seed."""
    if n < 1:
        raise ValueError(f"need at least one seed, got n={n}")
    return [base_seed() + i for i in range(n)]
