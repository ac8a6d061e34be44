"""Vmapped sweeps: many latent sizes, seeds and learning rates as one stacked train state.

Pure. Latent width changes shapes, so every member is built at the widest latent size and its
code is multiplied by a mask (`arange(L_max) < latent_dim`). A member starts as the *unpadded*
model of its width (same seed, same init) zero-padded to the widest shapes; padded weights get
no gradient and AdamW leaves zeros at zero, so slicing a member back to its width gives the
unpadded model exactly. Seeds and learning rates are values in the state, so they vmap as is.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from mnist_ae.loop import train_epoch
from mnist_ae.models import code_dim
from mnist_ae.state import TrainState
from mnist_ae.steps import Metrics, Task, evaluate, init_state, make_task


@dataclasses.dataclass(frozen=True)
class Member:
    latent_dim: int
    seed: int
    learning_rate: float

    @property
    def name(self) -> str:
        return f"latent{self.latent_dim}_seed{self.seed}_lr{self.learning_rate:g}"

    @property
    def tags(self) -> dict[str, Any]:
        return {"member": self.name, "latent_dim": self.latent_dim, "seed": self.seed,
                "learning_rate": self.learning_rate}


def members(config: ml_collections.ConfigDict) -> list[Member]:
    """The product latent_dims x seeds x learning_rates, in that order."""
    latents = config.latent_dims if config.model == "mlp" else (code_dim("conv", 0),)
    return [Member(int(l), int(s), float(lr))
            for l, s, lr in itertools.product(latents, config.seeds, config.learning_rates)]


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
    """The single-run (`--task reconstruction`) config this member stands for."""
    single = ml_collections.ConfigDict(config.to_dict())
    single.task = "reconstruction"
    single.latent_dim, single.seed, single.learning_rate = member.latent_dim, member.seed, member.learning_rate
    return single


def max_latent(config: ml_collections.ConfigDict) -> int:
    return max(m.latent_dim for m in members(config))


def latent_mask(latent_dim: int, width: int) -> jax.Array:
    return (jnp.arange(width) < latent_dim).astype(jnp.float32)


def pad_to(tree: Any, template: Any) -> Any:
    """Zero-pad every leaf at the end of each axis to the template leaf's shape."""
    def pad(a: jax.Array, t: Any) -> jax.Array:
        return jnp.pad(a, [(0, T - s) for s, T in zip(a.shape, t.shape)]) if a.ndim else a

    return jax.tree.map(pad, tree, template)


def slice_to(tree: Any, template: Any) -> Any:
    """Cut every leaf to the template leaf's shape (the inverse of `pad_to`)."""
    return jax.tree.map(lambda a, t: a[tuple(slice(0, s) for s in t.shape)], tree, template)


def member_state(config: ml_collections.ConfigDict, member: Member, width: int) -> TrainState:
    """The member's single-run initial state, padded to the sweep's widest latent size."""
    single = member_config(config, member)
    state = init_state(make_task(single), member.seed)
    wide = jax.eval_shape(lambda: init_state(make_task(single, latent_dim=width), member.seed))
    return pad_to(state, wide)


def init_states(config: ml_collections.ConfigDict, sweep: list[Member], width: int) -> TrainState:
    """Stacked states: every leaf gets a leading member axis."""
    states = [member_state(config, m, width) for m in sweep]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)


def unstack(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda a: a[index], tree)


def sweep_epoch(task: Task, states: TrainState, images_nhw: jax.Array, labels_n: jax.Array,
                masks_ml: jax.Array, batch_size: int,
                batch_constraint: Callable[[jax.Array], jax.Array] | None = None) -> tuple[TrainState, Metrics]:
    """One epoch of every member at once; metrics are [members, rounds]."""
    return jax.vmap(lambda s, m: train_epoch(task, s, images_nhw, labels_n, batch_size, m, batch_constraint))(
        states, masks_ml)


def sweep_evaluate(task: Task, params: Any, images_nhw: jax.Array, labels_n: jax.Array,
                   masks_ml: jax.Array) -> Metrics:
    return jax.vmap(lambda p, m: evaluate(task, p, images_nhw, labels_n, m))(params, masks_ml)
