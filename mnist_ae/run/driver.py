"""The one epoch loop, for single runs and sweeps alike.

It owns the transfer guard, the metrics pull (one `device_get` per epoch), finite checks, the
train-window means, the eval and checkpoint schedules, progress and the writers. Everything else
logged during a run is a `Hook` with its own schedule, decided by one helper, `due`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_ae import build
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.errors import Interrupted, TrainingDiverged
from mnist_ae.run.monitoring import scalars
from mnist_ae.core.state import TrainState
from mnist_ae.run.progress import Reporter
from mnist_ae.run.program import Program
from mnist_ae.run.device_data import DeviceData
from mnist_ae.run import lifecycle
from mnist_ae.run.lifecycle import StopRequest
from mnist_ae.writers import MetricWriter, close_all


def due(epoch: int, every: int, *, at_start: bool = False) -> bool:
    """Whether something scheduled every `every` epochs (0 = never) happens after `epoch` epochs,
    in the spirit of big_vision's `itstime`; epoch 0 (the untrained state) only if `at_start`."""
    return at_start if epoch == 0 else every > 0 and epoch % every == 0


def window_means(metrics: dict[str, np.ndarray], window: int) -> list[tuple[int, dict[str, float]]]:
    """Per-round metrics [R] -> (rounds done at window end, means over the window)."""
    num_rounds = len(next(iter(metrics.values())))
    return [(end, {k: float(np.mean(v[start:end])) for k, v in metrics.items()})
            for start in range(0, num_rounds, window)
            for end in [min(start + window, num_rounds)]]


@dataclasses.dataclass
class Run:
    """What the hooks see: the config, the program, the data, one writer per member, and the
    latest eval and test codes (cached by step, so hooks at one step share one device call)."""

    config: ml_collections.ConfigDict
    workdir: Path
    program: Program
    data: DeviceData
    writers: list[MetricWriter]
    ckpt: Checkpointer
    reporter: Reporter
    stop: StopRequest = dataclasses.field(default_factory=StopRequest)
    diverged: set[int] = dataclasses.field(default_factory=set)  # sweep members frozen by divergence
    finals: list[dict[str, float]] = dataclasses.field(default_factory=list)
    _eval: tuple[int, list[dict[str, np.ndarray]]] | None = None
    _codes: tuple[int, np.ndarray] | None = None
    _member_runs: tuple[int, list[tuple[ml_collections.ConfigDict, TrainState]]] | None = None

    def metrics(self, state: TrainState) -> list[dict[str, np.ndarray]]:
        """Whole-test-set metrics per member at this state (computed once per step)."""
        step = self.program.step(state)
        if self._eval is None or self._eval[0] != step:
            t = time.perf_counter()
            metrics = self.program.evaluate(state, self.data)
            self.reporter.add_time("eval", time.perf_counter() - t)
            self.check_finite([m for i, m in enumerate(metrics) if i not in self.diverged],
                              f"at evaluation after epoch {self.program.epoch(state)}")
            self._eval = step, metrics
        return self._eval[1]

    def test_codes(self, state: TrainState) -> np.ndarray:
        """Codes of the whole test set at this state ([members,] n, L), pulled back once per step."""
        step = self.program.step(state)
        if self._codes is None or self._codes[0] != step:
            self._codes = step, self.program.test_codes(state, self.data)
        return self._codes[1]

    def member_runs(self, state: TrainState) -> list[tuple[ml_collections.ConfigDict, TrainState]]:
        """A sweep's members as standalone runs at this state (`build.member_run`: config, state sliced to
        its width), sliced once per step for the hooks that export and report them."""
        step = self.program.step(state)
        if self._member_runs is None or self._member_runs[0] != step:
            self._member_runs = step, [build.member_run(self.config, member, self.program.member(state, i))
                                       for i, member in enumerate(build.members(self.config))]
        return self._member_runs[1]

    def freeze_diverged(self, rounds: Sequence[dict[str, np.ndarray]], where: str) -> None:
        """Sweeps: a member whose train metrics stopped being finite was frozen on the device; name it
        once and go on with the others. Only when every member diverged does the run stop."""
        for i, member in enumerate(rounds):
            bad = sorted(k for k, v in member.items() if not np.all(np.isfinite(v)))
            if bad and i not in self.diverged:
                self.diverged.add(i)
                self.reporter.warn(f"member {self.program.members[i]['member']} diverged {where} ({bad[0]} is not "
                                   "finite): it is frozen at its last finite state, the others train on; retry it "
                                   "with a lower learning rate")
        if len(self.diverged) == len(rounds):
            self.check_finite(rounds, where)

    def check_finite(self, metrics: Sequence[dict[str, Any]], where: str) -> None:
        for i, member in enumerate(metrics):
            bad = sorted(k for k, v in member.items() if not np.all(np.isfinite(v)))
            if bad:
                name = self.program.members[i].get("member")
                last = self.ckpt.latest_epoch()
                kept = (f"the last good checkpoint (epoch {last}) is kept in {self.ckpt.directory}"
                        if last is not None else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"training diverged {where}{f' in member {name}' if name else ''} ({bad[0]} is not finite); "
                    f"{kept}: lower --config.learning_rate{'s' if name else ''} and rerun with a new --workdir")


@dataclasses.dataclass(frozen=True)
class Hook:
    """Something done every `every` epochs (0 = never during training), at step 0 if `at_start`,
    also after the last epoch if `at_last`, and once more after training if `at_end` (not when a
    finished run is only reported again). An end hook may return numbers per member, which the driver
    merges into the run's finals for the hooks after it (the summary, HParams, the sweep's table)."""

    name: str
    fn: Callable[[Run, TrainState], list[dict[str, float]] | None]
    every: int = 0
    at_start: bool = False
    at_last: bool = False
    at_end: bool = False
    shown: bool = False  # at the end: a spinner and a "name ... 2.3 s" line (for the long ones)


def eval_hook(every: int) -> Hook:
    """Test metrics of every member, as scalars in its writer; the run's final numbers."""
    def log(run: Run, state: TrainState) -> None:
        run.finals = []
        for i, (writer, metrics) in enumerate(zip(run.writers, run.metrics(state))):
            final = scalars(metrics)
            if i in run.diverged:
                final["diverged"] = 1.0
            writer.write_scalars(run.program.step(state),
                                 {"epoch": int(run.program.member(state.epoch, i)), **final})
            run.finals.append(final)

    return Hook("eval", log, every=every, at_start=True, at_last=True)


@contextlib.contextmanager
def closing_all(*resources: Any) -> Iterator[None]:
    """Closes every resource afterwards, in order. When the body failed, that error is the one raised:
    a close error then goes to run.log only, so it cannot mask, say, a divergence message."""
    try:
        yield
    except BaseException:
        for error in close_all(resources):
            logging.getLogger(__name__).error("closing after an error failed too", exc_info=error)
        raise
    errors = close_all(resources)
    if errors:
        raise errors[0]


def train(run: Run, state: TrainState, hooks: Sequence[Hook]) -> list[dict[str, float]]:
    """Train `state` to `config.epochs`, firing each hook when due, then the end-of-run stages; returns
    final metrics per member. A rerun of a finished run reports its saved numbers, or, if a stop cut its
    end-of-run stages short (no end record), runs them again."""
    config, program, reporter = run.config, run.program, run.reporter
    start = program.epoch(state)
    run.diverged.update(program.frozen(state))
    if start < config.epochs:
        state = _train_epochs(run, state, hooks, start)
        reporter.training_done()
    state = program.gathered(state)  # what the end stages and the hooks read, in every process
    if start >= config.epochs:
        if lifecycle.ended(run.workdir, program.step(state)):
            reporter.warn(f"{run.workdir} is already trained to epoch {start} (epochs={config.epochs}): nothing to "
                          "train, reporting its final numbers; raise --config.epochs to continue it")
            return lifecycle.saved_finals(run.workdir, program.members) or _evaluated_finals(run, state)
        reporter.warn(f"{run.workdir} is trained to epoch {start}, but a stop cut its end-of-run stages short "
                      "(analysis, report, final records): finishing them")
        run.finals = _evaluated_finals(run, state)
    run.stop.during = END_STAGES  # nothing left to commit: a signal now stops at once; the rerun finishes them
    for hook in hooks:
        if hook.at_end:  # timed under its name in the summary; long ones show a spinner meanwhile
            with reporter.phase(hook.name) if hook.shown else _timed(reporter, hook.name):
                numbers = hook.fn(run, state)
            for final, extra in zip(run.finals, numbers or []):
                final.update(extra)
    for writer in run.writers:
        writer.flush()
    lifecycle.record_end(run.workdir, program.step(state))
    return run.finals


END_STAGES = ("during the end-of-run stages (analysis, report, final records); training is committed: rerun the "
              "same command to finish them")


def _evaluated_finals(run: Run, state: TrainState) -> list[dict[str, float]]:
    return [{**scalars(m), **({"diverged": 1.0} if i in run.diverged else {})}
            for i, m in enumerate(run.metrics(state))]


def _train_epochs(run: Run, state: TrainState, hooks: Sequence[Hook], start: int) -> TrainState:
    """The epochs from `start` to `config.epochs`, each with its hooks, checkpoint and progress line."""
    config, program, reporter = run.config, run.program, run.reporter
    if start == 0:
        _fire(run, program.gathered(state), hooks, epoch=0, last=False)
    if run.stop.signum is not None:
        raise Interrupted(run.stop.signum, start or None)
    with reporter.phase("compiling"):
        epoch_fn = program.compile_epoch(state, run.data)
    for writer in run.writers:  # built meanwhile (W&B's start-up): a failure surfaces here, not mid-run
        writer.flush()
    num_rounds = program.rounds_per_epoch(run.data.train_x.shape[0])
    for epoch in range(start + 1, config.epochs + 1):
        t = time.perf_counter()
        with jax.transfer_guard("disallow"):  # an epoch moves nothing between host and device implicitly
            state, per_round = epoch_fn(state)
        per_round = program.pulled(per_round)  # the epoch's one pull: [members,] rounds per metric
        seconds = time.perf_counter() - t
        reporter.add_time("train", seconds)
        rounds = [program.member(per_round, i) for i in range(len(program.members))]
        if program.stacked:
            run.freeze_diverged(rounds, f"in epoch {epoch}")
        else:
            run.check_finite(rounds, f"in epoch {epoch}")
        view = program.gathered(state)  # the hooks' and the host's (a sweep's state stays split for training)
        step0 = program.step(view) - num_rounds
        shown = []
        for i, (writer, member_rounds) in enumerate(zip(run.writers, rounds)):
            if i in run.diverged:
                shown.append({})
                continue
            windows = window_means(member_rounds, config.log_every_steps)
            for end, means in windows:
                writer.write_scalars(step0 + end, {"epoch": epoch, **means, "train/steps_per_s": num_rounds / seconds})
            shown.append(windows[-1][1])
        last = epoch == config.epochs
        _fire(run, view, hooks, epoch=epoch, last=last)
        saved = due(epoch, config.checkpoint_every_epochs) or last
        if saved:
            _checkpoint(run, state, epoch)
        best = _best_member(run.finals)
        reporter.epoch_done(epoch, program.step(view), num_rounds / seconds,
                            {**shown[best], **(run.finals[best] if run.finals else {})},
                            member=str(program.members[best].get("member", "")) if program.stacked else "")
        if run.stop.signum is not None:  # read once, after the line: a signal at any point is this epoch's
            if not saved:
                _checkpoint(run, state, epoch)
            raise Interrupted(run.stop.signum, epoch)  # the checkpoint commits while the resources close
    return state


def _checkpoint(run: Run, state: TrainState, epoch: int) -> None:
    t = time.perf_counter()
    run.ckpt.save(epoch, state, run.config, metrics=_ranking(run, state))
    run.reporter.add_time("checkpoint", time.perf_counter() - t)


@contextlib.contextmanager
def _timed(reporter: Reporter, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    reporter.add_time(name, time.perf_counter() - start)


def _fire(run: Run, state: TrainState, hooks: Sequence[Hook], *, epoch: int, last: bool) -> None:
    for hook in hooks:
        if due(epoch, hook.every, at_start=hook.at_start) or (last and hook.at_last):
            hook.fn(run, state)


def _ranking(run: Run, state: TrainState) -> dict[str, float] | None:
    """The metric a checkpoint is ranked by for the best one, if this state was evaluated and has it."""
    metric = run.ckpt.best
    evaluated = run._eval is not None and run._eval[0] == run.program.step(state)
    if not metric or not evaluated or not run.finals or metric not in run.finals[0]:
        return None
    return {metric: float(run.finals[0][metric])}


def _best_member(finals: list[dict[str, float]]) -> int:
    """The member shown on the live line: lowest test MSE among those that did not diverge."""
    if len(finals) < 2:
        return 0
    return min(range(len(finals)), key=lambda i: (finals[i].get("diverged", 0), finals[i].get("test/recon_mse", np.inf)))
