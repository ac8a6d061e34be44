"""A trained run from its workdir, for notebooks and scripts: its config, its metrics as records, and
its autoencoder as `encode`, `decode` and `reconstruct` on the device, in batches.

    from mnist_ae.api import load
    run = load("runs/reconstruction")            # the latest intact checkpoint (or epoch=N, or "best")
    codes = run.encode(images_nhw)               # uint8 [n, 28, 28] -> float32 [n, latent]
    images = run.decode(codes)                   # -> float32 [n, 28, 28] in [-1, 1]

Works for single runs and for a sweep's exported members (`RUN/members/<name>`).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae import build
from mnist_ae.checkpoint import CheckpointError, Checkpointer
from mnist_ae.core.state import TrainState
from mnist_ae.core.steps import Learner, decode, encode
from mnist_ae.workdir import RunDir


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """One checkpoint of a run, restored on the default device."""

    workdir: Path
    config: ml_collections.ConfigDict
    epoch: int
    state: TrainState
    learner: Learner

    @property
    def records(self) -> list[dict[str, Any]]:
        """The scalar records of metrics.jsonl (train windows and evals), in the order written."""
        return [r for r in RunDir(self.workdir).records() if "step" in r]

    def encode(self, images_nhw: np.ndarray) -> np.ndarray:
        """Codes of uint8 images [n, 28, 28] (the dataset's format), [n, latent]."""
        return np.asarray(_jitted(self.learner, "encode")(self.state.params["ae"], jnp.asarray(images_nhw)))

    def decode(self, codes_nl: np.ndarray) -> np.ndarray:
        """Images in [-1, 1] decoded from codes [n, latent], [n, 28, 28]."""
        return np.asarray(_jitted(self.learner, "decode")(self.state.params["ae"], jnp.asarray(codes_nl, jnp.float32)))

    def reconstruct(self, images_nhw: np.ndarray) -> np.ndarray:
        """Reconstructions in [-1, 1] of uint8 images [n, 28, 28]."""
        return self.decode(self.encode(images_nhw))


_JITTED: dict[tuple[Any, int, str], Any] = {}


def _jitted(learner: Learner, name: str) -> Any:
    """`encode` or `decode` jitted for the learner's autoencoder, shared by every run whose autoencoder is
    equal (flax modules compare by their fields): a sweep's members of one latent size trace it once,
    not once each. `encode` and `decode` read nothing else of the learner but its eval batch size."""
    key = (learner.autoencoder, learner.eval_batch_size, name)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(functools.partial({"encode": encode, "decode": decode}[name], learner))
    return _JITTED[key]


def load(workdir: str | Path, epoch: int | str | None = None) -> TrainedRun:
    """The run in `workdir` at its latest intact checkpoint, the given epoch, or "best" (by the run's
    `best_checkpoint_metric`)."""
    workdir = Path(workdir)
    ckpt = Checkpointer(RunDir(workdir).checkpoints, 1)
    try:
        if epoch == "best":
            metric = ckpt.run_config().best_checkpoint_metric if ckpt.latest_epoch() is not None else ""
            epoch = ckpt.best_epoch(metric or "test/recon_mse")
            if epoch is None:
                raise CheckpointError(f"no checkpoint in {RunDir(workdir).checkpoints} was saved with "
                                      f"{metric or 'test/recon_mse'}: load the latest (epoch=None) or an epoch")
        if epoch not in (None, *ckpt.epochs()) or ckpt.latest_epoch() is None:
            raise CheckpointError(f"no checkpoint {'' if epoch is None else f'of epoch {epoch} '}in "
                                  f"{RunDir(workdir).checkpoints} (there are {ckpt.epochs()}): train one first")
        config = ckpt.run_config(epoch)
        if config.task != "reconstruction":
            raise CheckpointError(f"{workdir} holds a {config.task!r} run: load() needs an autoencoder "
                                  "(a reconstruction run or an exported sweep member)")
        state = ckpt.restore(jax.eval_shape(lambda: build.initial_state(config)), epoch=epoch)
    finally:
        ckpt.close()
    return TrainedRun(workdir, config, int(state.epoch), state, build.learner(config))
