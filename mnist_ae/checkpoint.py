"""Orbax checkpoints of the train state, with the config that made them and a checksum of the state.

The config travels with every checkpoint so that a resume can refuse a config that does not fit
and `--task analyze` can rebuild the model from the run directory alone. The checksum (sha256 of
every leaf's dtype, shape and bytes, taken at save time) lets a restore tell an intact checkpoint
from a damaged one: a damaged step is moved aside, never deleted, and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from mnist_ae.config import FIELDS, ConfigError, resume_keys
from mnist_ae.errors import CheckpointError
from mnist_ae.metrics import higher_is_better
from mnist_ae.workdir import intact_line



def _register_array_handler() -> None:
    """A replicated array is written whole by its first replica. Orbax's default off GPU splits it over its
    replicas instead, slicing every array on every device: on 8 CPU devices the first save compiled about
    100 slice programs (17 s) to write a few MB. Orbax turns that off on GPU itself. Its warning that the
    handler is overridden (on stderr at every import, before run.log exists) is what we ask for: muted."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        ocp.type_handlers.register_type_handler(
            jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
    finally:
        absl_logger.setLevel(level)


_register_array_handler()


def _jsonable(config: ml_collections.ConfigDict | dict[str, Any]) -> dict[str, Any]:
    as_dict = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
    return json.loads(json.dumps(as_dict))


def _host(leaf: Any) -> np.ndarray:
    """The whole leaf in this process: its own copy of a replicated leaf; a leaf split over processes (a
    sweep's members) gathered from every process (a collective: every process digests the same state)."""
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        if leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return np.asarray(leaf)


def state_digest(state: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes: equal states, equal digests."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        array = np.ascontiguousarray(_host(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _cause(error: BaseException) -> str:
    """The most specific one-line reason in an exception chain (an OSError's strerror if there is one)."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"{seen.strerror}" + (f" ({seen.filename})" if seen.filename else "")
        seen = seen.__cause__ or seen.__context__
    text = str(error).strip().splitlines()
    if text and (code := re.search(r"\[os_error_code='(\d+)'\]", text[0])) is not None:
        return os.strerror(int(code.group(1)))  # TensorStore's write error: a paragraph around an errno
    first = text[0].split(" See full TensorStore details")[0] if text else ""  # then a repr of the whole spec
    return f"{type(error).__name__}: {first}"


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def _restore_target(leaf: Any) -> jax.ShapeDtypeStruct:
    """A leaf's shape, dtype and sharding to restore into; without a sharding (a `jax.eval_shape` target),
    this process's first device. Orbax would otherwise take the sharding the leaf was saved with, which
    names devices this process may not have: a run saved on 8 devices, loaded on 1, was refused
    ("Topology mismatch") and its intact checkpoint set aside as damaged."""
    struct = ocp.utils.to_shape_dtype_struct(leaf)
    if struct.sharding is None:
        struct = jax.ShapeDtypeStruct(struct.shape, struct.dtype,
                                      sharding=jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
    return struct


class Checkpointer:
    """Keeps the last K checkpoints under `directory`, labelled by epoch, and besides them the one with
    the best value of `best` among those saved with that metric (one orbax manager, two policies)."""

    def __init__(self, directory: Path, keep: int, warn: Callable[[str], None] = _stderr_warning,
                 best: str = ""):
        self.directory = Path(directory)
        self.warn = warn
        self.best = best
        self._pending: int | None = None  # the epoch whose asynchronous save may still fail
        policies = [ocp.checkpoint_managers.LatestN(n=keep)]
        if best:
            policies.append(ocp.checkpoint_managers.BestN(
                get_metric_fn=self._metric, reverse=not higher_is_better(best), n=1,
                keep_checkpoints_without_metrics=False))
        policy = ocp.checkpoint_managers.AnyPreservationPolicy(policies)
        try:
            self._manager = ocp.CheckpointManager(
                self.directory.resolve(), options=ocp.CheckpointManagerOptions(
                    preservation_policy=policy, create=True, best_fn=self._metric if best else None,
                    best_mode="max" if higher_is_better(best) else "min"))
        except OSError as e:
            raise CheckpointError(f"cannot open checkpoints in {self.directory}: {_cause(e)}") from None

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def epochs(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def _metric(self, metrics: dict[str, float]) -> float:
        return float(metrics.get(self.best, np.nan))

    def best_epoch(self, metric: str | None = None) -> int | None:
        """The epoch whose saved `metric` (default: the one kept) is best; None if no checkpoint has it."""
        metric = metric or self.best
        scored = [(float(m[metric]), epoch) for epoch in self.epochs()
                  if (m := self._manager.metrics(epoch)) is not None and metric in m]
        if not scored:
            return None
        return (max if higher_is_better(metric) else min)(scored)[1]

    def save(self, epoch: int, state: Any, config: ml_collections.ConfigDict,
             metrics: dict[str, float] | None = None) -> None:
        """Asynchronous save of the state, its config and its checksum (and the test metrics it was
        evaluated with, which rank it for the best checkpoint); write errors are one line naming the
        checkpoint that failed (the previous one, when its asynchronous write did) and those intact."""
        self._settle()
        try:
            self._manager.save(epoch, metrics=metrics, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(_jsonable(config)),
                checksum=ocp.args.JsonSave({"sha256": state_digest(state)})))
        except Exception as e:  # noqa: BLE001 - orbax wraps OS errors in many types; keep the cause
            raise self._write_error(epoch, e) from None
        self._pending = epoch

    def _settle(self) -> None:
        """Waits for the pending save: its failure surfaces here, named by its own epoch."""
        epoch, self._pending = self._pending, None
        if epoch is not None:
            try:
                self._manager.wait_until_finished()
            except Exception as e:  # noqa: BLE001
                raise self._write_error(epoch, e) from None

    def _write_error(self, epoch: int, error: BaseException) -> CheckpointError:
        try:
            self._manager.reload()
            intact = [e for e in self.epochs() if e != epoch]
        except Exception:  # noqa: BLE001 - the folder itself may be gone; then nothing is known intact
            intact = []
        kept = intact_line(intact, none="no earlier checkpoint exists")
        return CheckpointError(f"cannot write checkpoint {self.directory / str(epoch)}: {_cause(error)}; {kept}: "
                               "free space or fix permissions and rerun")

    def saved_config(self, epoch: int | None = None) -> dict[str, Any]:
        epoch = self.latest_epoch() if epoch is None else epoch
        return self._manager.restore(epoch, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def check_fits(self, config: ml_collections.ConfigDict, saved: dict[str, Any] | None = None) -> None:
        """Refuse, in one line, a config that differs from the checkpoint's in a key a resume must match."""
        saved = self.saved_config() if saved is None else saved
        wanted = _jsonable(config)
        defaults = _jsonable({k: f.default for k, f in FIELDS.items()})
        for key in resume_keys(saved.get("task", "")):
            # A key added since the checkpoint was written had its default then.
            if saved.get(key, defaults[key]) != wanted.get(key):
                raise ConfigError(
                    f"the checkpoint in {self.directory} was written with {key}={saved.get(key)!r} but "
                    f"the config has {key}={wanted.get(key)!r}: use a new --workdir or the same {key}")

    def run_config(self, epoch: int | None = None) -> ml_collections.ConfigDict:
        """The full config a checkpoint was written with (keys added since then take their defaults)."""
        from mnist_ae.config import FIELDS, base_config  # noqa: PLC0415

        config = base_config()
        config.update({k: tuple(v) if isinstance(v, list) else v for k, v in self.saved_config(epoch).items()
                       if k in FIELDS})
        return config

    def restore(self, abstract_state: Any, fits: ml_collections.ConfigDict | None = None,
                epoch: int | None = None) -> Any:
        """The newest intact checkpoint, restored into the structure, shapes and shardings of
        `abstract_state` (a state or `jax.eval_shape` of one; a leaf without a sharding goes to this
        process's first device).

        Each candidate's config is checked against `fits` (a mismatch is the user's ConfigError, not
        damage), then its state is restored and its checksum verified. A damaged step is moved to
        `<directory>-damaged/` with a one-line warning and the previous step is tried; an intact step
        whose saved shapes differ from the target's is a one-line CheckpointError, and stays. With `epoch`,
        only that checkpoint is restored.
        """
        target = jax.tree.map(_restore_target, abstract_state)
        if epoch is not None:  # a chosen one: no fallback, a one-line error
            if epoch not in self._manager.all_steps():
                raise CheckpointError(f"no checkpoint of epoch {epoch} in {self.directory}: there are "
                                      f"{sorted(self._manager.all_steps())}")
            self._refuse_misfit(epoch, target)
            try:
                return self._restore_verified(epoch, target)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"checkpoint {self.directory / str(epoch)} cannot be restored: "
                                      f"{_cause(e)}") from None
        for epoch in sorted(self._manager.all_steps(), reverse=True):
            try:
                saved = self.saved_config(epoch)
            except Exception as e:  # noqa: BLE001 - any failure to read it is damage
                self._set_aside(epoch, _cause(e))
                continue
            if fits is not None:
                self.check_fits(fits, saved)
            self._refuse_misfit(epoch, target)
            try:
                state = self._restore_verified(epoch, target)
            except Exception as e:  # noqa: BLE001
                self._set_aside(epoch, _cause(e))
                continue
            return state
        raise CheckpointError(f"no intact checkpoint is left in {self.directory} (damaged ones are in "
                              f"{self._damaged_dir()}): rerun to start afresh, or use a new --workdir")

    def _restore_verified(self, epoch: int, target: Any) -> Any:
        has_checksum = (self.directory / str(epoch) / "checksum").is_dir()  # none before checksums were saved
        args = {"state": ocp.args.StandardRestore(target)}
        if has_checksum:
            args["checksum"] = ocp.args.JsonRestore()
        restored = self._manager.restore(epoch, args=ocp.args.Composite(**args))
        if has_checksum and state_digest(restored["state"]) != restored["checksum"]["sha256"]:
            raise CheckpointError("its checksum does not match the saved state")
        return restored["state"]

    def _refuse_misfit(self, epoch: int, target: Any) -> None:
        """Checked before restoring (a failed orbax restore leaves its other reads to fail noisily on stderr)."""
        if (misfit := self._misfit(epoch, target)) is not None:
            raise CheckpointError(f"checkpoint {self.directory / str(epoch)} holds a state this model does not fit "
                                  f"({misfit}): the model's code changed since it was written; nothing was moved: "
                                  "load it with the version that wrote it, or use a new --workdir")

    def _misfit(self, epoch: int, target: Any) -> str | None:
        """The first leaf whose saved shape or dtype differs from `target`'s, read from the step's
        metadata alone; None if every leaf fits, or if the metadata cannot be read (the restore then fails,
        and the step is set aside as damaged). A step whose metadata is whole and names other shapes was
        written for another model, and is no more damaged than the code that cannot read it."""
        try:
            meta = ocp.StandardCheckpointHandler().metadata(self.directory / str(epoch) / "state")
            saved = ocp.tree.to_flat_dict(meta.tree)
        except Exception:  # noqa: BLE001 - unreadable metadata is damage, for the caller to set aside
            return None
        wanted = ocp.tree.to_flat_dict(ocp.tree.serialize_tree(target, keep_empty_nodes=True))
        name = lambda key: "/".join(map(str, key))  # noqa: E731
        params_first = lambda key: (key[0] != "params", key)  # noqa: E731  (a parameter names the change best)
        if saved.keys() != wanted.keys():
            odd = min(saved.keys() ^ wanted.keys(), key=params_first)
            return f"{name(odd)} is {'saved but not in the model' if odd in saved else 'in the model but not saved'}"
        for key in sorted(wanted, key=params_first):
            leaf = wanted[key]
            have = (tuple(saved[key].shape), np.dtype(saved[key].dtype))
            if have != (tuple(leaf.shape), np.dtype(leaf.dtype)):
                return f"{name(key)}: saved {have[1]}{list(have[0])}, the model's {np.dtype(leaf.dtype)}{list(leaf.shape)}"
        return None

    def _damaged_dir(self) -> Path:
        return self.directory.with_name(self.directory.name + "-damaged")

    def _set_aside(self, epoch: int, why: str) -> None:
        """Move a damaged step out of orbax's sight (kept for inspection) and say so in one line."""
        source = self.directory / str(epoch)
        target = self._damaged_dir() / f"{epoch}-{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        self._manager.reload()
        self.warn(f"checkpoint {source} is damaged ({why}); moved to {target}, trying the previous one")

    def close(self) -> None:
        """Waits for pending saves; asynchronous write errors surface here, as one line."""
        settled = False
        try:
            self._settle()
            settled = True
        finally:
            try:
                self._manager.close()
            except Exception as e:  # noqa: BLE001
                if settled:  # else the pending save's error, which names its checkpoint, is on its way
                    raise CheckpointError(f"cannot close the checkpoints in {self.directory}: {_cause(e)}") from None
