"""What every task sets up before compute: the dataset on the device, the program, its state, the writers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections

from mnist_ae import build, parallel
from mnist_ae.run import monitoring
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core.state import TrainState
from mnist_ae.run.progress import Reporter
from mnist_ae.run import lifecycle, preflight
from mnist_ae.run.device_data import load_data
from mnist_ae.run.driver import Run
from mnist_ae.run.program import Program
from mnist_ae.workdir import RunDir
from mnist_ae.writers import JsonlWriter, MetricWriter, MultiWriter


def open_writers(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                 members: list[dict[str, Any]]) -> list[MetricWriter]:
    """One writer per member. A single run: metrics.jsonl plus TensorBoard/W&B in the workdir. A sweep:
    tagged lines in the shared metrics.jsonl (its only records: one file to trim on resume) plus each
    member's own TensorBoard dir / W&B run (grouped)."""
    if members == [{}]:
        return [monitoring.open_writer(config, workdir, log_framework)]
    group = config.wandb_group or workdir.name
    main = parallel.is_main_process()  # as with every writer, only the main process writes anything
    return [MultiWriter([
        JsonlWriter(RunDir(workdir).metrics, tags=tags) if main else MultiWriter([]),
        monitoring.open_writer(config, workdir, log_framework, run_name=f"{workdir.name}/{tags['member']}",
                               group=group, member=tags["member"]),
    ]) for tags in members]


def open_run(config: ml_collections.ConfigDict, workdir: Path, log_framework: str, quiet: bool,
             make_program: Callable[[ml_collections.ConfigDict, jax.sharding.Mesh], tuple[Program, TrainState]],
             started: float | None = None) -> tuple[Run, TrainState]:
    """Mesh, data on the device, the program and its state (restored when the workdir has a checkpoint),
    progress and the writers: the set-up shared by every task that trains. `started` (a perf_counter
    reading: the process's start) makes the summary's wall time count what came before, as "start-up"."""
    opened = time.perf_counter()
    preflight.check(config, workdir)  # a run that cannot fit or save is refused before it allocates
    members = len(build.members(config)) if config.task == "sweep" else 1
    mesh = parallel.make_mesh(config.num_devices, members, config.member_devices)
    t = time.perf_counter()
    data = load_data(config, mesh)
    data_s = time.perf_counter() - t
    program, state = make_program(config, mesh)
    best = config.best_checkpoint_metric if len(program.members) == 1 else ""  # a sweep has no single best
    ckpt = Checkpointer(RunDir(workdir).checkpoints, config.keep_checkpoints, best=best)
    if ckpt.latest_epoch() is not None:  # the newest intact one, onto this mesh, whatever device count wrote it
        state = ckpt.restore(state, fits=config)
    epoch, step = program.epoch(state), program.step(state)  # in every process: a sweep's are gathered
    complete = epoch >= config.epochs and lifecycle.ended(workdir, step)  # reported only: it writes nothing
    if parallel.is_main_process() and not complete:  # each (step, member) once in the log, however often it restarted
        lifecycle.keep_records_before(RunDir(workdir).metrics, step)
        lifecycle.record_start(workdir, config, step, parallel.mesh_shape(mesh))
    title = config.task if len(program.members) == 1 else f"sweep of {len(program.members)}"
    reporter = Reporter(total_epochs=config.epochs, start_epoch=epoch, title=title,
                        quiet=quiet or not parallel.is_main_process(),
                        rounds_per_epoch=program.rounds_per_epoch(data.train_x.shape[0]),
                        device=lifecycle.device_line() + _layout(mesh), started=opened if started is None else started)
    reporter.note(f"device: {reporter.device}")
    if started is not None:
        reporter.add_time("start-up", opened - started)
    reporter.add_time("data", data_s)
    writers = open_writers(config, workdir, "none" if complete else log_framework, program.members)
    if log_framework in ("wandb", "both") and not complete and (note := monitoring.wandb_note(workdir)):
        reporter.note(note)
    return Run(config, workdir, program, data, writers, ckpt, reporter), state


def _layout(mesh: jax.sharding.Mesh) -> str:
    """"; mesh 8 members x 1 data" where there is more than one device (nothing to say on one)."""
    shape = parallel.mesh_shape(mesh)
    return f"; mesh {shape['members']} members x {shape['data']} data" if mesh.size > 1 else ""


def summary_paths(workdir: Path) -> dict[str, Path]:
    """What a run leaves behind, for the end-of-run summary."""
    run = RunDir(workdir)
    paths = {"workdir": workdir, "metrics": run.metrics, "checkpoints": run.checkpoints}
    for path in (run.report, run.curves, run.confusion, run.reconstructions, run.analysis(), run.comparison,
                 run.sweep_results):
        if path.exists():
            paths[path.name] = path
    return paths
