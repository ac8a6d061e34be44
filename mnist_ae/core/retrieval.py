"""Retrieval by label, as a pure jnp function: the distances of a block of queries to the database.

Euclidean on codes centred on the database's mean (as `code_quality`: less float32 cancellation in
|a|^2 + |b|^2 - 2ab). Ranking them is the host's (`analysis.retrieval`): numpy's sort is several times
XLA:CPU's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mnist_ae.core.code_quality import _sq_dists


def distances(db_nl: jax.Array, query_bl: jax.Array) -> jax.Array:
    """Squared distances [b, N] of a block of queries to the database."""
    mean_l = jnp.mean(db_nl, 0)
    return _sq_dists(query_bl - mean_l, db_nl - mean_l)
