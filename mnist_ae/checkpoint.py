"""Orbax checkpoints of the train state, with the config that made them.

The config travels with every checkpoint so that a resume can refuse a config that does not fit
and `--task analyze` can rebuild the model from the run directory alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from mnist_ae.config import ConfigError, resume_keys

def _jsonable(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_dict()))


class Checkpointer:
    """Keeps the last K checkpoints under `directory`, labelled by epoch."""

    def __init__(self, directory: Path, keep: int):
        self.directory = Path(directory)
        self._manager = ocp.CheckpointManager(
            self.directory.resolve(), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def save(self, epoch: int, state: Any, config: ml_collections.ConfigDict) -> None:
        self._manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(_jsonable(config))))

    def saved_config(self, epoch: int | None = None) -> dict[str, Any]:
        epoch = self.latest_epoch() if epoch is None else epoch
        return self._manager.restore(epoch, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def check_fits(self, config: ml_collections.ConfigDict) -> None:
        """Refuse, in one line, a config that differs from the checkpoint's in a state key."""
        saved, wanted = self.saved_config(), _jsonable(config)
        for key in resume_keys(saved.get("task", "")):
            if saved.get(key) != wanted.get(key):
                raise ConfigError(
                    f"the checkpoint in {self.directory} was written with {key}={saved.get(key)!r} but "
                    f"the config has {key}={wanted.get(key)!r}: use a new --workdir or the same {key}")

    def restore(self, abstract_state: Any, epoch: int | None = None) -> Any:
        """Restore into the structure, shapes and shardings of `abstract_state` (jax.eval_shape)."""
        epoch = self.latest_epoch() if epoch is None else epoch
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        return self._manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]

    def close(self) -> None:
        """Waits for pending saves; async save errors surface here."""
        self._manager.close()
