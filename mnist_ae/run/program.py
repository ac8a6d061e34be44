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
from mnist_ae.core.steps import (Learner, decode, denoising, encode, evaluate, per_image_errors, reconstruct,
                                  train_round)
from mnist_ae.run.device_data import DeviceData, host_digits


@dataclasses.dataclass
class Program:
    """A learner with `len(members)` members, compiled for a mesh.

    `members` holds the record tags of each member ({} for a single run). `extra_args` are the
    device arrays that follow (images, labels) in every call (a sweep's latent masks); the epoch's call
    takes `betas` (a VAE sweep's KL weight per member) and `pool` (a one-class run's training indices and
    which are real, per member in a sweep) after them.
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
    betas: jax.Array | None = None
    pool: tuple[jax.Array, jax.Array] | None = None

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
        args = (*self.extra_args, self.betas, self.pool)
        compiled = self.epoch_fn.lower(state, data.train_x, data.train_y, *args).compile()
        return lambda s: compiled(s, data.train_x, data.train_y, *args)

    def evaluate(self, state: TrainState, data: DeviceData) -> list[dict[str, np.ndarray]]:
        """Whole-test-set metrics per member, pulled back in one transfer."""
        metrics = jax.device_get(self.eval_fn(state.params, data.test_x, data.test_y, *self.extra_args))
        return [self.member(metrics, i) for i in range(len(self.members))]

    def test_codes(self, state: TrainState, data: DeviceData) -> np.ndarray:
        """Codes of the whole test set ([members,] n, L), one device call and one transfer."""
        return np.asarray(self.encode_fn(state.params["ae"], data.test_x, *self.extra_args))

    def test_errors(self, state: TrainState, data: DeviceData) -> np.ndarray:
        """Each test digit's reconstruction error ([members,] n): a one-class model's anomaly scores."""
        fn = functools.partial(per_image_errors, self.learner)
        fn = jax.vmap(fn, in_axes=(0, None, 0)) if self.stacked else fn
        return np.asarray(_jit(fn, self.mesh)(state.params["ae"], data.test_x, *self.extra_args))

    def train_codes(self, state: TrainState, data: DeviceData) -> np.ndarray:
        """Codes of the whole training set ([members,] n, L): retrieval's database."""
        return np.asarray(self.encode_fn(state.params["ae"], data.train_x, *self.extra_args))

    def denoising(self, state: TrainState, data: DeviceData, kind: str, levels: tuple[float, ...],
                  pca: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[float, dict[str, float]]]:
        """`steps.denoising` at each level, per member; `pca`: each member's (mean [P], axes [P, k]), the axes
        zero-padded to the widest member's (a zero axis projects nothing). One program for all the levels."""
        width = max(axes.shape[1] for _, axes in pca)
        mean_mp = np.stack([mean for mean, _ in pca]).astype(np.float32)
        axes_mpk = np.stack([np.pad(axes, [(0, 0), (0, width - axes.shape[1])]) for _, axes in pca]).astype(np.float32)

        def member(params: Any, x: jax.Array, level: jax.Array, mean_p: jax.Array, axes_pk: jax.Array,
                   mask_l: jax.Array | None = None) -> dict[str, jax.Array]:
            return denoising(self.learner, params, x, kind, level, mean_p, axes_pk, mask_l)

        if self.stacked:
            fn = _jit(jax.vmap(member, in_axes=(0, None, None, 0, 0, 0)), self.mesh)
        else:
            fn, mean_mp, axes_mpk = _jit(member, self.mesh), mean_mp[0], axes_mpk[0]
        out: list[dict[float, dict[str, float]]] = [{} for _ in self.members]
        for level in levels:
            metrics = jax.device_get(fn(state.params["ae"], data.test_x, np.float32(level), mean_mp, axes_mpk,
                                        *self.extra_args))
            for i in range(len(self.members)):
                out[i][level] = {k: float(v) for k, v in self.member(metrics, i).items()}
        return out

    def decode(self, state: TrainState, codes_nl: np.ndarray, member: int = 0) -> np.ndarray:
        """Images in [-1, 1] decoded from codes by one member's decoder (codes at the program's width)."""
        params = self.member(state.params["ae"], member)
        return np.asarray(self.decode_fn(params, jnp.asarray(codes_nl, jnp.float32)))

    def bound(self, state: TrainState, data: DeviceData, k: int) -> list[float]:
        """A VAE's -log p(x) bound with `k` importance samples per test digit, per member (nats)."""
        learner = dataclasses.replace(self.learner, iw_samples=k)
        evaluate_k = functools.partial(evaluate, learner)
        if self.stacked:
            evaluate_k = jax.vmap(evaluate_k, in_axes=(0, None, None, 0))
        nll = _jit(lambda *args: evaluate_k(*args)[f"test/nll_iw{k}"], self.mesh)(
            state.params, data.test_x, data.test_y, *self.extra_args)
        return [float(v) for v in np.asarray(nll).reshape(-1)]

    def round_jaxpr(self, state: TrainState, data: DeviceData) -> tuple[jax.extend.core.ClosedJaxpr, list[str]]:
        """The training round as traced (not the epoch's scan around it: one round is what the epoch
        repeats), vmapped over members for a sweep; and its inputs' names, for the TensorBoard graph."""
        from mnist_ae.writers.graph import input_names  # noqa: PLC0415  (tensorboardX protos only when asked)

        batch = (self.learner.batches_per_round, self.batch_size)
        args = (state, jax.ShapeDtypeStruct((*batch, *data.train_x.shape[1:]), jnp.float32),
                jax.ShapeDtypeStruct(batch, jnp.int32), *self.extra_args, *([] if self.betas is None else [self.betas]))
        round_fn = functools.partial(train_round, self.learner)
        if self.stacked:
            round_fn = jax.vmap(round_fn, in_axes=(0, None, None, 0, 0)[:len(args)])
        names = input_names(["state", "x_gbhw", "y_gb", "mask_ml", "beta_m"][:len(args)], args)
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


def _pools(config: ml_collections.ConfigDict, classes: list[int | None], mesh: jax.sharding.Mesh,
           sharding: jax.sharding.NamedSharding | None = None) -> tuple[tuple[jax.Array, jax.Array] | None, int | None]:
    """One-class runs' pools of training indices (`build.class_pools`) placed on the mesh, stacked for a sweep
    and split as `sharding` says; and the digits each trains on per epoch. (None, None) for whole-set runs."""
    if classes[0] is None:
        return None, None
    index_mp, valid_mp, per_epoch = build.class_pools(host_digits(config).train_y, classes)
    if sharding is None:
        index_mp, valid_mp = index_mp[0], valid_mp[0]
    return parallel.place((index_mp, valid_mp), mesh, sharding), per_epoch


def single_program(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple[Program, TrainState]:
    """A reconstruction or classification run and its initial state, placed on the mesh."""
    learner = build.learner(config)
    pool, per_epoch = _pools(config, [None if config.normal_class < 0 else config.normal_class], mesh)
    program = Program(
        learner, [{}], mesh, config.batch_size, stacked=False, pool=pool,
        epoch_fn=parallel.jit_train_epoch(learner, config.batch_size, mesh, epoch_examples=per_epoch),
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
    by_member = parallel.by_member(mesh)
    pool, per_epoch = _pools(config, [m.normal_class for m in setup.members], mesh, by_member)
    program = Program(
        learner, [m.tags for m in setup.members], mesh, config.batch_size, stacked=True, pool=pool,
        betas=None if setup.betas_m is None else parallel.place(setup.betas_m, mesh, by_member),
        epoch_fn=parallel.jit_sweep_epoch(learner, config.batch_size, mesh, epoch_examples=per_epoch),
        eval_fn=_jit(functools.partial(sweep.sweep_evaluate, learner), mesh),
        encode_fn=_jit(jax.vmap(functools.partial(encode, learner), in_axes=(0, None, 0)), mesh),
        reconstruct_fn=_jit(jax.vmap(functools.partial(reconstruct, learner), in_axes=(0, None, 0)), mesh),
        decode_fn=_jit(functools.partial(decode, learner), mesh),
        extra_args=(parallel.place(setup.masks_ml, mesh, by_member),))
    return program, initial_states(config, mesh, setup)
