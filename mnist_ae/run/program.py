"""What the driver runs: a program is a learner, its members and its compiled epoch and eval.

A single run is a program of one member on an unstacked state; a sweep is a program of many
members on a stacked state whose epoch and eval are the core's vmapped ones. The driver sees
only this interface, so every lifecycle feature is written once for both.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae import build, parallel
from mnist_ae.core import sweep
from mnist_ae.core.loop import rounds_per_epoch
from mnist_ae.core.state import TrainState
from mnist_ae.core.steps import Learner, decode, encode, evaluate, reconstruct, train_round
from mnist_ae.run.device_data import DeviceData


@dataclasses.dataclass
class Program:
    """A learner with `len(members)` members, compiled for a mesh.

    `members` holds the record tags of each member ({} for a single run). `extra_args` are the
    device arrays that follow (images, labels) in every call (a sweep's latent masks).
    """

    learner: Learner
    members: list[dict[str, Any]]
    mesh: jax.sharding.Mesh
    batch_size: int
    stacked: bool
    epoch_fn: Callable[..., tuple[TrainState, dict[str, jax.Array]]]
    eval_fn: Callable[..., dict[str, jax.Array]]
    encode_fn: Callable[..., jax.Array]
    reconstruct_fn: Callable[..., jax.Array]
    decode_fn: Callable[..., jax.Array]
    extra_args: tuple[jax.Array, ...] = ()

    def member(self, tree: Any, i: int) -> Any:
        """Member i's view of a stacked tree (the tree itself for a single run); of a state, its `gathered` view."""
        return sweep.unstack(tree, i) if self.stacked else tree

    def gathered(self, tree: Any) -> Any:
        """`tree` replicated on every device: a sweep's member-split state gathered once (a collective: every
        process calls it), which the hooks and every host read then use; a replicated tree as it is."""
        return parallel.gathered(tree, self.mesh)

    def pulled(self, tree: Any) -> Any:
        """`tree` as numpy on the host of every process (gathered first when split by member)."""
        return jax.device_get(self.gathered(tree))

    def epoch(self, state: TrainState) -> int:
        return int(np.asarray(self.pulled(state.epoch)).reshape(-1)[0])  # every member has done the same epochs

    def step(self, state: TrainState) -> int:
        """Rounds done: the most of any member (a diverged sweep member's step stops advancing)."""
        return int(np.max(self.pulled(state.step)))

    def frozen(self, state: TrainState) -> list[int]:
        """Members whose step fell behind: frozen by divergence (in this session or before a resume)."""
        steps = np.asarray(self.pulled(state.step)).reshape(-1)
        return [i for i, s in enumerate(steps) if s < steps.max()]

    def rounds_per_epoch(self, num_train: int) -> int:
        return rounds_per_epoch(self.learner, num_train, self.batch_size)

    def compile_epoch(self, state: TrainState, data: DeviceData) -> Callable[[TrainState], tuple]:
        """Ahead-of-time compiled epoch: a shape change cannot silently recompile it."""
        compiled = self.epoch_fn.lower(state, data.train_x, data.train_y, *self.extra_args).compile()
        return lambda s: compiled(s, data.train_x, data.train_y, *self.extra_args)

    def evaluate(self, state: TrainState, data: DeviceData) -> list[dict[str, np.ndarray]]:
        """Whole-test-set metrics per member, pulled back in one transfer."""
        metrics = jax.device_get(self.eval_fn(state.params, data.test_x, data.test_y, *self.extra_args))
        return [self.member(metrics, i) for i in range(len(self.members))]

    def test_codes(self, state: TrainState, data: DeviceData) -> np.ndarray:
        """Codes of the whole test set ([members,] n, L), one device call and one transfer."""
        return np.asarray(self.encode_fn(state.params["ae"], data.test_x, *self.extra_args))

    def decode(self, state: TrainState, codes_nl: np.ndarray, member: int = 0) -> np.ndarray:
        """Images in [-1, 1] decoded from codes by one member's decoder (codes at the program's width)."""
        params = self.member(state.params["ae"], member)
        return np.asarray(self.decode_fn(params, jnp.asarray(codes_nl, jnp.float32)))

    def round_jaxpr(self, state: TrainState, data: DeviceData) -> tuple[jax.extend.core.ClosedJaxpr, list[str]]:
        """The training round as traced (not the epoch's scan around it: one round is what the epoch
        repeats), vmapped over members for a sweep; and its inputs' names, for the TensorBoard graph."""
        from mnist_ae.writers.graph import input_names  # noqa: PLC0415  (tensorboardX protos only when asked)

        batch = (self.learner.batches_per_round, self.batch_size)
        args = (state, jax.ShapeDtypeStruct((*batch, *data.train_x.shape[1:]), jnp.float32),
                jax.ShapeDtypeStruct(batch, jnp.int32), *self.extra_args)
        round_fn = functools.partial(train_round, self.learner)
        if self.stacked:
            round_fn = jax.vmap(round_fn, in_axes=(0, None, None, 0))
        names = input_names(["state", "x_gbhw", "y_gb", "mask_ml"][:len(args)], args)
        return jax.make_jaxpr(round_fn)(*args), names

    def reconstructions(self, state: TrainState, images_bhw: jax.Array) -> np.ndarray:
        """Reconstructions in [-1, 1] of a small batch ([members,] b, h, w)."""
        return np.asarray(self.reconstruct_fn(state.params["ae"], images_bhw, *self.extra_args))


def _jit(fn: Callable, mesh: jax.sharding.Mesh, out: jax.sharding.NamedSharding | None = None,
         **kwargs: Any) -> Callable:
    """Outputs replicated, so every process can read them back, unless `out` says otherwise."""
    return jax.jit(fn, out_shardings=parallel.replicated(mesh) if out is None else out, **kwargs)


# An initial state is computed once per run, so its program (a threefry per parameter: hundreds of small
# fusions) is compiled for compile speed, without LLVM's optimisation passes or XLA:CPU's fusion emitters:
# on the 2-core CPU 2.0 s instead of 5.2 s (MLP) and 8.3 s (conv). Without fused multiply-adds some values
# differ in their last bit from a fully optimised init's; sweeps and single runs both init this way.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


def initial_state(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> TrainState:
    """A single run's initial state on the mesh: one compiled program instead of dozens of eagerly compiled
    small ops (default config, no cache: MLP 1.7-1.9 s against 6.8-7.2 s eagerly, conv 1.4-1.6 s against
    17 s). The seed is its argument, so another seed's run loads it from the persistent compilation cache."""
    init = _jit(lambda seed: build.initial_state(config, seed), mesh, compiler_options=_QUICK_COMPILE)
    return init(np.uint32(config.seed))


def initial_states(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, setup: build.SweepSetup) -> TrainState:
    """A sweep's stacked initial state, split by member over the mesh, compiled as `initial_state` is."""
    return _jit(lambda: setup.initial_states(config), mesh, parallel.by_member(mesh),
                compiler_options=_QUICK_COMPILE)()


def single_program(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple[Program, TrainState]:
    """A reconstruction or classification run and its initial state, placed on the mesh."""
    learner = build.learner(config)
    program = Program(
        learner, [{}], mesh, config.batch_size, stacked=False,
        epoch_fn=parallel.jit_train_epoch(learner, config.batch_size, mesh),
        eval_fn=_jit(functools.partial(evaluate, learner), mesh),
        encode_fn=_jit(functools.partial(encode, learner), mesh),
        reconstruct_fn=_jit(functools.partial(reconstruct, learner), mesh),
        decode_fn=_jit(functools.partial(decode, learner), mesh))
    return program, initial_state(config, mesh)


def sweep_program(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple[Program, TrainState]:
    """Every member of a sweep as one vmapped program; the stacked initial state split by member over the
    mesh's "members" axis (the state and the epoch's metrics stay there: no collective between member groups)."""
    setup = build.sweep_setup(config)
    learner = setup.learner
    program = Program(
        learner, [m.tags for m in setup.members], mesh, config.batch_size, stacked=True,
        epoch_fn=parallel.jit_sweep_epoch(learner, config.batch_size, mesh),
        eval_fn=_jit(functools.partial(sweep.sweep_evaluate, learner), mesh),
        encode_fn=_jit(jax.vmap(functools.partial(encode, learner), in_axes=(0, None, 0)), mesh),
        reconstruct_fn=_jit(jax.vmap(functools.partial(reconstruct, learner), in_axes=(0, None, 0)), mesh),
        decode_fn=_jit(functools.partial(decode, learner), mesh),
        extra_args=(parallel.place(setup.masks_ml, mesh, parallel.by_member(mesh)),))
    return program, initial_states(config, mesh, setup)
