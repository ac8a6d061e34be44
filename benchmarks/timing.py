"""Shared by the benchmarks: the machine they ran on; compile ahead of time, warm up, time epochs."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax


def machine() -> str:
    """One line naming the machine: device, CPU model and cores, jax version, load at start."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    cpu = names[0] if names else (platform.processor() or platform.machine())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); host: {cpu}, {cores} cores; "
            f"jax {jax.__version__}; load average {os.getloadavg()[0]:.1f} at start")


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`fn`'s result and its wall seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Seconds (one epoch, or a whole job) and the samples trained in them, summed over members."""

    seconds: float
    samples: int
    members: int = 1
    compile_s: float | None = None
    gflop: float | None = None  # of the timed work (one epoch), where counted

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds


class EpochTimes(NamedTuple):
    compile_s: float
    epoch_s: float  # mean over the timed epochs
    metrics: Any  # the last epoch's
    flops: float  # XLA's count for the compiled program, which counts a `scan`'s body once, not per iteration


def time_epochs(jitted: Any, state: Any, *args: Any, epochs: int) -> EpochTimes:
    """Compile `jitted(state, *args) -> (state, metrics)` ahead of time, run one untimed warm-up epoch,
    then time `epochs` more. The state is threaded through (it may be donated)."""
    t = time.perf_counter()
    compiled = jitted.lower(state, *args).compile()
    compile_s = time.perf_counter() - t
    state, metrics = compiled(state, *args)
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(epochs):
        state, metrics = compiled(state, *args)
    jax.block_until_ready(metrics)
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return EpochTimes(compile_s, (time.perf_counter() - t) / epochs, metrics, float(analysis.get("flops", 0.0)))
