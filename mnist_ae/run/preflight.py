"""Checks before any compute, where the answer is knowable: the run's memory against what the device
has, and a checkpoint folder it can write. A run that cannot fit or save is refused in one line at its
start, instead of hanging in an allocation or failing after its first epoch."""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import ml_collections
import psutil

from mnist_ae import build, data
from mnist_ae.core.models import code_dim
from mnist_ae.errors import PathError, ResourceError
from mnist_ae.workdir import RunDir

FLOAT_BYTES = 4
HEADROOM = 0.9  # of the free memory: the runtime, the compiled programs and the libraries need the rest
# The test codes' copies a run holds at once: on the device, on the host, and the end-of-run stages' working
# copies (eval chunks, the report's maps, the pictures). Measured, not derived: with 100,000-unit codes
# (3.7 GiB) and no analysis, a run was OOM-killed at 19.6 GB on a 23 GB host, so at least 5 copies; 6 here.
CODES_COPIES = 6


def check_checkpoints_writable(workdir: Path) -> None:
    """RUN/checkpoints is a folder this process can write (a file in its place, or a read-only folder,
    made orbax wait 300 s for its own timeout before failing)."""
    folder = RunDir(workdir).checkpoints
    probe = folder / f".write_probe.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PathError(f"cannot write checkpoints in {folder}: {e.strerror}; make it a writable folder or pass "
                        "another --workdir") from None


def estimated_bytes(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The run's largest allocations, in bytes, from shapes alone (`jax.eval_shape`: nothing allocated):
    the state (parameters and Adam's two moments) with its gradients, the test codes with their copies
    (`CODES_COPIES`), and the analysis' working copies of them."""
    swept = build.members(config) if config.task == "sweep" else []
    # A sweep's stacked state is its members' states padded to the widest code (pad-and-mask): that many
    # single states, shaped in 0.02 s where tracing the vmapped initialisation took 0.6 s.
    single = build.member_config(config, max(swept, key=lambda m: m.latent_dim)) if swept else config
    state = jax.eval_shape(lambda: build.initial_state(single, single.seed))
    members, width = max(len(swept), 1), code_dim(single.model, single.latent_dim)
    state_bytes = members * sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state))
    params = members * sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state.params))
    test_n = min(config.test_limit or data.SPECS[config.dataset].test_size, data.SPECS[config.dataset].test_size)
    codes = members * test_n * width * FLOAT_BYTES if config.task != "classification" else 0
    analysed = config.task == "reconstruction" and config.analyze_at_end
    return {"state": state_bytes + params, "codes": CODES_COPIES * codes, "analysis": 3 * codes if analysed else 0}


def free_bytes() -> tuple[float, str]:
    """Memory the run can still take on its device (GPU/TPU: the allocator's limit less what it holds;
    CPU: the host's available memory) and the device's name."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), device.device_kind
    return float(psutil.virtual_memory().available), "this host"


def check_memory(config: ml_collections.ConfigDict) -> None:
    """Refuse a run whose estimated memory exceeds what its device has free, naming the sizes."""
    need = estimated_bytes(config)
    free, where = free_bytes()
    if sum(need.values()) <= HEADROOM * free:
        return
    parts = ", ".join(f"{name} {gb(v)}" for name, v in need.items() if v)
    fixes = ["smaller --config.hidden / latent_dim", "a lower --config.test_limit"]
    fixes += ["--config.analyze_at_end=False"] if need["analysis"] else []
    raise ResourceError(f"this run needs about {gb(sum(need.values()))} ({parts}) but {where} has {gb(free)} free: "
                        f"use {', '.join(fixes[:-1])} or {fixes[-1]}")


def gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check(config: ml_collections.ConfigDict, workdir: Path) -> None:
    """Every check, cheapest first."""
    check_checkpoints_writable(workdir)
    check_memory(config)

