"""attnlib: the small library behind *Attention, Questioned*.

One idea per module:

- :mod:`attnlib.sdpa`       scaled dot-product attention with pluggable normalisers; its
                            function ``attention`` is also ``attnlib.attention``
- :mod:`attnlib.mha`        MultiHeadAttention with explicit W_Q, W_K, W_V, W_O
- :mod:`attnlib.block`      TransformerBlock: pre-LN / post-LN / no norm and other switches
- :mod:`attnlib.pooling`    cls / mean / max / attention / last / rnn pooling
- :mod:`attnlib.models`     small sequence and token classifiers
- :mod:`attnlib.tasks`      deterministic synthetic tasks and the digits data set
- :mod:`attnlib.training`   one training loop (all seeds at once) and a grid runner
- :mod:`attnlib.stats`      means, confidence intervals and effect sizes over seeds
- :mod:`attnlib.evidence`   how a claim is made: better, equivalent within a margin, converged
- :mod:`attnlib.plotting`   the house style
- :mod:`attnlib.widgets`    explorers that work on the static site
- :mod:`attnlib.checks`     exercise checkers
- :mod:`attnlib.config`     ATTNLIB_SEED, ATTNLIB_SCALE and ATTNLIB_DEVICE

And one module of measurements per chapter:

- :mod:`attnlib.probes`        (1) linearity tests, rank collapse, what a ReLU on the stream zeroes
- :mod:`attnlib.counting`      (2) shapes, parameter counts and FLOPs of one MHA layer
- :mod:`attnlib.circuits`      (3) OV circuits, the W_V M / M^-1 W_O symmetry, fusing W_O into W_1
- :mod:`attnlib.alternatives`  (4) timing, FLOP counts, linear attention as a recurrence
- :mod:`attnlib.readout`       (5) pooling costs, [CLS] and pooling weights, a logistic baseline
"""
from .sdpa import NORMALISERS, attention
from .block import MLP, TransformerBlock
from .config import base_seed, by_scale, scale, seeds
from .mha import MultiHeadAttention, merge_heads, split_heads
from .models import Encoder, SequenceClassifier, TokenClassifier, count_parameters
from .pooling import POOLINGS

__version__ = "0.1.0"

__all__ = [
    "NORMALISERS", "POOLINGS", "attention", "MultiHeadAttention", "split_heads", "merge_heads",
    "MLP", "TransformerBlock", "Encoder", "SequenceClassifier", "TokenClassifier",
    "count_parameters", "base_seed", "by_scale", "scale", "seeds",
]
