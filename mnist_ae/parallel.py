"""Data and member parallelism: one `jit` over a 2-D device mesh (axes "members" x "data").

A single run uses the "data" axis only (members = 1): parameters replicated, each batch split. A
sweep's stacked state is split along its member axis over "members" (`member_shards`): each group
of devices trains its own members on whole batches (split over that group's "data" devices), so no
collective crosses member shards during training; host reads gather the members first (`gathered`).

Sharded `jit`, not `pmap`: the pure core stays single-device code (no `axis_name`, no
`lax.pmean`). The train state and the uint8 dataset are replicated on every device of the mesh;
each gathered batch is constrained to be split along its batch axis (`[group, batch, ...]`,
axis 1) over "data". XLA's SPMD partitioner then runs every step on the local slice of the batch
and, because each loss is a mean over the *global* batch, inserts the all-reduce of the
gradients itself. The result is the same computation as on one device with the same global
batch, up to the order of floating-point reductions (tested in `tests/test_parallel.py`).

Multi-process runs (several hosts, or several processes on one host): call
`initialize_distributed` first, then everything below works on the *global* mesh.
What each process feeds: every process reads the whole dataset from its own local files and
`place` builds global arrays from them, replicated (or split by member) over every process's devices
(`jax.make_array_from_callback`: each process hands over the parts its devices hold), so
the global arrays are consistent as long as the files and the seed are the same everywhere (the
MNIST files are md5-checked on load). The data order comes from the key in the replicated train
state, so every device computes the same permutation; the batch sharding then makes each device
gather and compute only its own rows of each batch, i.e. each process works on its devices'
slice of the global batch and nothing but the gradient all-reduce crosses processes. Replicating
the ~47 MB MNIST on every device costs little and keeps the on-device shuffle exact and
independent of the device count.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mnist_ae.config import ConfigError
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.sweep import sweep_epoch

MEMBERS_AXIS, DATA_AXIS = "members", "data"


# ----------------------------------------------------------------------------- processes


def detected_cluster() -> str | None:
    """The multi-process launcher found in the environment, or None (also for a 1-task job).

    Only the environments that `jax.distributed.initialize()` can configure by itself from
    environment variables: SLURM (srun), Open MPI (mpirun) and Cloud TPU / GKE TPU slices.
    """
    env = os.environ
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(k in env for k in slurm) and int(env["SLURM_NTASKS"]) > 1:
        return "slurm"
    if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "openmpi"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h]) > 1 or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return "tpu"
    return None


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """A process other than 0 first waits, in Python, until process 0's coordinator accepts connections:
    JAX's own wait ends in a C++ abort with a stack trace, this one in a one-line ConfigError."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=min(5.0, timeout_s)):
                return
        except OSError as e:
            if time.monotonic() > deadline:
                raise ConfigError(f"the coordinator (process 0) at {address} did not answer within {timeout_s:g} s "
                                  f"({e.strerror or e}): start process 0 first, check the address, or raise "
                                  "--distributed_timeout") from None
            time.sleep(0.5)


JAX_GRACE_S = 60  # JAX's own deadline for process 0, after ours: it ends in a C++ abort and a stack trace


@contextlib.contextmanager
def _peers_join_within(timeout_s: float, message: str) -> Iterator[None]:
    """Process 0 hosts the coordinator, so it cannot wait for its peers in Python before JAX does: it waits
    in JAX (which releases the GIL), and a timer ends the process with one line (exit 2) when the peers have
    not joined by then, before JAX's later deadline would abort it (exit 134, a C++ stack trace)."""
    def give_up() -> None:
        os.write(2, f"error: {message}\n".encode())
        os._exit(2)

    timer = threading.Timer(timeout_s, give_up)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1, timeout_s: int = 300,
                           say: Callable[[str], None] = lambda line: None) -> None:
    """Join a multi-process JAX run; a no-op for a single process. Call before any other JAX use.

    With `coordinator_address` (host:port of process 0) the three arguments are passed
    explicitly (all three required); otherwise `jax.distributed.initialize()` auto-detects its
    arguments, but only when `detected_cluster()` finds a multi-process launcher.
    """
    if jax.distributed.is_initialized():
        return
    if coordinator_address:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ConfigError(f"--coordinator_address needs --num_processes >= 1 and 0 <= --process_id < "
                              f"num_processes (got num_processes={num_processes}, process_id={process_id})")
        if num_processes > 1:
            say(f"process {process_id} of {num_processes}: waiting up to {timeout_s} s for "
                + (f"the other {num_processes - 1} process(es) to join at {coordinator_address}" if process_id == 0
                   else f"the coordinator (process 0) at {coordinator_address}"))
            if process_id > 0:
                wait_for_coordinator(coordinator_address, timeout_s)
                jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id,
                                           initialization_timeout=timeout_s)
            else:
                with _peers_join_within(timeout_s, f"the other {num_processes - 1} process(es) did not join at "
                                        f"{coordinator_address} within {timeout_s:g} s: start them (--process_id=1.."
                                        f"{num_processes - 1}, the same --coordinator_address) or raise "
                                        "--distributed_timeout"):
                    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=0,
                                               initialization_timeout=timeout_s + JAX_GRACE_S)
        return
    if num_processes > 1 or process_id >= 0:
        raise ConfigError("--num_processes / --process_id need --coordinator_address=HOST:PORT (of process 0)")
    if detected_cluster() is not None:
        jax.distributed.initialize()


def is_main_process() -> bool:
    """Process 0 writes logs and plots; every process takes part in checkpoints (orbax syncs)."""
    return jax.process_index() == 0


# ----------------------------------------------------------------------------- mesh and shardings


def member_shards(members: int, devices: int, requested: int = 0) -> int:
    """How many groups of devices a sweep's members are split over: `requested`, or (0) the most that
    divide both the member count and the device count; the rest of the devices split each batch."""
    fits = [k for k in range(1, devices + 1) if members % k == 0 and devices % k == 0]
    if requested == 0:
        return fits[-1]
    if requested not in fits:
        raise ConfigError(f"member_devices={requested} does not divide both the {members} members and the {devices} "
                          f"devices: use one of {', '.join(map(str, fits))} (or 0 for {fits[-1]})")
    return requested


def make_mesh(num_devices: int = 0, members: int = 1, member_devices: int = 0) -> Mesh:
    """A 2-D mesh ("members" x "data") over `num_devices` global devices (0 = all of them) for a program
    of `members` members (1: a single run, all devices on "data"), split over `member_shards` groups.

    Multi-process: the same number of devices is taken from every process (the first
    num_devices / process_count local devices of each), so every process takes part; devices are
    ordered by process, so a member group stays within one process when it fits there.
    """
    available, processes = jax.device_count(), jax.process_count()
    n = num_devices or available
    if not 1 <= n <= available:
        raise ConfigError(f"num_devices={num_devices} but {available} {jax.default_backend()} device(s) are "
                          f"available: use --config.num_devices=0 (all) or at most {available}")
    if processes == 1:
        devices = jax.devices()[:n]
    else:
        if n % processes:
            raise ConfigError(f"num_devices={n} is not divisible by the {processes} processes: "
                              f"use a multiple of {processes}")
        per_process = n // processes
        devices = [d for p in range(processes)
                   for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
                   [:per_process]]
    groups = member_shards(members, n, member_devices)
    return Mesh(np.array(devices).reshape(groups, n // groups), (MEMBERS_AXIS, DATA_AXIS))


def mesh_shape(mesh: Mesh) -> dict[str, int]:
    """{"members": m, "data": d}: the layout, for the start record and the first line."""
    return {name: int(size) for name, size in mesh.shape.items()}


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    """One-line ConfigError (a ValueError) unless the global batch splits evenly over the "data" axis."""
    n = mesh.shape[DATA_AXIS]
    if batch_size % n:
        raise ConfigError(f"batch_size={batch_size} is not divisible by the {n} devices of the data mesh: "
                          f"use a multiple of {n} or fewer devices (--config.num_devices)")


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (parameters, optimizer states, the dataset)."""
    return NamedSharding(mesh, PartitionSpec())


def by_member(mesh: Mesh) -> NamedSharding:
    """Stacked [members, ...] arrays split along the member axis over "members" (a sweep's state, masks)."""
    return NamedSharding(mesh, PartitionSpec(MEMBERS_AXIS))


def replicated_abstract(make: Callable[[], Any], mesh: Mesh) -> Any:
    """Shapes and dtypes of `make()` (traced, never run), replicated on the mesh: a restore target."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), jax.eval_shape(make))


@functools.cache
def _replicate(mesh: Mesh) -> Callable[[Any], Any]:
    return jax.jit(lambda tree: tree, out_shardings=replicated(mesh))


def gathered(tree: Any, mesh: Mesh) -> Any:
    """`tree` replicated on every device, so every process can read it (`np.asarray`): member-split leaves
    are gathered in one call (outside training), replicated ones pass as they are."""
    if all(leaf.is_fully_replicated for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)):
        return tree
    return _replicate(mesh)(tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """[group, batch, ...] arrays split along the batch axis over "data"."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def shard_batch_constraint(mesh: Mesh) -> Callable[[jax.Array], jax.Array]:
    """The `batch_constraint` for `loop.train_epoch`: each gathered batch split over "data"."""
    sharding = batch_sharding(mesh)
    return lambda x: jax.lax.with_sharding_constraint(x, sharding)


def place(tree: Any, mesh: Mesh, sharding: NamedSharding | None = None) -> Any:
    """Every array leaf of `tree` (a train state, the dataset) on the mesh: replicated on every device, or
    as `sharding` says (`by_member`).

    Single process: `jax.device_put`. Multi-process: every process holds the full array (same files, same
    seed) and hands over the parts its devices hold (`jax.make_array_from_callback`); see the module doc.
    """
    sharding = replicated(mesh) if sharding is None else sharding
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(a: Any) -> jax.Array:
        if isinstance(a, jax.Array) and a.sharding == sharding:
            return a
        full = np.asarray(a)
        return jax.make_array_from_callback(full.shape, sharding, lambda index: full[index])

    return jax.tree.map(one, tree)


def jit_train_epoch(task: Any, batch_size: int, mesh: Mesh, donate: bool = True, epoch_examples: int | None = None):
    """`loop.train_epoch` jitted for the mesh: call it with a placed state and placed data (and a one-class
    run's pool of training indices, `epoch_examples` of them per epoch).

    Input shardings come from the committed (placed) arguments; outputs (the new state and the
    per-round metrics) are pinned replicated, so the state keeps its sharding epoch after epoch
    and the host can read metrics in every process.
    """
    check_divisible(batch_size, mesh)
    constraint = shard_batch_constraint(mesh)

    def epoch(state: Any, images: jax.Array, labels: jax.Array, beta: None = None,
              pool: tuple[jax.Array, jax.Array] | None = None) -> Any:  # a single run's beta is its learner's
        return train_epoch(task, state, images, labels, batch_size, batch_constraint=constraint, pool=pool,
                           epoch_examples=epoch_examples)

    return jax.jit(epoch, out_shardings=replicated(mesh), donate_argnums=0 if donate else ())


def jit_sweep_epoch(learner: Any, batch_size: int, mesh: Mesh, epoch_examples: int | None = None):
    """`sweep.sweep_epoch` jitted for the mesh: call it with a state and masks placed `by_member`.

    The members stay on their group of devices ("members") and their batches split over the group's
    "data" devices; the new state and the per-round metrics come out split by member too, so an epoch
    has no collective between member groups (only a group's own gradient all-reduce, when "data" > 1).
    """
    check_divisible(batch_size, mesh)
    return jax.jit(functools.partial(sweep_epoch, learner, batch_size=batch_size,
                                     batch_constraint=shard_batch_constraint(mesh), member_axis=MEMBERS_AXIS,
                                     epoch_examples=epoch_examples),
                   out_shardings=by_member(mesh), donate_argnums=0)
