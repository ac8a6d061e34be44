"""Shared by the benchmarks: compile ahead of time, one warm-up epoch, then timed epochs."""

from __future__ import annotations

import time
from typing import Any

import jax


def time_epochs(jitted: Any, state: Any, *args: Any, epochs: int) -> tuple[float, float, Any]:
    """(compile s, mean s per epoch, last metrics) of `jitted(state, *args) -> (state, metrics)`.

    The state is threaded through (it may be donated); the warm-up epoch is not timed.
    """
    t = time.perf_counter()
    compiled = jitted.lower(state, *args).compile()
    compile_s = time.perf_counter() - t
    state, metrics = compiled(state, *args)
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(epochs):
        state, metrics = compiled(state, *args)
    jax.block_until_ready(metrics)
    return compile_s, (time.perf_counter() - t) / epochs, metrics
