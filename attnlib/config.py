"""The two knobs every experiment reads, in one place.

``ATTNLIB_SEED``  base seed of all experiments (default 0). Change it to check
                  that a chapter's conclusions do not hang on one seed.
``ATTNLIB_SCALE`` ``fast`` (default: what CI and the website run, under 60 s a
                  notebook on one core) or ``full`` (bigger runs, for readers
                  with time or a GPU).

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


def by_scale(fast, full):
    """Return ``fast`` at the default scale and ``full`` when ATTNLIB_SCALE=full."""
    return full if scale() == "full" else fast


def seeds(n: int) -> list[int]:
    """``n`` consecutive seeds starting at the base seed."""
    if n < 1:
        raise ValueError(f"need at least one seed, got n={n}")
    return [base_seed() + i for i in range(n)]
