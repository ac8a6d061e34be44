"""Config -> core objects: the learner, initial states and sweep set-ups (nanodo's model factory).

The one module that reads a config to make things from `mnist_ae.core`; the driver, `--task
analyze`, benchmarks and tests all build through it, so the recipe is written once.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae.config import total_rounds
from mnist_ae.core import sweep, vae
from mnist_ae.core.choices import OUTPUTS, parse_noise
from mnist_ae.core.models import code_dim, make_autoencoder, make_classifier
from mnist_ae.core.state import Schedule, TrainState, make_optimizer, warmup_cosine
from mnist_ae.core.steps import Learner, init_state


def lr_multiplier(config: ml_collections.ConfigDict) -> Schedule | None:
    """The learning-rate schedule's shape (peak 1) over the run's rounds; None when constant."""
    if config.lr_schedule == "constant":
        return None
    return warmup_cosine(config.lr_warmup_steps, total_rounds(config), config.lr_end_factor)


def learner(config: ml_collections.ConfigDict, *, latent_dim: int | None = None) -> Learner:
    """The static learner of `config`; `latent_dim` overrides the config's (sweeps use the widest)."""
    optimizer = make_optimizer(config.learning_rate, config.weight_decay, lr_multiplier(config), config.adam_b2)
    schedule = dict(ae_steps=config.ae_steps, probe_steps=config.probe_steps,
                    eval_batch_size=config.eval_batch_size, augment_shift=config.augment_shift,
                    input_noise=parse_noise(config.input_noise))
    if config.task == "classification":
        return Learner(None, make_classifier(config.hidden, config.init), {"classifier": optimizer}, **schedule)
    if config.model == "vae":
        ae = vae.make_vae(config.hidden, latent_dim or config.latent_dim, config.init, config.activation, config.norm)
        schedule.update(beta=config.beta, kl_warmup_steps=config.kl_warmup_steps, iw_samples=config.iw_samples,
                        train_iw_samples=config.train_iw_samples)
    else:
        ae = make_autoencoder(config.model, config.hidden, latent_dim or config.latent_dim, config.init,
                              OUTPUTS[config.recon_loss], config.activation, config.norm)
    probe_optimizer = make_optimizer(config.probe_learning_rate, config.weight_decay, b2=config.adam_b2)
    return Learner(ae, make_classifier(config.probe_hidden, config.init),
                   {"ae": optimizer, "probe": probe_optimizer}, **schedule)


def initial_state(config: ml_collections.ConfigDict, seed: int | jax.Array | None = None) -> TrainState:
    """The single run's initial state (call it under `jax.jit` or `jax.eval_shape`); `seed` (default
    the config's) may be a traced uint32, so that runs differing only in their seed share the program."""
    return init_state(learner(config), config.seed if seed is None else seed)


@dataclasses.dataclass(frozen=True)
class Member:
    """One sweep member: the single run it stands for differs from the config in these (a VAE's in beta too)."""

    latent_dim: int
    seed: int
    learning_rate: float
    beta: float | None = None
    normal_class: int | None = None  # a one-class member: trained on this class's digits only

    @property
    def name(self) -> str:
        beta = "" if self.beta is None else f"_beta{self.beta:g}"
        normal = "" if self.normal_class is None else f"_class{self.normal_class}"
        return f"latent{self.latent_dim}_seed{self.seed}_lr{self.learning_rate:g}{beta}{normal}"

    @property
    def tags(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("beta", self.beta), ("normal_class", self.normal_class)) if v is not None}
        return {"member": self.name, "latent_dim": self.latent_dim, "seed": self.seed,
                "learning_rate": self.learning_rate, **extra}


def members(config: ml_collections.ConfigDict) -> list[Member]:
    """The product latent_dims x seeds x learning_rates (x betas for a VAE, x normal_classes for one-class
    members), in that order."""
    latents = config.latent_dims if config.model != "conv" else (code_dim("conv", 0),)
    betas = [float(b) for b in config.betas] if config.model == "vae" else [None]
    classes = [int(c) for c in config.normal_classes] or [None]
    return [Member(int(l), int(s), float(lr), b, c)
            for l, s, lr, b, c in itertools.product(latents, config.seeds, config.learning_rates, betas, classes)]


def class_pools(labels_n: np.ndarray, classes: list[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per one-class member, the training indices of its class padded to the largest class's count ([M, P]
    int32, padding 0), which are real ([M, P] bool), and the smallest count: the digits every member trains
    on per epoch (a fresh random subset of the larger classes each epoch)."""
    index = [np.flatnonzero(labels_n == c) for c in classes]
    width = max(len(i) for i in index)
    pools = np.stack([np.pad(i, (0, width - len(i))) for i in index]).astype(np.int32)
    valid = np.stack([np.arange(width) < len(i) for i in index])
    return pools, valid, min(len(i) for i in index)


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
    """The single-run (`--task reconstruction`) config this member stands for."""
    single = ml_collections.ConfigDict(config.to_dict())
    single.task = "reconstruction"
    single.latent_dim, single.seed, single.learning_rate = member.latent_dim, member.seed, member.learning_rate
    if member.beta is not None:
        single.beta = member.beta
    if member.normal_class is not None:
        single.normal_class = member.normal_class
    return single


@dataclasses.dataclass(frozen=True)
class SweepSetup:
    """Everything a sweep's program needs: members, the widest learner, one latent mask each and, for a
    VAE, each member's KL weight."""

    members: list[Member]
    width: int
    learner: Learner
    masks_ml: jax.Array
    betas_m: jax.Array | None = None

    def initial_states(self, config: ml_collections.ConfigDict) -> TrainState:
        """Stacked in member order: each member's single-run initial state zero-padded to the widest
        shapes (call it under `jax.jit`). Members that differ only in their seed share one init,
        vmapped over their seeds: 50 members unrolled compile for a minute, eagerly they dispatch
        for half of one."""
        groups: dict[tuple[int, float], list[int]] = {}
        for i, m in enumerate(self.members):
            groups.setdefault((m.latent_dim, m.learning_rate), []).append(i)  # beta is no part of a state
        parts, order = [], []
        for index in groups.values():
            single = member_config(config, self.members[index[0]])
            wide = jax.eval_shape(lambda: init_state(learner(single, latent_dim=self.width), 0))
            seeds = jnp.asarray([self.members[i].seed for i in index], jnp.uint32)
            parts.append(jax.vmap(lambda seed, single=single, wide=wide: sweep.pad_to(
                init_state(learner(single), seed), wide))(seeds))
            order += index
        where = jnp.argsort(jnp.asarray(order))  # member i's row in the concatenated groups
        return jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[where], *parts)


def member_run(config: ml_collections.ConfigDict, member: Member, wide_state: Any) -> tuple[
        ml_collections.ConfigDict, TrainState]:
    """One sweep member as a standalone run: its single-run config and its state sliced to its width."""
    single = member_config(config, member)
    return single, sweep.slice_to(wide_state, jax.eval_shape(lambda: initial_state(single)))


def sweep_setup(config: ml_collections.ConfigDict) -> SweepSetup:
    sweep_members = members(config)
    width = max(m.latent_dim for m in sweep_members)
    masks = jnp.stack([sweep.latent_mask(m.latent_dim, width) for m in sweep_members])
    betas = jnp.asarray([m.beta for m in sweep_members], jnp.float32) if config.model == "vae" else None
    return SweepSetup(sweep_members, width, learner(config, latent_dim=width), masks, betas)
