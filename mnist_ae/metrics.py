"""Which way each metric is better: the one rule read by compare's stars, the best checkpoint and the
config's check of `best_checkpoint_metric`.

A metric's direction is decided by its last path part (`test/recon_sse01` -> `recon_sse01`), the
first matching rule winning; `baseline/...` numbers describe a reference (PCA at the same code size),
not the run, and a name no rule claims (explained variance, norms, rates, usage) is descriptive: it
gets no star and cannot rank checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

LOWER, HIGHER = -1, 1

# (substring of the last path part, direction); descriptive rules first, as they contain score words
_RULES: tuple[tuple[str, int | None], ...] = (
    ("per_class", None), ("explained_variance", None), ("param_norm", None), ("grad_norm", None),
    ("learning_rate", None), ("steps_per_s", None),
    ("dead_dims", LOWER), ("mse", LOWER), ("sse", LOWER), ("loss", LOWER), ("nll", LOWER),
    ("accuracy", HIGHER), ("trustworthiness", HIGHER), ("silhouette", HIGHER), ("psnr", HIGHER),
    ("auroc", HIGHER), ("elbo", HIGHER), ("precision_at", HIGHER), ("_map", HIGHER),
)
_DESCRIPTIVE_PREFIXES = ("baseline/", "usage/")


def direction(name: str) -> int | None:
    """LOWER or HIGHER where the metric is a score, None where it only describes."""
    if name.startswith(_DESCRIPTIVE_PREFIXES):
        return None
    last = name.rsplit("/", 1)[-1]
    return next((d for word, d in _RULES if word in last), None)


def higher_is_better(name: str) -> bool:
    return direction(name) == HIGHER


def best_indices(values: Sequence[float | None], name: str) -> list[int]:
    """Every index holding the best finite value (ties: all of them); none for a descriptive metric or
    when fewer than two values can be compared."""
    sign = direction(name)
    finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if sign is None or len(finite) < 2:
        return []
    best = max(sign * v for _, v in finite)
    return [i for i, v in finite if sign * v == best]
