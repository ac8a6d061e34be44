"""Host orchestration of a training run: data to the device, compiled epochs, eval, logs, checkpoints.

Everything here is I/O and bookkeeping; the math lives in `loop`, `steps` and `models`. The
device is asked for metrics once per epoch (one `device_get` of the stacked per-round metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_ae import build
from mnist_ae import data as data_lib
from mnist_ae import monitoring, parallel
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import check_batch_fits
from mnist_ae.core.loop import rounds_per_epoch, train_epoch
from mnist_ae.progress import Reporter
from mnist_ae.run.setup import DeviceData, load_data
from mnist_ae.core.state import TrainState
from mnist_ae.core.steps import Learner, encode, evaluate, init_state, reconstruct
from mnist_ae.writers import close_all


class TrainingDiverged(RuntimeError):
    """Non-finite metrics: the run stops and the last good checkpoint stays."""


def check_finite(metrics: dict[str, Any], where: str, ckpt: Checkpointer) -> None:
    bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
    if bad:
        last = ckpt.latest_epoch()
        kept = f"the last good checkpoint (epoch {last}) is kept in {ckpt.directory}" if last is not None \
            else "no checkpoint was written yet"
        raise TrainingDiverged(f"training diverged {where} ({bad[0]} is not finite); {kept}: "
                               f"lower --config.learning_rate and rerun with a new --workdir")


def window_means(metrics: dict[str, np.ndarray], window: int) -> list[tuple[int, dict[str, float]]]:
    """Per-round metrics [R] -> (rounds done at window end, means over the window)."""
    num_rounds = len(next(iter(metrics.values())))
    return [(end, {k: float(np.mean(v[start:end])) for k, v in metrics.items()})
            for start in range(0, num_rounds, window)
            for end in [min(start + window, num_rounds)]]


@dataclasses.dataclass
class Run:
    """A single (non-sweep) run: static task, compiled functions and where things go."""

    config: ml_collections.ConfigDict
    workdir: Path
    mesh: jax.sharding.Mesh
    task: Learner
    data: DeviceData
    writer: monitoring.MetricWriter
    ckpt: Checkpointer
    reporter: Reporter
    _codes: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # step -> test codes, latest only

    @functools.cached_property
    def compiled_epoch(self):
        return parallel.jit_train_epoch(self.task, self.config.batch_size, self.mesh)

    def _jit(self, fn):
        """Outputs replicated, so every process can read them back."""
        return jax.jit(functools.partial(fn, self.task), out_shardings=parallel.replicated(self.mesh))

    @functools.cached_property
    def compiled_eval(self):
        return self._jit(evaluate)

    @functools.cached_property
    def reconstruct(self):
        return self._jit(reconstruct)

    @functools.cached_property
    def encode(self):
        return self._jit(encode)

    def test_codes(self, state: TrainState) -> np.ndarray:
        """Codes of the whole test set, computed on the device in one call and pulled back once per
        step: histograms, the projector and the analysis at the same step share them."""
        step = int(state.step)
        if step not in self._codes:
            self._codes.clear()
            self._codes[step] = np.asarray(self.encode(state.params["ae"], self.data.test_x))
        return self._codes[step]

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        t = time.perf_counter()
        metrics = jax.device_get(self.compiled_eval(state.params, self.data.test_x, self.data.test_y))
        self.reporter.add_time("eval", time.perf_counter() - t)
        check_finite(metrics, f"at evaluation after epoch {int(state.epoch)}", self.ckpt)
        return metrics


def summary_paths(workdir: Path) -> dict[str, Path]:
    """What a run leaves behind, for the end-of-run summary."""
    paths = {"workdir": workdir, "metrics": workdir / "metrics.jsonl", "checkpoints": workdir / "checkpoints"}
    for name in ("reconstructions", "analysis", "comparison.png", "sweep_results.md"):
        if (workdir / name).exists():
            paths[name] = workdir / name
    return paths


def run_training(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                 quiet: bool = False) -> dict[str, float]:
    """Train (or resume) the run in `workdir` to `config.epochs`; returns the final test metrics."""
    mesh = parallel.make_mesh(config.num_devices)
    t = time.perf_counter()
    data = load_data(config, mesh)
    data_s = time.perf_counter() - t
    task = build.learner(config)
    ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    # Compiled init: one program instead of dozens of eagerly compiled small ops.
    state = jax.jit(lambda: init_state(task, config.seed), out_shardings=parallel.replicated(mesh))()
    if ckpt.latest_epoch() is not None:
        ckpt.check_fits(config)
        state = ckpt.restore(state)  # onto this mesh, whatever device count wrote it
    reporter = Reporter(total_epochs=config.epochs, start_epoch=int(state.epoch), title=config.task,
                        quiet=quiet or not parallel.is_main_process(),
                        rounds_per_epoch=rounds_per_epoch(task, data.train_x.shape[0], config.batch_size))
    reporter.add_time("data", data_s)
    warn_if_finished(reporter, workdir, int(state.epoch), config.epochs)
    writer = monitoring.open_writer(config, workdir, log_framework)
    run = Run(config, workdir, mesh, task, data, writer, ckpt, reporter)
    with closing_all(ckpt, writer, reporter):
        final = _train(run, state)
    reporter.summary(final=final, workdir=workdir, paths=summary_paths(workdir))
    return final


ANALYSIS_PHASE = "analysis (PCA, t-SNE, quality numbers)"


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


def warn_if_finished(reporter: Reporter, workdir: Path, epoch: int, epochs: int) -> None:
    """A rerun of a finished run trains nothing: say so, and how to continue it."""
    if epoch >= epochs:
        reporter.warn(f"{workdir} is already trained to epoch {epoch} (epochs={epochs}): nothing to train, "
                      "reporting its final numbers; raise --config.epochs to continue it")


def _train(run: Run, state: TrainState) -> dict[str, float]:
    config, data, reporter = run.config, run.data, run.reporter
    num_rounds = rounds_per_epoch(run.task, data.train_x.shape[0], config.batch_size)
    if int(state.epoch) == 0:
        monitoring.log_model_summary(run.writer, state.params)
        _log_eval(run, state, run.evaluate(state))
        _log_histograms(run, state)
    with reporter.phase("compiling"):
        compiled = run.compiled_epoch.lower(state, data.train_x, data.train_y).compile()
    run.writer.flush()  # the writers (W&B's start-up) were built meanwhile; a failure surfaces here, not mid-run
    metrics = {}
    for epoch in range(int(state.epoch), config.epochs):
        t = time.perf_counter()
        with jax.transfer_guard("disallow"):  # an epoch moves nothing between host and device implicitly
            state, per_round = compiled(state, data.train_x, data.train_y)
        per_round = jax.device_get(per_round)
        seconds = time.perf_counter() - t
        reporter.add_time("train", seconds)
        check_finite(per_round, f"in epoch {epoch + 1}", run.ckpt)
        step0 = int(state.step) - num_rounds
        windows = window_means(per_round, config.log_every_steps)
        for end, means in windows:
            run.writer.write_scalars(step0 + end, {"epoch": epoch + 1, **means,
                                                   "train/steps_per_s": num_rounds / seconds})
        monitoring.log_system(run.writer, int(state.step))
        last = epoch + 1 == config.epochs
        shown = dict(windows[-1][1])
        if (epoch + 1) % config.eval_every_epochs == 0 or last:
            metrics = run.evaluate(state)
            _log_eval(run, state, metrics)
            shown.update(monitoring.scalars(metrics))
        _log_histograms(run, state)
        if (epoch + 1) % config.checkpoint_every_epochs == 0 or last:
            t = time.perf_counter()
            run.ckpt.save(epoch + 1, state, config)
            reporter.add_time("checkpoint", time.perf_counter() - t)
        reporter.epoch_done(epoch + 1, int(state.step), num_rounds / seconds, shown)
    if not metrics:  # resumed a finished run: report its numbers again
        metrics = run.evaluate(state)
    final = monitoring.scalars(metrics)
    run.writer.write_hparams(config.to_dict(), final)
    if run.task.is_autoencoder:
        codes = run.test_codes(state)  # shared with the last histograms, the projector and the analysis
        _log_projector(run, state, codes)
        if config.analyze_at_end and parallel.is_main_process():
            from mnist_ae.analyze import analyze_codes  # noqa: PLC0415  (sklearn loads only when needed)

            with reporter.phase(ANALYSIS_PHASE):
                result = analyze_codes(config, codes, metrics, data.test_y, data.test_x, data.class_names,
                                       run.workdir, run.writer, int(state.step))
            final.update(result.summary())
    run.writer.flush()
    return final


def _log_eval(run: Run, state: TrainState, metrics: dict[str, np.ndarray]) -> None:
    """Scalars, confusion, reconstruction grid and (every N evals) the projector."""
    config, writer = run.config, run.writer
    step, epoch = int(state.step), int(state.epoch)
    writer.write_scalars(step, {"epoch": epoch, **monitoring.scalars(metrics)})
    confusion = "test/confusion" if not run.task.is_autoencoder else "test/probe_confusion"
    writer.write_confusion(step, confusion, metrics[confusion], run.data.class_names)
    if run.task.is_autoencoder:
        recon = np.asarray(run.reconstruct(state.params["ae"], jnp.asarray(run.data.grid_x)))
        if parallel.is_main_process():  # the PNG is written directly, not through the writer
            monitoring.log_reconstructions(writer, step, monitoring.reconstruction_grid(run.data.grid_x, recon),
                                           run.workdir)
        evals_done = epoch // config.eval_every_epochs
        if config.projector_every_evals and evals_done and evals_done % config.projector_every_evals == 0:
            _log_projector(run, state, run.test_codes(state))


def _log_histograms(run: Run, state: TrainState) -> None:
    """Test-code and weight histograms, every `histogram_every_epochs` epochs (step 0 included)."""
    every, epoch = run.config.histogram_every_epochs, int(state.epoch)
    if every and epoch % every == 0:
        codes = run.test_codes(state) if run.task.is_autoencoder else None
        monitoring.log_histograms(run.writer, int(state.step), codes, state.params)


def _log_projector(run: Run, state: TrainState, codes_nl: np.ndarray) -> None:
    points = min(run.config.projector_points, run.data.test_x.shape[0])
    codes = codes_nl[:points]
    preds = np.asarray(jnp.argmax(run.task.head.apply(state.params["probe"], codes), -1))
    monitoring.log_projector(run.writer, int(state.step), codes, np.asarray(run.data.test_y[:points]), preds,
                             np.asarray(run.data.test_x[:points]), run.data.class_names)
